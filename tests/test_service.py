"""The HTTP service as a real `hubroute serve` process on loopback, for what needs a process of its
own: updates in a worker process, kill -9, concurrency and the encoder runtimes. Every call has an
explicit timeout."""

from __future__ import annotations

import contextlib
import functools
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.routers import EmbeddingRouter
from servers import start_server, stop

pytestmark = pytest.mark.slow  # real server processes

T = 60  # seconds: the timeout of every HTTP call
get = functools.partial(httpx.get, timeout=T)
post = functools.partial(httpx.post, timeout=T)


def wait_update(url: str, uid: int, until: tuple[str, ...], timeout: float = 180) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        u = get(f"{url}/v1/updates/{uid}", timeout=T).json()
        if u["status"] in until:
            return u
        time.sleep(0.2)
    raise AssertionError(f"update {uid} never reached {until}: {u}")


def wait_version(url: str, version: str, timeout: float = 30) -> str:
    deadline = time.time() + timeout
    while (got := get(f"{url}/health", timeout=T).json()["version"]) != version and time.time() < deadline:
        time.sleep(0.2)
    return got


@pytest.fixture(scope="module")
def stream():
    return synth_stream(SynthConfig(models=80, experiences=2, seed=5))


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, stream) -> Path:
    r = EmbeddingRouter(strategy="replay", strategy_params={"ratio": 0.5}, training={"epochs": 30, "batch_size": 16})
    r.fit(stream[0])
    return r.save(tmp_path_factory.mktemp("router") / "r")


@pytest.fixture(scope="module")
def server(tmp_path_factory, router_dir):
    state = tmp_path_factory.mktemp("state")
    proc, url = start_server(state, router_dir)
    yield url, state
    stop(proc)


def test_feedback_update_promotes_and_rollback(server, stream):
    url, state = server
    cards = [
        {"model_id": c.model_id, "domain": c.domain, "family": c.family, "text": c.text} for c in stream[1].new_cards
    ]
    assert post(f"{url}/v1/models", json=cards).status_code == 201
    items = [{"prompt": e.prompt, "model_id": e.model_id, "domain": e.domain} for e in stream[1].train]
    r = post(f"{url}/v1/feedback", json={"items": items})
    assert r.status_code == 201 and r.json()["stored"] == len(items)
    with sqlite3.connect(state / "hub.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == len(items)
    uid = post(f"{url}/v1/updates").json()["id"]
    u = wait_update(url, uid, ("promoted", "rejected", "failed"))
    assert u["status"] == "promoted", u
    assert u["result"]["train"] + u["result"]["held_out"] == len(items)
    assert wait_version(url, "v0002") == "v0002"
    # the worker exported the new version's ONNX graph (the default runtime) before promoting it
    assert (state / "versions" / "v0002" / "inference" / "encoder-0" / "encoder-onnx.onnx").is_file()
    assert post(f"{url}/v1/route", json={"prompts": items[0]["prompt"]}).status_code == 200
    assert post(f"{url}/v1/rollback").json()["version"] == "v0001"
    assert get(f"{url}/health").json()["version"] == "v0001"
    assert post(f"{url}/v1/rollback").status_code == 409
    metrics = get(f"{url}/metrics").text
    assert 'hubroute_requests_total{method="POST",path="/v1/route",status="200"}' in metrics
    assert "hubroute_request_duration_seconds_bucket" in metrics and 'version="v0001"' in metrics
    assert f"hubroute_feedback_rows {float(len(items))}" in metrics
    assert 'hubroute_updates_total{status="promoted"} 1.0' in metrics


def test_sigkill_during_update_keeps_last_good_version_and_feedback(tmp_path, router_dir, stream):
    state = tmp_path / "state"
    proc, url = start_server(state, router_dir)
    items = [{"prompt": e.prompt, "model_id": e.model_id} for e in stream[0].train] * 10
    assert post(f"{url}/v1/feedback", json={"items": items}).status_code == 201
    uid = post(f"{url}/v1/updates").json()["id"]
    worker = wait_update(url, uid, ("running", "promoted", "rejected"))["pid"]
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    with contextlib.suppress(psutil.NoSuchProcess):
        psutil.Process(worker).wait(30)  # the worker follows its server (or had finished)
    proc, url = start_server(state)
    try:
        u = get(f"{url}/v1/updates/{uid}").json()
        version = get(f"{url}/health").json()["version"]
        # the worker either died with the server (interrupted) or had already finished
        assert (u["status"], version) in (("interrupted", "v0001"), ("promoted", "v0002"), ("rejected", "v0001"))
        with sqlite3.connect(state / "hub.sqlite") as db:
            assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == len(items)
        r = post(f"{url}/v1/route", json={"prompts": stream[0].eval[0].prompt})
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
                        lambda p, url=url: post(f"{url}/v1/route", json={"prompts": p, "k": 3}, timeout=60).json()[
                            "results"
                        ][0],
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
        assert post(f"{url}/v1/models", json=cards).status_code == 201
        probe = stream[1].eval

        def accuracy() -> float:
            res = post(f"{url}/v1/route", json={"prompts": [e.prompt for e in probe], "k": 1}, timeout=60)
            top = [r["models"][0]["model_id"] for r in res.json()["results"]]
            return sum(t == e.model_id for t, e in zip(top, probe, strict=True)) / len(probe)

        before = accuracy()
        items = [{"prompt": e.prompt, "model_id": e.model_id, "domain": e.domain} for e in stream[1].train]
        assert post(f"{url}/v1/feedback", json={"items": items}).status_code == 201
        uid = post(f"{url}/v1/updates").json()["id"]
        assert wait_update(url, uid, ("promoted", "rejected", "failed"))["status"] == "promoted"
        assert wait_version(url, "v0002") == "v0002"
        assert get(f"{url}/health").json()["router"] == "centroid"
        assert accuracy() > before + 0.1
    finally:
        stop(proc)


def test_sigterm_drains_and_exits_cleanly(tmp_path, router_dir, stream):
    proc, url = start_server(tmp_path / "state", router_dir, "--inference", "fp32")
    assert get(f"{url}/health/ready").status_code == 200
    assert post(f"{url}/v1/route", json={"prompts": stream[0].eval[0].prompt}).status_code == 200
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    log = proc.log.read_text()
    assert "draining" in log and "hubroute: stopped" in log and "Traceback" not in log
    assert '"route": "/v1/route"' in log  # the JSON access log


def test_the_cli_retires_and_activates_many_models(server, stream, tmp_path):
    url, _ = server
    ids = [c.model_id for c in stream[0].new_cards[:6]]
    listed = tmp_path / "ids.txt"
    listed.write_text("# retire these\n" + "\n".join(ids[2:]) + "\n\n")

    def cli(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "hubroute.cli", "models", *args, "--url", url]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120)

    done = cli("retire", ids[0], ids[1], "--file", str(listed))
    assert done.returncode == 0 and "retired 6 model(s)" in done.stdout, done.stderr
    prompts = [e.prompt for e in stream[0].eval]
    res = post(f"{url}/v1/route", json={"prompts": prompts, "k": 20}).json()["results"]
    assert not {m["model_id"] for r in res for m in r["models"]} & set(ids)
    bad = cli("retire", ids[0], "no/such-model")
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "no/such-model" in bad.stderr
    done = cli("activate", *ids)
    assert done.returncode == 0 and "activated 6 model(s)" in done.stdout, done.stderr
    res = post(f"{url}/v1/route", json={"prompts": prompts, "k": 20}).json()["results"]
    assert {m["model_id"] for r in res for m in r["models"]} & set(ids)
