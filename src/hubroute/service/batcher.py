"""Dynamic batching of routing requests: requests that arrive while the router is busy are
answered together with one encoder pass.

A single worker thread owns the router calls. When it is idle a request runs at once (no added
wait); while it computes, new requests queue up, and the next pass takes all of them (up to
``max_prompts`` prompts). On a CPU one encoder pass over many prompts costs far less than one
pass per prompt, so throughput under concurrency grows and tail latency falls.

The queue is bounded (``max_queue`` prompts; :class:`QueueFull` beyond), a request whose caller
gave up is dropped before it is computed, and a group that fails is answered again request by
request, so one bad request never fails its neighbours.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from hubroute.routers.base import RouteRequest

# computes one answer per request for a group of requests
Handler = Callable[[Sequence[RouteRequest]], Sequence[Any]]


class QueueFull(Exception):
    """The batcher holds ``max_queue`` prompts already."""


class RouteBatcher:
    """Queue of routing requests served in groups by one worker thread.

    ``handler``: answers a group of requests (called from the worker thread only); an answer
    that is an exception is raised to that request's caller alone; ``max_prompts``: most prompts
    per group (a larger single request still runs, alone); ``max_queue``: most prompts waiting;
    ``on_group(n_prompts)`` and ``on_queue(depth)``: observers (metrics).
    """

    def __init__(
        self,
        handler: Handler,
        max_prompts: int = 256,
        max_queue: int = 1 << 30,
        on_group: Callable[[int], None] | None = None,
        on_queue: Callable[[int], None] | None = None,
    ):
        self.handler, self.max_prompts, self.max_queue = handler, max_prompts, max_queue
        self.on_group, self.on_queue = on_group, on_queue
        self._queue: deque[tuple[RouteRequest, Future]] = deque()
        self._depth = 0
        self._cond = threading.Condition()
        self._closed = False
        self.groups = 0
        self._thread = threading.Thread(target=self._run, name="route-batcher", daemon=True)
        self._thread.start()

    @property
    def depth(self) -> int:
        """Prompts waiting."""
        return self._depth

    def submit(self, request: RouteRequest) -> Future:
        """Queue ``request``; the future resolves to its answer (or raises the handler's error).
        Raises :class:`QueueFull` when the queue cannot take it."""
        fut: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if self._depth and self._depth + len(request.prompts) > self.max_queue:
                raise QueueFull(f"{self._depth} prompts are waiting; the limit is {self.max_queue}")
            self._queue.append((request, fut))
            self._depth += len(request.prompts)
            depth = self._depth
            self._cond.notify()
        if self.on_queue:
            self.on_queue(depth)
        return fut

    def __call__(self, request: RouteRequest, timeout: float | None = None) -> Any:
        """Submit and wait for the answer."""
        return self.submit(request).result(timeout)

    def close(self) -> None:
        """Stop the worker after the queued requests are answered."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=10)

    def _take(self) -> list[tuple[RouteRequest, Future]]:
        group = [self._queue.popleft()]
        n = len(group[0][0].prompts)
        while self._queue and n + len(self._queue[0][0].prompts) <= self.max_prompts:
            req, fut = self._queue.popleft()
            group.append((req, fut))
            n += len(req.prompts)
        self._depth -= n
        return group

    def _answer(self, live: list[tuple[RouteRequest, Future]]) -> None:
        try:
            answers = self.handler([r for r, _ in live])
        except Exception as e:
            if len(live) == 1:
                live[0][1].set_exception(e)
                return
            for one in live:  # find the request that broke the group; the others get answers
                self._answer([one])
            return
        for (_, f), a in zip(live, answers, strict=True):
            if isinstance(a, BaseException):  # the handler's verdict on this request alone
                f.set_exception(a)
            else:
                f.set_result(a)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                group = self._take()
                depth = self._depth
            if self.on_queue:
                self.on_queue(depth)
            live = [(r, f) for r, f in group if f.set_running_or_notify_cancel()]
            if not live:
                continue
            self.groups += 1
            if self.on_group:
                self.on_group(sum(len(r.prompts) for r, _ in live))
            self._answer(live)
