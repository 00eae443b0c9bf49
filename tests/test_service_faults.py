"""Faults found when the service was attacked: each one reproduced, in-process where no
separate process is needed (FastAPI's TestClient), with real processes where it is."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from fastapi.testclient import TestClient

from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.errors import HubrouteError
from hubroute.routers import CentroidRouter
from hubroute.service.app import ServiceConfig, create_app
from hubroute.service.store import Store
from hubroute.service.updater import STORE_FILE, run_update
from hubroute.service.versions import Versions

POISON = b'{"model_id": "poison/card", "domain": "X", "text": "a \\udc00"}'


@pytest.fixture(scope="module")
def stream():
    return synth_stream(SynthConfig(models=60, experiences=2, seed=3))


@pytest.fixture(scope="module")
def centroid_dir(tmp_path_factory, stream, cache_dir) -> Path:
    from hubroute.encoders import load_encoder

    router = CentroidRouter(load_encoder("default", cache_dir=cache_dir)).fit(stream[0])
    return router.save(tmp_path_factory.mktemp("centroid") / "r")


def _client(state: Path, router_dir: Path | None, **cfg) -> TestClient:
    config = ServiceConfig(inference="fp32", **cfg)
    return TestClient(create_app(state, router_dir, config), raise_server_exceptions=False)


def test_a_card_that_cannot_be_encoded_is_rejected_and_nothing_is_stored(tmp_path, centroid_dir, stream):
    state = tmp_path / "state"
    with _client(state, centroid_dir) as c:
        before = c.get("/v1/models", params={"limit": 1}).json()["total"]
        r = c.post("/v1/models", content=POISON, headers={"content-type": "application/json"})
        assert r.status_code == 422 and "surrogate" in r.json()["detail"], r.text
        assert c.get("/v1/models", params={"limit": 1}).json()["total"] == before
        assert c.post("/v1/route", json={"prompts": stream[0].eval[0].prompt}).status_code == 200
    assert not [m for m, _ in Store(state / STORE_FILE).models() if m.model_id == "poison/card"]
    with _client(state, None) as c:  # the server restarts
        assert c.post("/v1/route", json={"prompts": stream[0].eval[0].prompt}).status_code == 200


def test_a_card_whose_encoding_fails_leaves_registry_store_and_routing_intact(tmp_path, centroid_dir, stream):
    with _client(tmp_path / "state", centroid_dir) as c:
        svc = c.app.state.service
        real = svc.router.encoder.encode

        def failing(texts, **kw):
            if any("explodes" in t for t in texts):
                raise RuntimeError("encoder failure")
            return real(texts, **kw)

        svc.router.encoder.encode = failing
        n = len(svc.router.registry_)
        cards = [
            {"model_id": "ok/one", "domain": "X", "text": "fine"},
            {"model_id": "bad/two", "domain": "X", "text": "explodes"},
        ]
        assert c.post("/v1/models", json=cards).status_code >= 400
        assert len(svc.router.registry_) == n
        assert not any(m.model_id in ("ok/one", "bad/two") for m, _ in svc.store.models())
        assert c.post("/v1/route", json={"prompts": stream[0].eval[0].prompt}).status_code == 200


def test_one_bad_prompt_fails_only_its_own_request(tmp_path, centroid_dir, stream):
    with _client(tmp_path / "state", centroid_dir) as c:
        r = c.post("/v1/route", content=b'{"prompts": "x \\udc00"}', headers={"content-type": "application/json"})
        assert r.status_code == 422 and "surrogate" in r.json()["detail"]
        r = c.post("/v1/route", json={"prompts": ["fine", "nul\x00"]})
        assert r.status_code == 422 and "prompt 1" in r.json()["detail"], r.text
        r = c.post("/v1/feedback", json={"prompt": "fine", "model_id": "org/bell\x07"})
        assert r.status_code == 422 and "model_id" in r.json()["detail"], r.text
        assert c.post("/v1/route", json={"prompts": ["fine", "tabs\tand\nlines are fine"]}).status_code == 200


def _feedback_state(tmp_path: Path, router_dir: Path, stream, n: int) -> tuple[Path, Store, Versions]:
    state = tmp_path / "state"
    versions = Versions(state)
    versions.promote(versions.import_dir(router_dir))
    store = Store(state / STORE_FILE)
    exp = stream[1]
    for card in exp.new_cards:
        store.add_model(card)
    store.add_feedback([(e.prompt, e.model_id, e.domain) for e in exp.train[:n]])
    return state, store, versions


def test_an_update_never_undoes_a_rollback(tmp_path, centroid_dir, stream):
    state, store, versions = _feedback_state(tmp_path, centroid_dir, stream, 60)
    first = run_update(str(state), store.create_update(versions.current), min_held_out=1)
    assert versions.current == "v0002", first
    store.add_feedback([(e.prompt, e.model_id, e.domain) for e in stream[1].train[60:90]])
    stale = store.create_update("v0002")  # an update built from v0002 is queued or running...
    assert versions.rollback() == "v0001"  # ...when the operator rolls back
    result = run_update(str(state), stale, min_held_out=1)
    assert versions.current == "v0001", result
    assert store.update(stale)["status"] in ("cancelled", "superseded")


def test_no_held_out_feedback_means_no_promotion(tmp_path, centroid_dir, stream):
    state, store, versions = _feedback_state(tmp_path, centroid_dir, stream, 3)
    uid = store.create_update(versions.current)
    result = run_update(str(state), uid)
    assert store.update(uid)["status"] == "rejected" and versions.current == "v0001", result
    assert "held-out" in result["reason"]


def test_garbage_feedback_cannot_replace_a_good_router(tmp_path, centroid_dir, stream):
    state = tmp_path / "state"
    versions = Versions(state)
    versions.promote(versions.import_dir(centroid_dir))
    store = Store(state / STORE_FILE)
    ids = [c.model_id for c in stream[0].new_cards]
    shifted = {m: ids[(i + 1) % len(ids)] for i, m in enumerate(ids)}
    # every known prompt labelled with the wrong model, three times over: the held-out slice agrees
    # with the garbage, so only the router's reference sample can tell
    store.add_feedback([(e.prompt, shifted[e.model_id], None) for e in stream[0].train] * 3)
    uid = store.create_update(versions.current)
    result = run_update(str(state), uid, min_held_out=1)
    assert store.update(uid)["status"] == "rejected" and versions.current == "v0001", result
    assert "reference" in result["reason"]


def test_update_ids_out_of_range_are_a_4xx(tmp_path, centroid_dir):
    with _client(tmp_path / "state", centroid_dir) as c:
        for uid in ("9223372036854775808", "-1", "abc"):
            r = c.get(f"/v1/updates/{uid}")
            assert 400 <= r.status_code < 500, (uid, r.status_code, r.text)


def test_server_errors_are_counted_in_metrics(tmp_path, centroid_dir):
    with _client(tmp_path / "state", centroid_dir) as c:
        svc = c.app.state.service

        def broken(prompts):
            raise RuntimeError("scoring broke")

        svc.router.scores = broken
        for _ in range(3):
            assert c.post("/v1/route", json={"prompts": "hello"}).status_code == 500
        text = c.get("/metrics").text
        line = next(x for x in text.splitlines() if 'path="/v1/route"' in x and 'status="500"' in x)
        assert line.startswith("hubroute_requests_total") and float(line.split()[-1]) == 3
        assert 'hubroute_request_duration_seconds_count{method="POST",path="/v1/route",status="500"} 3.0' in text


def test_a_damaged_version_is_reported_in_one_line_and_recovered_on_request(tmp_path, centroid_dir, stream):
    state, store, versions = _feedback_state(tmp_path, centroid_dir, stream, 60)
    run_update(str(state), store.create_update(versions.current), min_held_out=1)
    assert versions.current == "v0002"
    weights = versions.path("v0002") / "centroids.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # truncated
    with pytest.raises(HubrouteError) as e:
        create_app(state, None, ServiceConfig(inference="fp32"))
    msg = str(e.value)
    assert "\n" not in msg and "v0002" in msg and "v0001" in msg and "--recover" in msg
    app = create_app(state, None, ServiceConfig(inference="fp32", recover=True))
    assert app.state.service.version == "v0001"
    assert Versions(state).current == "v0001"


def test_a_corrupt_current_pointer_is_reported_and_recovered(tmp_path, centroid_dir):
    state = tmp_path / "state"
    versions = Versions(state)
    versions.promote(versions.import_dir(centroid_dir))
    (state / "CURRENT").write_text('{"current": "v00')
    with pytest.raises(HubrouteError) as e:
        create_app(state, None, ServiceConfig(inference="fp32"))
    assert "CURRENT" in str(e.value) and "--recover" in str(e.value) and "\n" not in str(e.value)
    app = create_app(state, None, ServiceConfig(inference="fp32", recover=True))
    assert app.state.service.version == "v0001"


def test_the_store_starts_one_update_at_a_time(tmp_path):
    from hubroute.service.store import UpdateRunning

    store = Store(tmp_path / STORE_FILE)
    uid = store.create_update("v0001")
    with pytest.raises(UpdateRunning, match=f"update {uid} is already queued or running"):
        store.create_update("v0001")
    store.set_update(uid, status="interrupted")
    assert store.create_update("v0001") == uid + 1


def test_start_up_never_kills_a_process_that_is_not_its_worker(tmp_path, centroid_dir):
    state = tmp_path / "state"
    Versions(state).promote(Versions(state).import_dir(centroid_dir))
    store = Store(state / STORE_FILE)
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        uid = store.create_update("v0001")
        store.set_update(uid, status="running", pid=bystander.pid)  # a reused PID
        create_app(state, None, ServiceConfig(inference="fp32"))
        assert bystander.poll() is None
        assert store.update(uid)["status"] == "interrupted"
    finally:
        bystander.kill()
        bystander.wait()


def _start_a_long_update(tmp_path: Path, stream, *extra: str) -> tuple[subprocess.Popen, str, int, psutil.Process]:
    """A real server on ``tmp_path/state`` (``extra``: more ``serve`` flags) running an update
    that takes minutes: the server, its URL, the update's id and its worker process."""
    import httpx

    from hubroute.routers import EmbeddingRouter
    from servers import start_server

    router = EmbeddingRouter(training={"epochs": 0})
    router.fit(stream[0])
    router.training = router.training.__class__(epochs=5000, batch_size=8)  # an update that runs for minutes
    proc, url = start_server(tmp_path / "state", router.save(tmp_path / "r"), "--inference", "fp32", *extra)
    items = [{"prompt": e.prompt, "model_id": e.model_id} for e in stream[0].train]
    with httpx.Client(base_url=url, timeout=30) as c:
        assert c.post("/v1/feedback", json={"items": items}).status_code == 201
        uid = c.post("/v1/updates").json()["id"]
        deadline = time.time() + 60
        while (u := c.get(f"/v1/updates/{uid}").json())["status"] != "running" and time.time() < deadline:
            time.sleep(0.2)
    worker = psutil.Process(u["pid"])
    assert worker.is_running()
    return proc, url, uid, worker


@pytest.mark.slow
def test_the_update_worker_dies_with_its_server(tmp_path, stream):
    proc, _, uid, worker = _start_a_long_update(tmp_path, stream)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    try:
        worker.wait(15)
    except psutil.TimeoutExpired:
        worker.kill()
        raise AssertionError("the update worker outlived its server") from None
    assert json.loads((tmp_path / "state" / "CURRENT").read_text())["current"] == "v0001"
    assert Store(tmp_path / "state" / STORE_FILE).update(uid)["status"] == "interrupted"


def _store_flags(store_spec: str) -> list[str]:
    """``serve`` flags for the store of ``store_spec`` (none: the state folder's SQLite file)."""
    return ["--store", store_spec] if store_spec.startswith("postgresql://") else []


@pytest.mark.slow
def test_starting_a_second_server_on_the_same_state_leaves_the_first_ones_update_running(tmp_path, stream, store_spec):
    import httpx

    from servers import start_server, stop

    proc, url, uid, worker = _start_a_long_update(tmp_path, stream, *_store_flags(store_spec))
    other = None
    try:
        other, other_url = start_server(tmp_path / "state", None, "--inference", "fp32", *_store_flags(store_spec))
        with httpx.Client(timeout=30) as c:
            assert c.get(f"{other_url}/health/ready").status_code == 200
            assert c.get(f"{url}/v1/updates/{uid}").json()["status"] == "running"
            assert c.get(f"{other_url}/v1/updates/{uid}").json()["status"] == "running"
            refused = c.post(f"{other_url}/v1/updates")  # one update at a time across the servers
            assert refused.status_code == 409 and f"update {uid} is already" in refused.json()["detail"]
        assert worker.is_running()
    finally:
        for p in (other, proc):
            if p is not None:
                stop(p)
        with contextlib.suppress(psutil.NoSuchProcess):
            worker.wait(15)


@pytest.mark.slow
def test_two_servers_on_one_state_folder_agree_on_models_and_versions(tmp_path, centroid_dir, stream, store_spec):
    """A model added or retired on one server is routed (or not) by the other within a bounded
    delay, and a version made current by anyone is served by both (on either store)."""
    import httpx

    from servers import start_server, stop

    state, flags = tmp_path / "state", _store_flags(store_spec)
    a, url_a = start_server(state, centroid_dir, "--inference", "fp32", *flags)
    b = None
    card = {
        "model_id": "new-org/turtle-counter",
        "domain": stream[0].new_cards[0].domain,
        "family": "turtles",
        "text": "counts sea turtles on beach photographs taken by drones",
    }
    prompt = "how many sea turtles are on this drone photo of the beach?"
    try:
        b, url_b = start_server(state, None, "--inference", "fp32", *flags)
        with httpx.Client(timeout=30) as c:

            def top(url: str) -> str:
                return c.post(f"{url}/v1/route", json={"prompts": prompt, "k": 1}).json()["results"][0]["models"][0][
                    "model_id"
                ]

            def ready(url: str) -> dict:
                return c.get(f"{url}/health/ready").json()

            def until(check, what: str) -> None:
                deadline = time.time() + 20
                while not check():
                    assert time.time() < deadline, what
                    time.sleep(0.1)

            assert top(url_b) != card["model_id"]
            assert c.post(f"{url_a}/v1/models", json=[card]).status_code == 201
            until(lambda: top(url_b) == card["model_id"], "B never routed the model added on A")
            until(
                lambda: ready(url_b)["registry_revision"] == ready(url_a)["registry_revision"] == 1, "revisions differ"
            )
            assert c.post(f"{url_b}/v1/models", json=[card]).status_code == 409
            assert c.post(f"{url_a}/v1/models/{card['model_id']}/retire").status_code == 200
            until(lambda: top(url_b) != card["model_id"], "B still routes the model retired on A")
            assert c.post(f"{url_b}/v1/models/{card['model_id']}/activate").status_code == 200
            until(lambda: top(url_a) == card["model_id"], "A never routed the model re-activated on B")
            Versions(state).promote(Versions(state).import_dir(centroid_dir))  # promoted by someone else
            until(lambda: ready(url_a)["version"] == ready(url_b)["version"] == "v0002", "a server kept v0001")
            assert top(url_b) == top(url_a) == card["model_id"]  # the new version learns the shared registry
    finally:
        for p in (b, a):
            if p is not None:
                stop(p)


@pytest.mark.slow
def test_killing_one_replica_under_load_fails_nothing_on_the_other_and_loses_no_feedback(
    tmp_path, centroid_dir, stream, store_spec
):
    """Two replicas on one store take routes and feedback; one is SIGKILLed mid-stream. The other
    answers every request, and every feedback row either acknowledged is in the store."""
    import httpx

    from servers import start_server, stop

    state, flags = tmp_path / "state", _store_flags(store_spec)
    a, url_a = start_server(state, centroid_dir, "--inference", "fp32", *flags)
    b = None
    model = stream[0].new_cards[0].model_id
    acked: list[tuple[int, str]] = []
    errors_b: list[str] = []
    a_busy, a_killed = threading.Event(), threading.Event()

    def load(url: str, name: str, after_kill: int) -> None:
        """Alternate feedback and route requests; on A stop at the first failure after the kill
        (a load balancer takes it out), on B go on for ``after_kill`` requests past the kill."""
        with httpx.Client(base_url=url, timeout=30) as c:
            for i in range(2000):  # bounded; ends well before on both
                prompt = f"{name} load prompt {i}: which model should answer this?"
                try:
                    r = c.post("/v1/feedback", json={"prompt": prompt, "model_id": model})
                    if r.status_code == 201:
                        acked.append((r.json()["ids"][0], prompt))
                    routed = c.post("/v1/route", json={"prompts": prompt, "k": 1})
                    ok = r.status_code == 201 and routed.status_code == 200
                except httpx.TransportError as e:
                    ok, r = False, e
                if name == "a":
                    if i == 20:
                        a_busy.set()
                    if a_killed.is_set() and not ok:
                        return
                elif not ok:
                    errors_b.append(f"request {i}: {r!r}")
                if a_killed.is_set():
                    after_kill -= 1
                    if after_kill <= 0:
                        return

    try:
        b, url_b = start_server(state, None, "--inference", "fp32", *flags)
        threads = [
            threading.Thread(target=load, args=(url_a, "a", 10**6)),
            threading.Thread(target=load, args=(url_b, "b", 40)),
        ]
        for t in threads:
            t.start()
        assert a_busy.wait(120), "replica A never got busy"
        os.kill(a.pid, signal.SIGKILL)
        a.wait(10)
        a_killed.set()
        for t in threads:
            t.join(300)
        assert not any(t.is_alive() for t in threads)
        assert errors_b == []
        with httpx.Client(timeout=30) as c:
            assert c.get(f"{url_b}/health/ready").status_code == 200
    finally:
        for p in (b, a):
            if p is not None and p.poll() is None:
                stop(p)
    store = Store(store_spec if flags else state / STORE_FILE)
    stored = {fid: ex.prompt for fid, ex in store.pending_feedback(10**12)}
    assert {p.split()[0] for _, p in acked} == {"a", "b"} and len(acked) >= 60
    assert [(fid, stored.get(fid)) for fid, _ in acked] == acked  # every acknowledged row, as sent
