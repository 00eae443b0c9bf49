"""The HTTP API in-process (FastAPI's TestClient): routing, validation and limits, keys and
scopes, rate limits, idempotency, observability. Tests that need a server process of its own
live in test_service.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.errors import HubrouteError
from hubroute.routers import CentroidRouter
from hubroute.service.app import create_app
from hubroute.service.auth import create_key
from hubroute.service.config import ServiceConfig
from hubroute.service.store import Store


@pytest.fixture(scope="module")
def stream():
    return synth_stream(SynthConfig(models=60, experiences=2, seed=3))


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory, stream, encoder) -> Path:
    return CentroidRouter(encoder).fit(stream[0]).save(tmp_path_factory.mktemp("centroid") / "r")


def client(state: Path, router_dir: Path | None, **cfg) -> TestClient:
    config = ServiceConfig(inference="fp32", access_log=False, **cfg)
    return TestClient(create_app(state, router_dir, config), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def api(tmp_path_factory, router_dir):
    with client(tmp_path_factory.mktemp("state"), router_dir, max_body_bytes=200_000) as c:
        yield c


def test_route_single_batch_and_domain(api, stream):
    r = api.post("/v1/route", json={"prompts": stream[0].eval[0].prompt, "k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "v0001" and len(body["results"]) == 1 and len(body["results"][0]["models"]) == 3
    assert {"model_id", "score", "domain", "family"} <= set(body["results"][0]["models"][0])
    examples = stream[0].eval[:20]
    res = api.post("/v1/route", json={"prompts": [e.prompt for e in examples], "k": 1}).json()["results"]
    top = [x["models"][0]["model_id"] for x in res]
    assert sum(t == e.model_id for t, e in zip(top, examples, strict=True)) >= 12
    domain = examples[0].domain
    res = api.post("/v1/route", json={"prompts": [e.prompt for e in examples], "domain": domain}).json()["results"]
    assert all(m["domain"] == domain for x in res for m in x["models"])
    assert r.headers["x-request-id"]


BAD = [
    ("post", "/v1/route", {"content": b"{not json", "headers": {"content-type": "application/json"}}, 422),
    ("post", "/v1/route", {"json": {"prompts": ""}}, 422),
    ("post", "/v1/route", {"json": {"prompts": []}}, 422),
    ("post", "/v1/route", {"json": {"prompts": ["ok", "   "]}}, 422),
    ("post", "/v1/route", {"json": {"prompts": "x" * 5000}}, 422),
    ("post", "/v1/route", {"json": {"prompts": ["p"] * 300}}, 422),
    ("post", "/v1/route", {"json": {"prompts": "hello", "k": 0}}, 422),
    ("post", "/v1/route", {"json": {"prompts": "hello", "k": 101}}, 422),
    ("post", "/v1/route", {"json": {"prompts": "hello", "k": "5"}}, 422),
    ("post", "/v1/route", {"json": {"prompts": "hello", "k": True}}, 422),
    ("post", "/v1/route", {"json": {"prompts": "hello", "k": 2.0}}, 422),
    ("post", "/v1/route", {"json": {"prompts": "hello", "colour": "red"}}, 422),
    ("post", "/v1/route", {"json": {"prompts": "hello", "domain": "Cooking Recipes"}}, 422),
    ("post", "/v1/route", {"json": {"k": 3}}, 422),
    ("post", "/v1/route", {"json": ["hello"]}, 422),
    ("post", "/v1/route", {"data": {"prompts": "hello"}}, 415),
    ("post", "/v1/route", {"content": b'{"prompts": "hi"}', "headers": {"content-type": "text/plain"}}, 415),
    (
        "post",
        "/v1/route",
        {"content": b'{"prompts": "' + b"a" * 300_000 + b'"}', "headers": {"content-type": "application/json"}},
        413,
    ),
    ("post", "/v1/models/nope/unknown/retire", {}, 404),
    ("post", "/v1/models/nope/activate", {}, 404),
    ("post", "/v1/models", {"json": [{"model_id": "a/b", "domain": "X"}, {"model_id": "a/b", "domain": "X"}]}, 409),
    ("post", "/v1/models", {"json": {"model_id": " ", "domain": "X"}}, 422),
    ("post", "/v1/models", {"json": {"domain": "X"}}, 422),
    ("post", "/v1/models", {"json": []}, 422),
    ("post", "/v1/models", {"json": {"model_id": "a/b", "domain": "X", "extra": {"blob": "x" * 20_000}}}, 422),
    ("post", "/v1/models", {"json": {"model_id": "a/b", "domain": "X", "created_at": "yesterday"}}, 422),
    ("post", "/v1/feedback", {"json": {"prompt": "hi", "model_id": "nope/nope"}}, 404),
    ("post", "/v1/feedback", {"json": {"prompt": "", "model_id": "x"}}, 422),
    ("post", "/v1/feedback", {"json": {"items": []}}, 422),
    ("get", "/v1/updates/9999", {}, 404),
    ("get", "/v1/updates/0", {}, 422),
    ("get", "/v1/models", {"params": {"status": "sleeping"}}, 422),
    ("get", "/v1/models", {"params": {"limit": 0}}, 422),
    ("get", "/v1/models", {"params": {"offset": 2**64}}, 422),
    ("get", "/v1/audit", {"params": {"offset": 3801181942576963470987974922163191808}}, 422),
    ("get", "/v1/route", {}, 405),
    ("get", "/v1/route/../../etc/passwd", {}, 404),
]


@pytest.mark.parametrize(("method", "path", "kw", "want"), BAD, ids=[f"{m} {p} {w}" for m, p, _, w in BAD])
def test_bad_input_gets_a_4xx_with_a_one_line_message(api, method, path, kw, want):
    r = getattr(api, method)(path, **kw)
    assert r.status_code == want, (path, kw if len(str(kw)) < 300 else "...", r.status_code, r.text[:300])
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail and "\n" not in detail


def test_nothing_changed_after_bad_input(api, stream):
    assert api.get("/v1/models", params={"limit": 1}).json()["total"] == len(stream[0].new_cards)
    assert api.post("/v1/route", json={"prompts": "hello"}).status_code == 200


def test_a_foreign_host_header_is_refused(api):
    assert api.get("/health", headers={"host": "evil.example"}).status_code == 400


def test_cold_start_retire_activate(api):
    card = {
        "model_id": "lab/tide-whale-listener",
        "domain": "Audio Audio Classification",
        "family": "tide",
        "text": "lab/tide-whale-listener: detects whale songs and ocean tide sounds in hydrophone recordings.",
    }
    assert api.post("/v1/models", json=card).status_code == 201
    assert api.post("/v1/models", json=card).status_code == 409
    prompt = {"prompts": "find whale songs in hydrophone recordings of the ocean", "k": 3}
    assert api.post("/v1/route", json=prompt).json()["results"][0]["models"][0]["model_id"] == card["model_id"]
    assert api.post(f"/v1/models/{card['model_id']}/retire").status_code == 200
    top = api.post("/v1/route", json={**prompt, "k": 100}).json()["results"][0]["models"]
    assert card["model_id"] not in {m["model_id"] for m in top}
    listed = api.get("/v1/models", params={"status": "retired"}).json()
    assert [m["model_id"] for m in listed["models"]] == [card["model_id"]]
    assert api.post(f"/v1/models/{card['model_id']}/activate").status_code == 200
    assert api.post("/v1/route", json=prompt).json()["results"][0]["models"][0]["model_id"] == card["model_id"]
    actions = [e["action"] for e in api.get("/v1/audit").json()["entries"]]
    assert actions[:3] == ["models.activate", "models.retire", "models.add"]


def test_a_retried_feedback_request_is_stored_once(api, stream):
    item = {"prompt": stream[0].eval[1].prompt, "model_id": stream[0].eval[1].model_id}
    headers = {"Idempotency-Key": "batch-0001"}
    first = api.post("/v1/feedback", json={"items": [item, item]}, headers=headers)
    again = api.post("/v1/feedback", json={"items": [item, item]}, headers=headers)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["ids"] == first.json()["ids"] and again.json()["replayed"] is True
    reused = api.post("/v1/feedback", json={"items": [item]}, headers=headers)
    assert reused.status_code == 422 and "Idempotency-Key" in reused.json()["detail"]
    other = api.post("/v1/feedback", json=item, headers={"Idempotency-Key": "batch-0002"})
    assert other.status_code == 201 and other.json()["ids"][0] == first.json()["ids"][-1] + 1


def test_metrics_health_and_request_ids(api):
    r = api.get("/health/ready")
    assert r.status_code == 200 and r.json()["status"] == "ready"
    assert api.get("/health/live").json() == {"status": "live"}
    r = api.get("/health", headers={"X-Request-ID": "trace-42"})
    assert r.headers["x-request-id"] == "trace-42"
    assert api.get("/health", headers={"X-Request-ID": "bad id\twith tab"}).headers["x-request-id"] != "bad id"
    text = api.get("/metrics").text
    assert 'hubroute_requests_total{method="POST",path="/v1/route",status="200"}' in text
    assert 'hubroute_request_duration_seconds_bucket{le="0.005",method="POST",path="/v1/route",status="422"}' in text
    assert "hubroute_routed_to_total{model_id=" in text and "hubroute_batch_prompts_bucket" in text
    assert 'hubroute_router_info{kind="centroid",version="v0001"} 1.0' in text
    svc = api.app.state.service
    svc.draining = True
    try:
        assert api.get("/health/ready").status_code == 503
        assert api.post("/v1/route", json={"prompts": "hello"}).status_code == 503
    finally:
        svc.draining = False


def test_openapi_states_the_limits(api):
    spec = api.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    route = schemas["RouteBody"]["properties"]
    assert route["k"]["maximum"] == 100 and route["k"]["minimum"] == 1
    assert schemas["RouteBody"]["additionalProperties"] is False
    assert "413" in spec["paths"]["/v1/route"]["post"]["responses"]
    assert "429" in spec["paths"]["/v1/route"]["post"]["responses"]
    text = json.dumps(route["prompts"])
    assert '"maxLength": 4000' in text and '"maxItems": 256' in text


def test_keys_scopes_and_audit(tmp_path, router_dir, stream):
    state = tmp_path / "state"
    with client(state, router_dir) as c:  # no keys yet: open (loopback only)
        assert c.post("/v1/route", json={"prompts": "hi"}).status_code == 200
    store = Store(state / "hub.sqlite")
    route_key = create_key(store, "frontend", ["route"])
    admin_key = create_key(store, "ops", ["admin"])
    assert all(route_key not in json.dumps(k) for k in store.api_keys())  # only a hash is stored
    with client(state, None) as c:
        assert c.post("/v1/route", json={"prompts": "hi"}).status_code == 401
        bad = route_key[:-2] + ("AA" if route_key[-2:] != "AA" else "BB")
        assert (
            c.post("/v1/route", json={"prompts": "hi"}, headers={"Authorization": f"Bearer {bad}"}).status_code == 401
        )
        as_route = {"Authorization": f"Bearer {route_key}"}
        assert c.post("/v1/route", json={"prompts": "hi"}, headers=as_route).status_code == 200
        assert c.post("/v1/route", json={"prompts": "hi"}, headers={"X-API-Key": route_key}).status_code == 200
        assert c.get("/v1/models", headers=as_route).status_code == 200
        card = {"model_id": "x/y", "domain": "X"}
        assert c.post("/v1/models", json=card, headers=as_route).status_code == 403
        assert c.post("/v1/feedback", json={"prompt": "p", "model_id": "x"}, headers=as_route).status_code == 403
        assert c.get("/metrics", headers=as_route).status_code == 403
        as_admin = {"X-API-Key": admin_key}
        assert c.post("/v1/models", json=card, headers=as_admin).status_code == 201
        assert c.get("/health/ready").status_code == 200  # health needs no key
        entries = c.get("/v1/audit", headers=as_admin).json()["entries"]
        assert entries[0]["actor"] == "ops" and entries[0]["action"] == "models.add" and entries[0]["target"] == "x/y"
        from hubroute.service.store import Store as S

        S(state / "hub.sqlite").revoke_key("frontend")  # takes effect without a restart
        assert c.post("/v1/route", json={"prompts": "hi"}, headers=as_route).status_code == 401


def test_keys_file_and_remote_bind(tmp_path, router_dir):
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"name": "svc", "scopes": ["route", "feedback"], "key": "hr_abc123_s3cret-value"}]))
    with client(tmp_path / "a", router_dir, keys_file=str(keys)) as c:
        assert c.post("/v1/route", json={"prompts": "hi"}).status_code == 401
        ok = c.post("/v1/route", json={"prompts": "hi"}, headers={"X-API-Key": "hr_abc123_s3cret-value"})
        assert ok.status_code == 200
    with pytest.raises(HubrouteError, match="without API keys"):
        create_app(tmp_path / "b", router_dir, ServiceConfig(inference="fp32"), bind_host="0.0.0.0")
    app = create_app(
        tmp_path / "c", router_dir, ServiceConfig(inference="fp32", keys_file=str(keys)), bind_host="0.0.0.0"
    )
    app.state.service.stop()
    keys.write_text("[{]")
    with pytest.raises(HubrouteError, match=r"keys\.json: invalid JSON"):
        create_app(tmp_path / "d", router_dir, ServiceConfig(inference="fp32", keys_file=str(keys)))


def test_rate_limit_answers_429_with_retry_after(tmp_path, router_dir):
    with client(tmp_path / "state", router_dir, rate_limit_per_s=0.5, rate_limit_burst=3) as c:
        codes = [c.post("/v1/route", json={"prompts": "hi"}).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        r = c.post("/v1/route", json={"prompts": "hi"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert c.get("/health/ready").status_code == 200  # health is never limited


def test_settings_from_file_and_environment(tmp_path):
    f = tmp_path / "service.toml"
    f.write_text("[service]\nmax_prompts = 32\nmargin = 2.5\n")
    cfg = ServiceConfig.load(f, env={"HUBROUTE_MAX_PROMPTS": "16", "HUBROUTE_ALLOWED_HOSTS": "a.example,b.example"})
    assert cfg.max_prompts == 16 and cfg.margin == 2.5 and cfg.allowed_hosts == ["a.example", "b.example"]
    assert ServiceConfig.load(f, env={}, max_prompts=8).max_prompts == 8
    with pytest.raises(HubrouteError, match="HUBROUTE_MAX_K"):
        ServiceConfig.load(env={"HUBROUTE_MAX_K": "many"})
    f.write_text("colour = 'red'\n")
    with pytest.raises(HubrouteError, match="unknown service setting"):
        ServiceConfig.load(f, env={})


def test_requests_are_traced_when_asked(tmp_path, router_dir):
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with client(tmp_path / "state", router_dir, otel=True) as c:
        c.post("/v1/route", json={"prompts": "hi"}, headers={"X-Request-ID": "rid-7"})
    spans = exporter.get_finished_spans()
    ours = [s for s in spans if s.name == "hubroute.request"]
    assert len(ours) == 1 and ours[0].attributes["hubroute.request_id"] == "rid-7"
    assert ours[0].attributes["http.route"] == "/v1/route" and ours[0].attributes["http.response.status_code"] == 200
    inner = [s for s in spans if s is not ours[0]]
    assert inner and all(s.context.trace_id == ours[0].context.trace_id for s in inner)


def test_many_models_retire_and_activate_in_one_request(api, stream):
    ids = [c.model_id for c in stream[0].new_cards[:10]]
    r = api.post("/v1/models/status", json={"model_ids": ids, "status": "retired"})
    assert r.status_code == 200 and r.json()["changed"] == 10
    top = api.post("/v1/route", json={"prompts": [e.prompt for e in stream[0].eval[:10]], "k": 50}).json()
    assert not {m["model_id"] for x in top["results"] for m in x["models"]} & set(ids)
    assert api.post("/v1/models/status", json={"model_ids": ids, "status": "retired"}).json()["changed"] == 0
    r = api.post("/v1/models/status", json={"model_ids": [*ids, "nope/nope"], "status": "active"})
    assert r.status_code == 404 and "nope/nope" in r.json()["detail"]
    assert api.get("/v1/models", params={"status": "retired", "limit": 100}).json()["total"] == 10  # unchanged
    assert api.post("/v1/models/status", json={"model_ids": ids, "status": "sleeping"}).status_code == 422
    assert api.post("/v1/models/status", json={"model_ids": ids, "status": "active"}).json()["changed"] == 10


def test_a_restart_does_not_encode_again_the_cards_added_through_the_service(tmp_path, router_dir, monkeypatch):
    from hubroute.encoders import SentenceTransformerEncoder

    cards = [
        {
            "model_id": f"lab/reef-{i}",
            "domain": "Audio Audio Classification",
            "text": f"lab/reef-{i}: tells coral reef sound scape number {i} from boat noise in hydrophone audio.",
        }
        for i in range(3)
    ]
    monkeypatch.setenv("HUBROUTE_CACHE", str(tmp_path / "cache"))  # the service's encoder cache
    with client(tmp_path / "state", router_dir) as c:
        assert c.post("/v1/models", json=cards).status_code == 201
    encoded: list[str] = []
    original = SentenceTransformerEncoder.encode

    def counting(self, texts, **kw):
        encoded.extend(texts)
        return original(self, texts, **kw)

    monkeypatch.setattr(SentenceTransformerEncoder, "encode", counting)
    with client(tmp_path / "state", None) as c:
        assert {m["model_id"] for m in c.get("/v1/models", params={"limit": 1000}).json()["models"]} >= {
            x["model_id"] for x in cards
        }
        prompt = {"prompts": cards[1]["text"], "k": 1}
        assert c.post("/v1/route", json=prompt).json()["results"][0]["models"][0]["model_id"] == "lab/reef-1"
    assert not any("coral reef" in t for t in encoded[:-1])  # the last text is the routed prompt
    assert [t for t in encoded if "coral reef" in t] == [cards[1]["text"]]
