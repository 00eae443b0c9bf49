"""`hubroute serve --engine ray`: Ray Serve replicas on a local Ray instance (slow tier)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from pathlib import Path

import httpx
import pytest

from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.routers import CentroidRouter
from hubroute.routers.base import RouteRequest
from hubroute.service.batcher import QueueFull
from hubroute.service.ray_engine import ServeBatcher


def test_the_serve_batcher_raises_an_error_answer_and_bounds_its_queue():
    async def batched(request: RouteRequest):
        await asyncio.sleep(0.01)
        return ValueError("unknown domain") if request.domain == "bad" else ([[]], "v0001")

    async def scenario() -> None:
        b = ServeBatcher(batched, max_queue=3)
        ok = b.submit(RouteRequest(["a", "b"], 1))
        with pytest.raises(QueueFull):
            b.submit(RouteRequest(["c", "d"], 1))
        assert await ok == ([[]], "v0001") and b.depth == 0
        with pytest.raises(ValueError, match="unknown domain"):
            await b.submit(RouteRequest(["x"], 1, domain="bad"))

    asyncio.run(scenario())


@pytest.fixture(scope="module")
def stream():
    return synth_stream(SynthConfig(models=60, experiences=2, seed=11))


@pytest.mark.slow
def test_ray_serve_replicas_route_batch_and_agree_on_the_registry(tmp_path, stream, cache_dir):
    pytest.importorskip("ray.serve", reason="Ray Serve is installed by the ray extra")
    from hubroute.encoders import load_encoder
    from servers import start_server, stop

    router = CentroidRouter(load_encoder("default", cache_dir=cache_dir)).fit(stream[0]).save(tmp_path / "r")
    state = tmp_path / "state"
    proc, url = start_server(
        state,
        Path(router),
        "--inference",
        "fp32",
        "--engine",
        "ray",
        "--replicas",
        "2",
        "--max-replicas",
        "3",  # autoscaling bounds: at least the 2 replicas the checks below count on
        env={"RAY_USAGE_STATS_ENABLED": "0"},
    )
    card = {
        "model_id": "new-org/turtle-counter",
        "domain": stream[0].new_cards[0].domain,
        "text": "counts sea turtles on beach photographs taken by drones",
    }
    prompt = "how many sea turtles are on this drone photo of the beach?"
    try:
        with httpx.Client(base_url=url, timeout=60) as c:
            assert c.get("/health/ready").json()["version"] == "v0001"
            assert c.post("/v1/route", json={"prompts": [], "k": 1}).status_code == 422  # the plain server's checks
            big = c.post("/v1/route", content=b" " * (2 << 20), headers={"Content-Type": "application/json"})
            assert big.status_code == 413 and "limit" in big.json()["detail"]

            def top() -> str:
                return c.post("/v1/route", json={"prompts": prompt, "k": 1}).json()["results"][0]["models"][0][
                    "model_id"
                ]

            assert top() != card["model_id"]
            assert c.post("/v1/models", json=[card]).status_code == 201
            # every replica routes the new model within the follower's delay: 20 answers in a row agree
            deadline, streak = time.time() + 60, 0
            while streak < 20:
                assert time.time() < deadline, "a replica never routed the added model"
                streak = streak + 1 if top() == card["model_id"] else 0
            servers = {c.get("/health/ready").json()["server"] for _ in range(60)}
            assert len(servers) >= 2, servers  # the proxy spreads requests over the replicas
        # concurrent single prompts are answered (grouped by @serve.batch inside each replica)
        prompts = [e.prompt for e in stream[0].eval[:32]]
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            answers = list(
                pool.map(
                    lambda p: httpx.post(f"{url}/v1/route", json={"prompts": p, "k": 3}, timeout=60).json(), prompts
                )
            )
        assert all(len(a["results"][0]["models"]) == 3 for a in answers)
        metrics = httpx.get(f"{url}/metrics", timeout=30).text
        assert "hubroute_batch_prompts" in metrics
    finally:
        stop(proc)
    assert proc.returncode == 0, proc.log.read_text()[-3000:]
    assert json.loads((state / "CURRENT").read_text())["current"] == "v0001"


def test_engine_flags_are_checked_before_anything_starts(tmp_path):
    from test_cli import hubroute, one_line_error

    state = tmp_path / "state"
    one_line_error(hubroute("serve", "--state", str(state), "--engine", "spark"), "unknown engine 'spark'")
    one_line_error(hubroute("serve", "--state", str(state), "--replicas", "2"), "need --engine ray")
    one_line_error(
        hubroute("serve", "--state", str(state), "--engine", "ray", "--host", "0.0.0.0", "--router", str(tmp_path)),
        "refusing to listen on 0.0.0.0 without API keys",
    )
    assert not (state / "CURRENT").exists()  # nothing imported
