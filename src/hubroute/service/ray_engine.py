"""The service on Ray Serve: ``hubroute serve --engine ray --replicas N``.

Each replica is a Ray Serve deployment replica holding one :class:`~hubroute.service.runtime.Service`
on the shared state folder and store, and the same FastAPI application as the plain server
(:func:`~hubroute.service.app.create_app`): Ray's HTTP proxy hands every request to a replica,
which runs it through that application in its own event loop, so keys, limits, validation,
metrics and answers are the plain server's. Only the request batcher differs: route requests are
grouped by Ray Serve's ``@serve.batch`` (at most ``max_prompts`` prompts a group, waiting at most
``batch_wait_s`` for more) and answered with one scoring pass. Replicas agree through the store as
plain servers do (:meth:`~hubroute.service.runtime.Service.follow`); with ``max_replicas`` Ray
Serve scales between ``replicas`` and ``max_replicas`` by the requests in flight per replica.

The driver imports the router into the state folder once, before any replica starts, starts
Ray (or joins ``address``) and Ray Serve's proxy on ``host:port``, and runs until SIGTERM or
SIGINT. Behind Ray's proxy every request comes from the proxy: rate limits apply per API key.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import os
import signal
import threading
from pathlib import Path
from typing import Any

from hubroute.errors import HubrouteError
from hubroute.extras import require
from hubroute.routers.base import RouteRequest
from hubroute.service.batcher import QueueFull
from hubroute.service.config import ServiceConfig

APP_NAME = "hubroute"


class ServeBatcher:
    """The request batcher of a Ray Serve replica (what the route handler submits to): each
    request becomes a task awaiting the replica's ``@serve.batch`` method; at most ``max_queue``
    prompts wait (:class:`QueueFull` beyond)."""

    def __init__(self, batched: Any, max_queue: int, on_queue: Any = None):
        self.batched, self.max_queue, self.on_queue = batched, max_queue, on_queue
        self.depth = 0

    def submit(self, request: RouteRequest) -> asyncio.Task:
        """Queue ``request``; the task's result is the service's answer (raised when it is an
        error). Called from the replica's event loop."""
        n = len(request.prompts)
        if self.depth and self.depth + n > self.max_queue:
            raise QueueFull(f"{self.depth} prompts are waiting (limit {self.max_queue})")
        self.depth += n

        async def one() -> Any:
            try:
                answer = await self.batched(request)
            finally:
                self.depth -= n
                if self.on_queue:
                    self.on_queue(self.depth)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return asyncio.get_running_loop().create_task(one())

    def close(self) -> None:
        """Nothing to stop: the tasks belong to the replica's event loop."""


def _deployment() -> Any:
    """The Ray Serve deployment class (defined when Ray is imported)."""
    serve = require("ray.serve", "ray")
    httpx = require("httpx", "serve")
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response

    @serve.deployment(name="hubroute", max_ongoing_requests=256)
    class HubrouteReplica:
        """One replica: the service and its FastAPI application, reached through the proxy."""

        def __init__(self, state: str, config: dict[str, Any], host: str, batch_wait_s: float):
            from hubroute.service.app import create_app

            cfg = ServiceConfig(**config)
            self.app = create_app(Path(state), None, cfg, bind_host=host)
            self.svc = self.app.state.service
            self.svc.batcher.close()  # the startup probe is done; Ray Serve batches from here on
            self.route_group.set_max_batch_size(cfg.max_prompts)
            self.route_group.set_batch_wait_timeout_s(batch_wait_s)
            self.svc.batcher = ServeBatcher(self.route_group, cfg.max_queue, self.svc.metrics.queue_depth.set)
            self.client = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=self.app, client=("127.0.0.1", 0)),
                base_url=f"http://{host}",
                timeout=cfg.request_timeout_s + 5,
            )

        @serve.batch(
            max_batch_size=256, batch_wait_timeout_s=0.002, batch_size_fn=lambda rs: sum(len(r.prompts) for r in rs)
        )
        async def route_group(self, requests: list[RouteRequest]) -> list[Any]:
            """Answer requests that arrived together with one scoring pass (in a thread, so the
            replica's event loop keeps taking requests)."""
            self.svc.metrics.batch_prompts.observe(sum(len(r.prompts) for r in requests))
            return list(await asyncio.to_thread(self.svc._route_group, requests))

        async def __call__(self, request: Request) -> Response:
            """Run one HTTP request through the service's application (a body over
            ``max_body_bytes`` is refused while it streams in, as the plain server does)."""
            limit = self.svc.config.max_body_bytes
            length = request.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                return JSONResponse({"detail": f"the body has {length} bytes; the limit is {limit}"}, 413)
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    return JSONResponse({"detail": f"the body is larger than {limit} bytes"}, 413)
                chunks.append(chunk)
            body = b"".join(chunks)
            headers = [(k, v) for k, v in request.headers.items() if k.lower() != "content-length"]
            answer = await self.client.request(
                request.method, request.url.path, params=request.query_params, headers=headers, content=body
            )
            passed = {
                k: v for k, v in answer.headers.items() if k.lower() not in ("content-length", "content-encoding")
            }
            return Response(answer.content, status_code=answer.status_code, headers=passed)

        def check_health(self) -> None:
            """Ray Serve's health check: the replica's service can route."""
            if self.svc.ready_error is not None and not self.svc.draining:
                raise RuntimeError(self.svc.ready_error)

        def __del__(self) -> None:
            svc = getattr(self, "svc", None)
            if svc is not None:
                svc.stop()

    return HubrouteReplica


def prepare_state(state: Path, router_dir: Path | None, config: ServiceConfig, host: str) -> str:
    """Make sure ``state`` serves a version before replicas start (the first start imports
    ``router_dir``), with its inference graph exported and the store migrated, so the replicas,
    starting together, only read, and that ``host`` may be listened on (keys); returns the
    serving version's name."""
    from hubroute.service.app import check_exposure
    from hubroute.service.auth import KeyRing
    from hubroute.service.store import Store
    from hubroute.service.updater import store_location
    from hubroute.service.versions import Versions

    versions = Versions(state)
    if versions.current is None and router_dir is None:
        raise HubrouteError(f"{state} holds no router yet: start once with --router DIR")
    store = Store(store_location(state, config.store))
    check_exposure(host, KeyRing(store, config.keys_file).enabled, config)
    if versions.current is None:
        versions.promote(versions.import_dir(router_dir))
    version = str(versions.current)
    spawn = multiprocessing.get_context("spawn")  # the router is loaded in a child: the driver stays small
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        job = pool.submit(_export, versions.path(version), config.inference, versions.inference_dir(version))
        try:
            job.result()
        except Exception as e:
            raise HubrouteError(f"cannot serve {version}: {' '.join(str(e).split())}") from None
    return version


def _export(router_dir: Path, inference: str, into: Path) -> None:
    """Load a saved router and write its inference graph into ``into``."""
    from hubroute.routers import load_router

    load_router(router_dir).prepare_inference(inference, into)


def run(
    state: Path,
    router_dir: Path | None,
    config: ServiceConfig,
    *,
    host: str,
    port: int,
    replicas: int = 1,
    max_replicas: int | None = None,
    address: str | None = None,
    batch_wait_s: float = 0.002,
    num_cpus: int | None = None,
    on_ready: Any = None,
) -> None:
    """Serve on Ray Serve until SIGTERM or SIGINT (see the module docstring); ``on_ready(version)``
    is called once every replica is up."""
    ray = require("ray", "ray")
    serve = require("ray.serve", "ray")
    if replicas < 1 or (max_replicas is not None and max_replicas < replicas):
        raise HubrouteError("need replicas >= 1 and max_replicas >= replicas")
    version = prepare_state(state, router_dir, config, host)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine unless asked
    ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING")
    stop = threading.Event()
    try:
        serve.start(http_options={"host": host, "port": port})
        if max_replicas is None:
            scaling: dict[str, Any] = {"num_replicas": replicas}
        else:
            scaling = {
                "autoscaling_config": {
                    "min_replicas": replicas,
                    "initial_replicas": replicas,
                    "max_replicas": max_replicas,
                    "target_ongoing_requests": max(2, config.max_prompts // 16),
                }
            }
        app = (
            _deployment()
            .options(ray_actor_options={"num_cpus": 0}, **scaling)
            .bind(str(Path(state).resolve()), config.to_dict(), host, batch_wait_s)
        )
        try:
            serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        except Exception as e:  # a replica that cannot start: say why in one line
            why = " ".join(str(e).split())[-500:]
            raise HubrouteError(f"Ray Serve could not start the replicas: {type(e).__name__}: {why}") from None
        if on_ready is not None:
            on_ready(version)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()
