"""Dynamic batching of routing requests, and Router.route_many."""

from __future__ import annotations

import threading

import pytest

from hubroute.routers import make_router
from hubroute.routers.base import RouteRequest
from hubroute.service.batcher import QueueFull, RouteBatcher


def test_requests_that_arrive_while_busy_are_answered_together():
    seen: list[int] = []
    started, gate = threading.Event(), threading.Event()

    def handler(reqs):
        if not seen:
            started.set()
            gate.wait(5)  # hold the first group until the others have queued
        seen.append(len(reqs))
        return [r.prompts[0].upper() for r in reqs]

    b = RouteBatcher(handler, max_prompts=8)
    futures = [b.submit(RouteRequest(["p0"]))]
    assert started.wait(5)
    futures += [b.submit(RouteRequest([f"p{i}"])) for i in range(1, 6)]
    gate.set()
    assert [f.result(5) for f in futures] == [f"P{i}" for i in range(6)]
    assert seen == [1, 5]  # the first ran at once; the five that queued behind it ran as one group
    b.close()


def test_group_size_is_capped_and_a_failing_group_is_answered_request_by_request():
    started, gate = threading.Event(), threading.Event()
    sizes: list[int] = []

    def handler(reqs):
        started.set()
        gate.wait(5)
        sizes.append(sum(len(r.prompts) for r in reqs))
        if any(r.prompts[0] == "boom" for r in reqs):
            raise ValueError("bad request")
        return [len(r.prompts) for r in reqs]

    b = RouteBatcher(handler, max_prompts=4)
    first = b.submit(RouteRequest(["a"]))
    assert started.wait(5)  # the worker holds "a"; the rest queue behind it
    rest = [b.submit(RouteRequest(["x", "y", "z"])) for _ in range(3)]
    assert b.depth == 9
    gate.set()
    assert first.result(5) == 1 and [f.result(5) for f in rest] == [3, 3, 3]
    assert max(sizes) <= 4 and b.depth == 0
    gate.clear()
    started.clear()
    hold = b.submit(RouteRequest(["hold"]))
    assert started.wait(5)
    group = [b.submit(RouteRequest([p])) for p in ("ok1", "boom", "ok2")]
    gate.set()
    assert hold.result(5) == 1
    assert group[0].result(5) == 1 and group[2].result(5) == 1  # its neighbours are answered
    with pytest.raises(ValueError, match="bad request"):
        group[1].result(5)
    b.close()
    with pytest.raises(RuntimeError, match="closed"):
        b.submit(RouteRequest(["late"]))


def test_the_queue_is_bounded():
    started, gate = threading.Event(), threading.Event()

    def handler(reqs):
        started.set()
        gate.wait(5)
        return [0 for _ in reqs]

    b = RouteBatcher(handler, max_prompts=8, max_queue=5)
    first = b.submit(RouteRequest(["a"]))
    assert started.wait(5)
    queued = b.submit(RouteRequest(["b", "c", "d"]))
    with pytest.raises(QueueFull):
        b.submit(RouteRequest(["e", "f", "g"]))
    gate.set()
    assert first.result(5) == 0 and queued.result(5) == 0
    b.close()


def test_route_many_matches_route_per_request(small_stream):
    router = make_router("bm25")
    for exp in small_stream:
        router.fit(exp)
    domain = router.registry_.domains()[0]
    reqs = [
        RouteRequest([e.prompt for e in small_stream[0].eval[:3]], 5),
        RouteRequest([small_stream[1].eval[0].prompt], 2, domain),
        RouteRequest([e.prompt for e in small_stream[2].eval[:2]], 7),
    ]
    got = router.route_many(reqs)
    for req, hits in zip(reqs, got, strict=True):
        assert hits == router.route(req.prompts, req.k, domain=req.domain)
    assert all(h.domain == domain for h in got[1][0])


def test_an_exception_answer_fails_only_its_own_request():
    def handler(reqs):
        return [KeyError(r.prompts[0]) if r.prompts[0] == "bad" else r.prompts[0] for r in reqs]

    b = RouteBatcher(handler)
    good, bad = b.submit(RouteRequest(["ok"])), b.submit(RouteRequest(["bad"]))
    assert good.result(5) == "ok"
    with pytest.raises(KeyError):
        bad.result(5)
    b.close()
