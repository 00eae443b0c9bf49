"""`hubroute serve` attacked on loopback (kind ``service_attack``), bounded in requests and time.

A real server with an API key (admin) serves the prompt-centroid router over every CMRBench model.
Three phases:

1. schemathesis generates requests for every operation of the server's own OpenAPI schema, valid
   (positive) and invalid (negative), ``examples`` per operation and mode, with the key, and
   checks every answer against the schema (documented status, body shape, no 5xx);
2. hand-made attacks: cards and prompts that cannot be encoded, control characters, huge ids and
   numbers, bodies over the limit, form posts, foreign Host headers, missing or wrong keys, a
   poisoned prompt sent every 50 ms while clients route valid prompts, retried feedback,
   garbage feedback followed by an update;
3. state checks: the store and the serving registry agree, every acknowledged feedback row is
   stored once, routing works, the garbage update was not promoted.

Counts of requests and of 2xx / 4xx / 5xx answers come from the server's own Prometheus metrics.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from hubroute.evaluation import tables
from hubroute.routers import CentroidRouter
from suite.common import Machine, command_line, header, load_stream, write
from suite.servers import start, stop

KEY = "hr_bench0attack_b8e1c3a5d7f9e2c4a6b8d0f1e3c5a7b9d1f3e5c7"


def fuzz(url: str, examples: int) -> dict[str, Any]:
    """Phase 1: schemathesis over the live server's schema; returns status counts and failures."""
    import schemathesis
    from hypothesis.errors import Unsatisfiable
    from schemathesis.config import SchemathesisConfig

    config = SchemathesisConfig.from_path(Path(__file__).parents[2] / "schemathesis.toml")
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", config=config)
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()
        for mode in schemathesis.GenerationMode:
            with contextlib.suppress(Unsatisfiable):  # an operation without inputs has no invalid form
                _fuzz_one(url, op, mode, examples, statuses, failures)()
    return {"statuses": dict(sorted(statuses.items())), "failures": sorted(set(failures))}


def _fuzz_one(url: str, op: Any, mode: Any, examples: int, statuses: Counter[int], failures: list[str]) -> Any:
    """A Hypothesis test that sends ``examples`` generated requests of one operation and mode."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    excluded = [schemathesis.checks.ignored_auth, schemathesis.checks.positive_data_acceptance]

    @settings(
        max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
    )
    @given(case=op.as_strategy(generation_mode=mode))
    def one(case: Any) -> None:
        response = case.call(base_url=url, headers={"X-API-Key": KEY}, timeout=30)
        statuses[response.status_code] += 1
        try:
            case.validate_response(response, excluded_checks=excluded)
        except (Exception, BaseExceptionGroup) as e:  # recorded (schemathesis groups failures); counted
            failures.append(f"{op.label} ({mode.value}): {type(e).__name__}: {str(e).splitlines()[0][:200]}")

    return one


def handmade(url: str, stream: Any) -> list[dict[str, Any]]:
    """Phase 2: each attack, what came back and whether that is what it should be."""
    key = {"X-API-Key": KEY}
    c = httpx.Client(base_url=url, timeout=30, headers=key)
    known = stream[0].new_cards[0].model_id
    prompt = stream[0].eval[0].prompt
    js = {"content-type": "application/json"}
    cases: list[tuple[str, Any, set[int]]] = [
        (
            "card with a lone surrogate",
            lambda: c.post("/v1/models", content=b'{"model_id":"p/x","domain":"X","text":"a \\udc00"}', headers=js),
            {422},
        ),
        (
            "prompt with a lone surrogate",
            lambda: c.post("/v1/route", content=b'{"prompts":"x \\udc00"}', headers=js),
            {422},
        ),
        ("prompt with NUL", lambda: c.post("/v1/route", json={"prompts": "a\x00b"}), {422}),
        (
            "model id with a control character",
            lambda: c.post("/v1/models", json={"model_id": "a\x07b", "domain": "X"}),
            {422},
        ),
        ("update id past int64", lambda: c.get("/v1/updates/9223372036854775808"), {422}),
        ("negative update id", lambda: c.get("/v1/updates/-1"), {422}),
        ("k as a string", lambda: c.post("/v1/route", json={"prompts": prompt, "k": "5"}), {422}),
        ("k as a boolean", lambda: c.post("/v1/route", json={"prompts": prompt, "k": True}), {422}),
        ("unknown field", lambda: c.post("/v1/route", json={"prompts": prompt, "admin": True}), {422}),
        (
            "body over the limit",
            lambda: c.post("/v1/route", content=b'{"prompts":"' + b"a" * 2_000_000 + b'"}', headers=js),
            {413},
        ),
        ("form post (CSRF)", lambda: c.post("/v1/feedback", data={"prompt": "p", "model_id": known}), {415}),
        ("foreign Host header", lambda: c.get("/v1/models", headers={"host": "attacker.example"}), {400}),
        ("no key", lambda: httpx.post(f"{url}/v1/route", json={"prompts": prompt}, timeout=30), {401}),
        (
            "wrong key",
            lambda: httpx.post(
                f"{url}/v1/route", json={"prompts": prompt}, headers={"X-API-Key": KEY[:-1] + "0"}, timeout=30
            ),
            {401},
        ),
        ("too many prompts", lambda: c.post("/v1/route", json={"prompts": ["p"] * 10_000}), {413, 422}),
        (
            "too many cards",
            lambda: c.post("/v1/models", json=[{"model_id": f"x/{i}", "domain": "X"} for i in range(1001)]),
            {413, 422},
        ),
        ("huge offset", lambda: c.get("/v1/models", params={"offset": 10**40}), {422}),
        ("duplicate card", lambda: c.post("/v1/models", json={"model_id": known, "domain": "X"}), {409}),
        ("path traversal", lambda: c.get("/v1/updates/../../etc/passwd"), {404, 422}),
    ]
    out = []
    for name, call, want in cases:
        r = call()
        out.append({"attack": name, "status": r.status_code, "expected": sorted(want), "ok": r.status_code in want})
    out.append(_poisoned_neighbours(url, stream))
    out.append(_retried_feedback(c, stream))
    out.append(_garbage_update(c, stream))
    c.close()
    return out


def _poisoned_neighbours(url: str, stream: Any, seconds: float = 20.0) -> dict[str, Any]:
    """Valid prompts from 3 clients while a fourth sends a poisoned prompt every 50 ms: every
    valid request must succeed."""
    prompts = [e.prompt for e in stream[1].eval]
    stop_at = time.time() + seconds
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def valid(i: int) -> None:
        with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": KEY}) as c:
            j = i
            while time.time() < stop_at:
                r = c.post("/v1/route", json={"prompts": prompts[j % len(prompts)], "k": 3})
                with lock:
                    counts["valid ok" if r.status_code == 200 else f"valid {r.status_code}"] += 1
                j += 3

    def poison() -> None:
        with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": KEY}) as c:
            while time.time() < stop_at:
                r = c.post(
                    "/v1/route", content=b'{"prompts":"x \\udc00"}', headers={"content-type": "application/json"}
                )
                with lock:
                    counts[f"poison {r.status_code}"] += 1
                time.sleep(0.05)

    threads = [threading.Thread(target=valid, args=(i,)) for i in range(3)] + [threading.Thread(target=poison)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bad = sum(v for k, v in counts.items() if k.startswith("valid") and k != "valid ok")
    return {
        "attack": "poisoned prompt among valid traffic",
        "status": dict(counts),
        "expected": "no valid request fails",
        "ok": bad == 0 and counts["valid ok"] > 0,
    }


def _retried_feedback(c: httpx.Client, stream: Any) -> dict[str, Any]:
    items = [{"prompt": e.prompt, "model_id": e.model_id} for e in stream[2].train[:20]]
    h = {"Idempotency-Key": "attack-retry-1"}
    codes = [c.post("/v1/feedback", json={"items": items}, headers=h).status_code for _ in range(5)]
    return {
        "attack": "feedback retried 5 times with one Idempotency-Key",
        "status": codes,
        "expected": "201 then 200s",
        "ok": codes == [201, 200, 200, 200, 200],
    }


def _garbage_update(c: httpx.Client, stream: Any) -> dict[str, Any]:
    """Feedback that labels every known prompt with the wrong model, then an update."""
    ids = [m.model_id for m in stream[0].new_cards]
    shift = {m: ids[(i + 7) % len(ids)] for i, m in enumerate(ids)}
    items = [{"prompt": e.prompt, "model_id": shift[e.model_id]} for e in stream[0].train if e.model_id in shift]
    for i in range(0, len(items), 1000):
        c.post("/v1/feedback", json={"items": items[i : i + 1000]})
    before = c.get("/health").json()["version"]
    uid = c.post("/v1/updates").json()["id"]
    deadline = time.time() + 600
    while (u := c.get(f"/v1/updates/{uid}").json())["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    after = c.get("/health").json()["version"]
    return {
        "attack": "garbage feedback, then an update",
        "status": f"{u['status']}: {(u.get('result') or {}).get('reason', u.get('error'))}",
        "expected": "rejected, version unchanged",
        "ok": u["status"] == "rejected" and after == before,
    }


def state_checks(url: str, state: Path, acknowledged_feedback: int | None = None) -> list[dict[str, Any]]:
    """Phase 3: the store and the serving registry agree; routing works."""
    c = httpx.Client(base_url=url, timeout=60, headers={"X-API-Key": KEY})
    served = {}
    offset = 0
    while True:
        page = c.get("/v1/models", params={"offset": offset, "limit": 10_000}).json()
        served.update({m["model_id"]: m["status"] for m in page["models"]})
        offset += len(page["models"])
        if offset >= page["total"] or not page["models"]:
            break
    with sqlite3.connect(state / "hub.sqlite") as db:
        stored = dict(db.execute("SELECT model_id, status FROM models").fetchall())
        feedback = db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0]
    mismatched = [m for m, s in stored.items() if served.get(m) != s]
    route = c.post("/v1/route", json={"prompts": "transcribe this Spanish voicemail", "k": 3})
    ready = c.get("/health/ready")
    c.close()
    return [
        {
            "check": "every stored card is served with its status",
            "value": f"{len(stored)} stored, {len(mismatched)} differ",
            "ok": not mismatched,
        },
        {"check": "feedback rows stored", "value": feedback, "ok": feedback > 0},
        {"check": "routing works after the attack", "value": route.status_code, "ok": route.status_code == 200},
        {"check": "ready after the attack", "value": ready.status_code, "ok": ready.status_code == 200},
    ]


def counts_from_metrics(url: str) -> dict[str, int]:
    """Requests by status class, as the server counted them."""
    text = httpx.get(f"{url}/metrics", headers={"X-API-Key": KEY}, timeout=30).text
    out: Counter[str] = Counter()
    for line in text.splitlines():
        if line.startswith("hubroute_requests_total{"):
            status = line.split('status="')[1].split('"')[0]
            out[f"{status[0]}xx"] += int(float(line.rsplit(" ", 1)[1]))
    out["requests"] = sum(v for k, v in out.items() if k.endswith("xx"))
    return dict(out)


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment (see the module docstring)."""
    stream = load_stream(args.data, "public", args.max_examples)
    work = Path(tempfile.mkdtemp(prefix="hubroute-attack-"))
    router = CentroidRouter()
    for e in stream:
        router.fit(e)
    router.save(work / "router")
    keys = work / "keys.json"
    keys.write_text(json.dumps([{"name": "attacker-with-admin", "scopes": ["admin"], "key": KEY}]))
    machine = Machine()
    proc, url = start(work / "state", work / "router", "--inference", "fp32", "--keys-file", str(keys))
    try:
        t0 = time.time()
        fuzzed = fuzz(url, int(config.get("examples", 25)))
        fuzz_s = time.time() - t0
        attacks = handmade(url, stream)
        checks = state_checks(url, work / "state")
        counts = counts_from_metrics(url)
        machine.sample()
    finally:
        stop(proc)
    payload = {
        "command": command_line(),
        "config": config,
        "models": len(router.registry_),
        "schemathesis": fuzzed | {"seconds": round(fuzz_s, 1)},
        "attacks": attacks,
        "state_checks": checks,
        "server_counts": counts,
        "machine": machine.record(),
    }
    write(out, payload, markdown(config, payload))
    print(markdown(config, payload))


def markdown(config: dict, payload: dict) -> str:
    """``results.md``: the counts, the schemathesis verdict, each attack and each state check."""
    n = payload["server_counts"]
    fz = payload["schemathesis"]
    lines = header(config["title"], payload)
    lines += [
        f"Server: prompt-centroid router over {payload['models']} CMRBench models, fp32, one admin API key, "
        "default limits.",
        "",
        tables.markdown(
            ["requests", "2xx", "4xx", "5xx"],
            [[n.get("requests", 0), n.get("2xx", 0), n.get("4xx", 0), n.get("5xx", 0)]],
        ),
        "",
        f"schemathesis ({config.get('examples', 25)} examples per operation and mode, {fz['seconds']} s): "
        f"statuses {fz['statuses']}; {len(fz['failures'])} schema or status violation(s).",
        "",
        *[f"- {f}" for f in fz["failures"]],
        "",
        tables.markdown(
            ["attack", "answer", "expected", "ok"],
            [
                [a["attack"], json.dumps(a["status"]), json.dumps(a["expected"]), "yes" if a["ok"] else "**NO**"]
                for a in payload["attacks"]
            ],
        ),
        "",
        tables.markdown(
            ["state check", "value", "ok"],
            [[c["check"], c["value"], "yes" if c["ok"] else "**NO**"] for c in payload["state_checks"]],
        ),
    ]
    return "\n".join(lines)
