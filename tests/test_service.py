"""The HTTP service, run as a real `hubroute serve` process on loopback, talked to with httpx."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.routers import EmbeddingRouter


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(state: Path, router: Path | None = None, *extra: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    cmd = [sys.executable, "-m", "hubroute.cli", "serve", "--state", str(state), "--port", str(port), *extra]
    if router is not None:
        cmd += ["--router", str(router)]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stderr.read().decode()}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def wait_update(url: str, uid: int, until: tuple[str, ...], timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        u = httpx.get(f"{url}/v1/updates/{uid}").json()
        if u["status"] in until:
            return u
        time.sleep(0.2)
    raise AssertionError(f"update {uid} never reached {until}: {u}")


@pytest.fixture(scope="module")
def stream():
    return synth_stream(SynthConfig(models=80, experiences=2, seed=5))


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, stream) -> Path:
    r = EmbeddingRouter(strategy="replay", strategy_params={"ratio": 0.5}, epochs=30, batch_size=16)
    r.fit(stream[0])
    return r.save(tmp_path_factory.mktemp("router") / "r")


@pytest.fixture(scope="module")
def server(tmp_path_factory, router_dir):
    state = tmp_path_factory.mktemp("state")
    proc, url = start_server(state, router_dir)
    yield url, state
    stop(proc)


def test_route_single_and_batch(server, stream):
    url, _ = server
    r = httpx.post(f"{url}/v1/route", json={"prompts": stream[0].eval[0].prompt, "k": 3})
    assert r.status_code == 200
    body = r.json()
    assert body["version"] == "v0001" and len(body["results"]) == 1
    hit = body["results"][0]["models"][0]
    assert {"model_id", "score", "domain", "family"} <= set(hit)
    prompts = [e.prompt for e in stream[0].eval[:20]]
    res = httpx.post(f"{url}/v1/route", json={"prompts": prompts, "k": 1}).json()["results"]
    top = [x["models"][0]["model_id"] for x in res]
    assert sum(t == e.model_id for t, e in zip(top, stream[0].eval[:20], strict=True)) >= 8
    domain = stream[0].eval[0].domain
    res = httpx.post(f"{url}/v1/route", json={"prompts": prompts, "k": 5, "domain": domain}).json()["results"]
    assert all(m["domain"] == domain for x in res for m in x["models"])


def test_bad_input_gets_4xx_with_a_message(server, stream):
    url, _ = server
    known = stream[0].new_cards[0].model_id
    cases = [
        ("post", "/v1/route", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
        ("post", "/v1/route", {"json": {"prompts": ""}}, 422),
        ("post", "/v1/route", {"json": {"prompts": []}}, 422),
        ("post", "/v1/route", {"json": {"prompts": ["ok", "   "]}}, 422),
        ("post", "/v1/route", {"json": {"prompts": "x" * 5000}}, 422),
        ("post", "/v1/route", {"json": {"prompts": ["p"] * 300}}, 422),
        ("post", "/v1/route", {"json": {"prompts": "hello", "k": 0}}, 422),
        ("post", "/v1/route", {"json": {"prompts": "hello", "k": 101}}, 422),
        ("post", "/v1/route", {"json": {"prompts": "hello", "domain": "Cooking Recipes"}}, 422),
        ("post", "/v1/route", {"json": {"k": 3}}, 422),
        ("post", "/v1/models/nope/unknown/retire", {}, 404),
        ("post", "/v1/models/nope/activate", {}, 404),
        ("post", "/v1/models", {"json": {"model_id": known, "domain": "X"}}, 409),
        ("post", "/v1/models", {"json": [{"model_id": "a/b", "domain": "X"}, {"model_id": "a/b", "domain": "X"}]}, 409),
        ("post", "/v1/models", {"json": {"model_id": " ", "domain": "X"}}, 422),
        ("post", "/v1/models", {"json": {"domain": "X"}}, 422),
        ("post", "/v1/feedback", {"json": {"prompt": "hi", "model_id": "nope/nope"}}, 404),
        ("post", "/v1/feedback", {"json": {"prompt": "", "model_id": known}}, 422),
        ("get", "/v1/updates/9999", {}, 404),
        ("get", "/v1/models", {"params": {"status": "sleeping"}}, 422),
    ]
    for method, path, kw, want in cases:
        r = getattr(httpx, method)(url + path, **kw)
        assert r.status_code == want, (path, kw, r.status_code, r.text)
        assert r.json()["detail"], (path, r.text)
    assert len(cases) == 20
    assert httpx.get(f"{url}/v1/models", params={"limit": 1}).json()["total"] == len(stream[0].new_cards)


def test_cold_start_retire_activate(server):
    url, _ = server
    card = {
        "model_id": "lab/tide-whale-listener",
        "domain": "Audio Audio Classification",
        "family": "tide",
        "text": "lab/tide-whale-listener: detects whale songs and ocean tide sounds in hydrophone recordings.",
    }
    assert httpx.post(f"{url}/v1/models", json=card).status_code == 201
    prompt = {"prompts": "find whale songs in hydrophone recordings of the ocean", "k": 3}
    top = httpx.post(f"{url}/v1/route", json=prompt).json()["results"][0]["models"]
    assert top[0]["model_id"] == "lab/tide-whale-listener"
    assert httpx.post(f"{url}/v1/models/lab/tide-whale-listener/retire").status_code == 200
    top = httpx.post(f"{url}/v1/route", json={**prompt, "k": 100}).json()["results"][0]["models"]
    assert "lab/tide-whale-listener" not in {m["model_id"] for m in top}
    listed = httpx.get(f"{url}/v1/models", params={"status": "retired"}).json()
    assert [m["model_id"] for m in listed["models"]] == ["lab/tide-whale-listener"]
    assert httpx.post(f"{url}/v1/models/lab/tide-whale-listener/activate").status_code == 200
    top = httpx.post(f"{url}/v1/route", json=prompt).json()["results"][0]["models"]
    assert top[0]["model_id"] == "lab/tide-whale-listener"


def test_feedback_update_promotes_and_rollback(server, stream):
    url, state = server
    cards = [
        {"model_id": c.model_id, "domain": c.domain, "family": c.family, "text": c.text} for c in stream[1].new_cards
    ]
    assert httpx.post(f"{url}/v1/models", json=cards).status_code == 201
    items = [{"prompt": e.prompt, "model_id": e.model_id, "domain": e.domain} for e in stream[1].train]
    r = httpx.post(f"{url}/v1/feedback", json={"items": items})
    assert r.status_code == 201 and r.json()["stored"] == len(items)
    with sqlite3.connect(state / "hub.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == len(items)
    uid = httpx.post(f"{url}/v1/updates").json()["id"]
    u = wait_update(url, uid, ("promoted", "rejected", "failed"))
    assert u["status"] == "promoted", u
    assert u["result"]["train"] + u["result"]["held_out"] == len(items)
    deadline = time.time() + 30
    while httpx.get(f"{url}/health").json()["version"] != "v0002" and time.time() < deadline:
        time.sleep(0.2)
    assert httpx.get(f"{url}/health").json()["version"] == "v0002"
    # the worker exported the new version's ONNX graph (the default runtime) before promoting it
    assert (state / "versions" / "v0002" / "inference" / "encoder-0" / "encoder-onnx.onnx").is_file()
    assert httpx.post(f"{url}/v1/route", json={"prompts": items[0]["prompt"]}).status_code == 200
    assert httpx.post(f"{url}/v1/rollback").json()["version"] == "v0001"
    assert httpx.get(f"{url}/health").json()["version"] == "v0001"
    assert httpx.post(f"{url}/v1/rollback").status_code == 409
    metrics = httpx.get(f"{url}/metrics").text
    assert 'hubroute_requests_total{method="POST",path="/v1/route",status="200"}' in metrics
    assert "hubroute_route_seconds_bucket" in metrics and 'version="v0001"' in metrics
    assert f"hubroute_feedback_rows {len(items)}" in metrics


def test_sigkill_during_update_keeps_last_good_version_and_feedback(tmp_path, router_dir, stream):
    state = tmp_path / "state"
    proc, url = start_server(state, router_dir)
    items = [{"prompt": e.prompt, "model_id": e.model_id} for e in stream[0].train] * 10
    assert httpx.post(f"{url}/v1/feedback", json={"items": items}).status_code == 201
    uid = httpx.post(f"{url}/v1/updates").json()["id"]
    wait_update(url, uid, ("running",))
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    proc, url = start_server(state)
    try:
        u = httpx.get(f"{url}/v1/updates/{uid}").json()
        version = httpx.get(f"{url}/health").json()["version"]
        # the worker either died with the server (interrupted) or had already promoted its result
        assert (u["status"], version) in (("interrupted", "v0001"), ("promoted", "v0002")), (u, version)
        time.sleep(1)
        assert httpx.get(f"{url}/v1/updates/{uid}").json()["status"] == u["status"]  # no late promotion
        with sqlite3.connect(state / "hub.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == len(items)
        r = httpx.post(f"{url}/v1/route", json={"prompts": stream[0].eval[0].prompt})
        assert r.status_code == 200
    finally:
        stop(proc)


def test_concurrent_requests_are_batched_and_every_runtime_agrees(tmp_path, router_dir, stream):
    from concurrent.futures import ThreadPoolExecutor

    prompts = [e.prompt for e in stream[0].eval[:40]]
    answers = {}
    for inference in ("fp32", "onnx", "onnx-int8", "int8"):
        flag = ("--inference", inference) if inference != "onnx" else ()  # onnx is the default
        proc, url = start_server(tmp_path / inference, router_dir, *flag)
        try:
            with httpx.Client(base_url=url, timeout=60) as c:
                one = [c.post("/v1/route", json={"prompts": p, "k": 3}).json()["results"][0] for p in prompts]
            with ThreadPoolExecutor(8) as pool:  # concurrent singles: answered together, same answers
                many = list(
                    pool.map(
                        lambda p, url=url: httpx.post(
                            f"{url}/v1/route", json={"prompts": p, "k": 3}, timeout=60
                        ).json()["results"][0],
                        prompts,
                    )
                )
            if "int8" not in inference:  # batching pads differently: scores agree to rounding
                for a, b in zip(many, one, strict=True):
                    sa, sb = [m["score"] for m in a["models"]], [m["score"] for m in b["models"]]
                    assert sa == pytest.approx(sb, abs=1e-3)
                    for ma, mb, x, y in zip(a["models"], b["models"], sa, sb, strict=True):
                        # the same model at each rank, unless two models tie there (equal scores)
                        assert ma["model_id"] == mb["model_id"] or abs(x - y) <= 1e-5, (a, b)
            else:  # int8 activations are quantised per batch, so a batch's neighbours shift scores a
                # little: near-ties (often sibling models of one family) may swap
                pairs = [
                    (a["models"][0]["model_id"], [m["model_id"] for m in b["models"]])
                    for a, b in zip(many, one, strict=True)
                ]
                assert sum(top in three for top, three in pairs) >= 0.9 * len(pairs)
                assert sum(top == three[0] for top, three in pairs) >= 0.8 * len(pairs)
            answers[inference] = [r["models"][0]["model_id"] for r in one]
        finally:
            stop(proc)
    assert answers["onnx"] == answers["fp32"]
    for inference in ("onnx-int8", "int8"):
        agree = sum(a == b for a, b in zip(answers["fp32"], answers[inference], strict=True)) / len(prompts)
        assert agree >= 0.9, (inference, agree)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "hubroute.cli",
            "serve",
            "--state",
            str(tmp_path / "bad"),
            "--router",
            str(router_dir),
            "--inference",
            "fp8",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "inference precision" in proc.stderr + proc.stdout


def test_centroid_router_learns_from_feedback_in_the_service(tmp_path, stream):
    from hubroute.routers import CentroidRouter

    router = CentroidRouter().fit(stream[0]).save(tmp_path / "centroid")
    proc, url = start_server(tmp_path / "state", router)
    try:
        cards = [
            {"model_id": c.model_id, "domain": c.domain, "family": c.family, "text": c.text}
            for c in stream[1].new_cards
        ]
        assert httpx.post(f"{url}/v1/models", json=cards).status_code == 201
        probe = stream[1].eval

        def accuracy() -> float:
            res = httpx.post(f"{url}/v1/route", json={"prompts": [e.prompt for e in probe], "k": 1}, timeout=60)
            top = [r["models"][0]["model_id"] for r in res.json()["results"]]
            return sum(t == e.model_id for t, e in zip(top, probe, strict=True)) / len(probe)

        before = accuracy()
        items = [{"prompt": e.prompt, "model_id": e.model_id, "domain": e.domain} for e in stream[1].train]
        assert httpx.post(f"{url}/v1/feedback", json={"items": items}).status_code == 201
        uid = httpx.post(f"{url}/v1/updates").json()["id"]
        assert wait_update(url, uid, ("promoted", "rejected", "failed"))["status"] == "promoted"
        deadline = time.time() + 30
        while httpx.get(f"{url}/health").json()["version"] != "v0002" and time.time() < deadline:
            time.sleep(0.2)
        assert httpx.get(f"{url}/health").json()["router"] == "centroid"
        assert accuracy() > before + 0.1
    finally:
        stop(proc)
