"""Load test of `hubroute serve` on loopback by encoder runtime, with API keys and limits off and
on, idle and while a continual update trains (kind ``service_load``).

An embedding router over every CMRBench model (all-MiniLM-L6-v2, trainable encoder, rows from
the card text) is served by a fresh `hubroute serve` process per runtime and setting, measured:

1. top-1 accuracy and agreement with fp32 on a fixed probe of CMRBench eval prompts;
2. single prompts from 1 and ``clients`` clients, and ``batch``-prompt requests from 2 and
   ``clients`` clients; for the ``secure_runtimes`` the phases run with security off and on
   (an API key on every request, a rate limit that is checked but not reached, every limit at its
   default) in ``rounds`` alternating rounds, and each phase's median round is reported;
3. for ``update_runtime``: the phases while an update trains in the worker, then the time until
   the promoted version is served.
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from hubroute.evaluation import tables
from hubroute.routers import EmbeddingRouter
from suite.common import Machine, command_line, header, load_stream, write
from suite.servers import start, stop

KEY = "hr_bench0load_9f3c2e7a1b5d4c6e8f0a2b4c6d8e0f1a3b5c7d9e"


def phase(url: str | list[str], prompts: list[str], *, clients: int, requests: int, batch: int, headers: dict) -> dict:
    """``requests`` POSTs of ``batch`` prompts each, spread over ``clients`` threads (over several
    servers ``url``: each request to the next one in turn)."""
    urls = [url] if isinstance(url, str) else url
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with contextlib.ExitStack() as stack:
            conns = [stack.enter_context(httpx.Client(base_url=u, timeout=60, headers=headers)) for u in urls]
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = {"prompts": rng.sample(prompts, batch) if batch > 1 else rng.choice(prompts), "k": 5}
                t0 = time.perf_counter()
                try:
                    r = conns[i % len(conns)].post("/v1/route", json=body)
                    ok, msg = r.status_code == 200, f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    ok, msg = False, type(e).__name__
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    if not ok:
                        errors.append(msg)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    a = np.array(lat) * 1000
    return {
        "clients": clients,
        "requests": requests,
        "batch": batch,
        "p50_ms": float(np.percentile(a, 50)),
        "p99_ms": float(np.percentile(a, 99)),
        "requests_per_s": requests / wall,
        "prompts_per_s": requests * batch / wall,
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
    }


def phases(url: str, prompts: list[str], cfg: dict, headers: dict) -> dict[str, dict]:
    """The load phases of one server."""
    c, n, b = int(cfg.get("clients", 4)), int(cfg.get("requests", 400)), int(cfg.get("batch", 64))
    out = {
        "single prompt, 1 client": phase(url, prompts, clients=1, requests=n // 2, batch=1, headers=headers),
        f"single prompt, {c} clients": phase(url, prompts, clients=c, requests=n, batch=1, headers=headers),
    }
    for clients in (2, c):
        out[f"{b}-prompt batches, {clients} clients"] = phase(
            url, prompts, clients=clients, requests=40, batch=b, headers=headers
        )
    return out


def accuracy(url: str, examples: list, headers: dict) -> tuple[dict[str, float], list[str]]:
    """Top-1 M/D accuracy (%) of the served router on ``examples``, and its top-1 ids."""
    top: list[str] = []
    domains: list[str] = []
    for i in range(0, len(examples), 64):
        body = {"prompts": [e.prompt for e in examples[i : i + 64]], "k": 1}
        answer = httpx.post(url + "/v1/route", json=body, timeout=120, headers=headers).json()
        top += [r["models"][0]["model_id"] for r in answer["results"]]
        domains += [r["models"][0]["domain"] for r in answer["results"]]
    m = 100 * np.mean([t == e.model_id for t, e in zip(top, examples, strict=True)])
    d = 100 * np.mean([t == e.domain for t, e in zip(domains, examples, strict=True)])
    return {"M": float(m), "D": float(d)}, top


def serve_args(runtime: str, secure: bool, work: Path) -> list[str]:
    """Flags of one server: the runtime, and with ``secure`` a keys file and a rate limit."""
    args = ["--inference", runtime]
    if secure:
        keys = work / "keys.json"
        keys.write_text(json.dumps([{"name": "bench", "scopes": ["route", "feedback", "admin"], "key": KEY}]))
        args += ["--keys-file", str(keys), "--rate-limit", "100000"]
    return args


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment (see the module docstring)."""
    stream = load_stream(args.data, "public", args.max_examples)
    prompts = [e.prompt for exp in stream for e in exp.eval]
    pool = [e for exp in stream for e in exp.eval]
    probe = random.Random(0).sample(pool, min(int(config.get("probe", 1024)), len(pool)))
    work = Path(tempfile.mkdtemp(prefix="hubroute-load-"))
    router = EmbeddingRouter(finetune="full", precision="bf16", row_init="card", training={"epochs": 2}, seed=0)
    router.add_models(stream.all_cards())
    router.save(work / "router")
    machine = Machine()
    quality: dict[str, dict] = {}
    tops: dict[str, list[str]] = {}
    rounds: dict[str, list[dict[str, dict]]] = {}
    update: dict = {}
    secure_runtimes = set(config.get("secure_runtimes", []))
    plan: list[tuple[str, bool]] = []  # (runtime, security on), servers in the order they run
    for r in range(int(config.get("rounds", 2))):
        for rt in config["runtimes"]:
            if rt in secure_runtimes:  # off and on side by side, alternating which goes first
                plan += [(rt, r % 2 == 1), (rt, r % 2 == 0)]
            elif r == 0:
                plan.append((rt, False))
    for i, (rt, secure) in enumerate(plan):
        tag = f"{rt}, {'keys and limits on' if secure else 'security off'}"
        headers = {"X-API-Key": KEY} if secure else {}
        t0 = time.perf_counter()
        proc, url = start(work / f"state-{i}", work / "router", *serve_args(rt, secure, work))
        start_s = time.perf_counter() - t0
        try:
            if rt not in quality:
                quality[rt], tops[rt] = accuracy(url, probe, headers)
                quality[rt]["start_s"] = start_s
            phase(url, prompts, clients=1, requests=20, batch=1, headers=headers)  # warm-up
            rounds.setdefault(tag, []).append(phases(url, prompts, config, headers))
            if rt == config.get("update_runtime") and not secure and not update:
                update, during = update_phases(url, prompts, stream, config, headers)
                rounds[f"{rt}, security off, while an update trains"] = [during]
        finally:
            stop(proc)
        machine.sample()
        print(f"{tag}: {json.dumps({k: round(v['p50_ms'], 1) for k, v in rounds[tag][-1].items()})}", flush=True)
    for rt, top in tops.items():
        base = tops.get("fp32", top)
        quality[rt]["top1_agreement_with_fp32"] = float(100 * np.mean([a == b for a, b in zip(top, base, strict=True)]))
    medians = {tag: _median(rs) for tag, rs in rounds.items()}
    payload = {
        "command": command_line(),
        "config": config,
        "models": len(router.registry_),
        "router": router.get_params(),
        "quality": quality,
        "phases": medians,
        "rounds": rounds,
        "update": update,
        "machine": machine.record(),
    }
    write(out, payload, markdown(config, payload))


def _median(rounds: list[dict[str, dict]]) -> dict[str, dict]:
    """Per phase, the round with the median p50 (so the reported p50, p99 and throughput are one
    real round's)."""
    out = {}
    for name in rounds[0]:
        ordered = sorted((r[name] for r in rounds), key=lambda x: x["p50_ms"])
        out[name] = ordered[(len(ordered) - 1) // 2] | {"rounds": len(ordered)}
    return out


def update_phases(url: str, prompts: list[str], stream, cfg: dict, headers: dict) -> tuple[dict, dict]:
    """Post feedback, start an update, load the server while it trains, then wait for the swap."""
    rng = random.Random(0)
    fb = rng.sample([e for exp in stream for e in exp.train], min(int(cfg.get("feedback", 1500)), 4000))
    with httpx.Client(base_url=url, timeout=120, headers=headers) as c:
        items = [{"prompt": e.prompt, "model_id": e.model_id} for e in fb]
        for i in range(0, len(items), 1000):
            c.post("/v1/feedback", json={"items": items[i : i + 1000]})
        before = c.get("/health").json()["version"]
        uid = c.post("/v1/updates").json()["id"]
        deadline = time.time() + 600
        while c.get(f"/v1/updates/{uid}").json()["stage"] != "training" and time.time() < deadline:
            time.sleep(0.5)
        results = phases(url, prompts, cfg, headers)
        still_running = c.get(f"/v1/updates/{uid}").json()["status"] == "running"
        while (u := c.get(f"/v1/updates/{uid}").json())["status"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.5)
        t_done = time.time()
        version = before
        while u["status"] == "promoted" and version == before and time.time() - t_done < 300:
            version = c.get("/health").json()["version"]
            time.sleep(0.2)
    update = {
        "id": uid,
        "status": u["status"],
        "result": u["result"],
        "error": u.get("error"),
        "running_through_load": still_running,
        "version_before": before,
        "version_after": version,
        "swap_s_after_promotion": time.time() - t_done if version != before else None,
    }
    return update, results


def markdown(config: dict, payload: dict) -> str:
    """``results.md``: quality per runtime, the phase table, security off against on, the update."""
    lines = header(config["title"], payload)
    lines += [
        f"Router: embedding, all-MiniLM-L6-v2 fine-tunable encoder, rows from the card text, {payload['models']} "
        "models; each runtime and setting served by a fresh `hubroute serve` process; the load clients share the "
        "machine with the server.",
        "",
        tables.markdown(
            ["runtime", "probe M-Acc %", "probe D-Acc %", "top-1 agreement with fp32 %", "server start s"],
            [[rt, q["M"], q["D"], q["top1_agreement_with_fp32"], q["start_s"]] for rt, q in payload["quality"].items()],
        ),
        "",
        "Load phases (the median of the rounds for each phase):",
        "",
    ]
    rows = []
    for tag, ph in payload["phases"].items():
        for name, r in ph.items():
            rows.append(
                [f"{tag}: {name}", r["p50_ms"], r["p99_ms"], f"{r['prompts_per_s']:.0f}", r["errors"], r["rounds"]]
            )
    lines += [tables.markdown(["server: phase", "p50 ms", "p99 ms", "prompts/s", "errors", "rounds"], rows), ""]
    secure = [rt for rt in config.get("secure_runtimes", []) if f"{rt}, keys and limits on" in payload["phases"]]
    if secure:
        lines += ["Keys and limits on against off (ratio on / off; below 1.10 is within 10 %):", ""]
        rows = []
        for rt in secure:
            off, on = payload["phases"][f"{rt}, security off"], payload["phases"][f"{rt}, keys and limits on"]
            for name in off:
                rows.append(
                    [
                        f"{rt}: {name}",
                        on[name]["p50_ms"] / off[name]["p50_ms"],
                        on[name]["p99_ms"] / off[name]["p99_ms"],
                        on[name]["prompts_per_s"] / off[name]["prompts_per_s"],
                    ]
                )
        lines += [tables.markdown(["runtime: phase", "p50 ratio", "p99 ratio", "throughput ratio"], rows, digits=2), ""]
    u = payload["update"]
    if u:
        swap = u["swap_s_after_promotion"]
        lines += [
            f"Update ({config.get('update_runtime')} server): full fine-tuning on {config.get('feedback', 1500)} "
            f"feedback rows in a worker process (1 thread, nice 10); "
            f"{'still running' if u['running_through_load'] else 'finished'} when the last loaded phase ended; "
            f"outcome {u['status']}; served {u['version_before']} before and {u['version_after']} after"
            + (f", swapped {swap:.1f} s after promotion." if swap is not None else ".")
            + (f" Error: {u['error']}" if u.get("error") else ""),
            "",
        ]
    return "\n".join(lines)
