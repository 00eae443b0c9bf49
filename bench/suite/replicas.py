"""Replicas of `hubroute serve` sharing one state folder and store (kind ``replicas``).

For each store (the state folder's SQLite file; a PostgreSQL 16 server from the ``pgserver``
wheel on a Unix socket) and each replica count, fresh `hubroute serve` processes start on one
state folder; the load clients spread their requests over the replicas round-robin (client-side
balancing: no proxy process shares the cores), and the run measures, side by side:

1. single-prompt and ``batch``-prompt route requests: p50, p99 and throughput (the median of
   ``rounds`` rounds);
2. the propagation delay of an add (a card posted to one replica, until every other replica's
   ``/health/ready`` reports the new registry revision) and of a swap (a new version exported and
   made current as an update worker does, until every replica serves it);
3. the cost of one replica: resident memory, and idle CPU with the follower on.
"""

from __future__ import annotations

import itertools
import json
import random
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

from hubroute.evaluation import tables
from hubroute.routers import EmbeddingRouter, load_router
from hubroute.service.store import Store
from hubroute.service.versions import Versions
from suite.common import Machine, command_line, header, load_stream, write
from suite.servers import start, stop


def phase(urls: list[str], prompts: list[str], *, clients: int, requests: int, batch: int) -> dict:
    """``requests`` route POSTs of ``batch`` prompts, from ``clients`` threads, each request to the
    next replica in turn."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        clients_ = [httpx.Client(base_url=u, timeout=60) for u in urls]
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                body = {"prompts": rng.sample(prompts, batch) if batch > 1 else rng.choice(prompts), "k": 5}
                t0 = time.perf_counter()
                try:
                    r = clients_[i % len(urls)].post("/v1/route", json=body)
                    ok, msg = r.status_code == 200, f"HTTP {r.status_code}"
                except httpx.HTTPError as e:
                    ok, msg = False, type(e).__name__
                dt = time.perf_counter() - t0
                with lock:
                    lat.append(dt)
                    if not ok:
                        errors.append(msg)
        finally:
            for c in clients_:
                c.close()

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
    }


def _until(check, timeout_s: float = 120.0, poll_s: float = 0.005) -> float:
    """Poll ``check`` until it is true; returns the time it became true (perf_counter)."""
    deadline = time.perf_counter() + timeout_s
    while not check():
        if time.perf_counter() > deadline:
            raise RuntimeError("a replica never caught up")
        time.sleep(poll_s)
    return time.perf_counter()


def add_delays(urls: list[str], store: Store, trials: int, domain: str) -> list[float]:
    """Seconds from a card's acknowledgement on one replica until the last other replica reports
    the registry revision it took in ``store``, one value per trial (the adding replica rotates)."""
    delays = []
    with httpx.Client(timeout=60) as c:
        for t in range(trials):
            origin = urls[t % len(urls)]
            card = {"model_id": f"bench/replica-{t}-{time.time_ns()}", "domain": domain, "text": f"probe card {t}"}
            r = c.post(f"{origin}/v1/models", json=[card])
            acked = time.perf_counter()
            assert r.status_code == 201, r.text
            target = store.registry_revision()
            others = [u for u in urls if u != origin]
            seen = [
                _until(lambda u=u, t=target: c.get(f"{u}/health/ready").json()["registry_revision"] >= t)
                for u in others
            ]
            delays.append(max(seen) - acked)
    return delays


def swap_delays(urls: list[str], state: Path, router_dir: Path, runtime: str, trials: int) -> list[float]:
    """Seconds from making a new version current (saved and exported beforehand, as an update
    worker does) until every replica serves it."""
    versions = Versions(state)
    delays = []
    with httpx.Client(timeout=60) as c:
        for _ in range(trials):
            name = versions.import_dir(router_dir)
            load_router(versions.path(name)).prepare_inference(runtime, versions.inference_dir(name))
            t0 = time.perf_counter()
            versions.promote(name)
            seen = [_until(lambda u=u, v=name: c.get(f"{u}/health/ready").json()["version"] == v) for u in urls]
            delays.append(max(seen) - t0)
    return delays


def cost(procs: list, idle_s: float) -> dict:
    """Per replica: resident memory (MiB) and CPU share of one core while idle for ``idle_s``."""
    ps = [psutil.Process(p.pid) for p in procs]
    cpu0 = [sum(p.cpu_times()[:2]) for p in ps]
    time.sleep(idle_s)
    cpu = [(sum(p.cpu_times()[:2]) - c) / idle_s * 100 for p, c in zip(ps, cpu0, strict=True)]
    rss = [p.memory_info().rss / 2**20 for p in ps]
    return {"rss_mib": float(np.median(rss)), "idle_cpu_pct": float(np.median(cpu))}


def run_setting(store: str, n: int, work: Path, router_dir: Path, prompts: list[str], domain: str, cfg: dict) -> dict:
    """Start ``n`` replicas on one new state folder and measure them (see the module docstring)."""
    state = work / f"state-{store.split(':')[0]}-{n}"
    flags = ["--inference", cfg.get("runtime", "onnx-int8")]
    if store != "sqlite":
        flags += ["--store", store]
    procs, urls, start_s = [], [], []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            p, u = start(state, router_dir if i == 0 else None, *flags)
            procs.append(p)
            urls.append(u)
            start_s.append(time.perf_counter() - t0)
        c, b = int(cfg.get("clients", 8)), int(cfg.get("batch", 64))
        phase(urls, prompts, clients=2, requests=20 * n, batch=1)  # warm-up
        rounds = []
        for _ in range(int(cfg.get("rounds", 3))):
            rounds.append(
                {
                    f"single prompt, {c} clients": phase(
                        urls, prompts, clients=c, requests=int(cfg.get("requests", 800)), batch=1
                    ),
                    f"{b}-prompt batches, {c} clients": phase(
                        urls, prompts, clients=c, requests=int(cfg.get("batch_requests", 40)), batch=b
                    ),
                }
            )
        out: dict[str, Any] = {"store": store.split(":")[0], "replicas": n, "start_s": start_s}
        out["phases"] = {
            name: sorted((r[name] for r in rounds), key=lambda x: x["p50_ms"])[(len(rounds) - 1) // 2]
            for name in rounds[0]
        }
        trials = int(cfg.get("propagation_trials", 10))
        if n > 1:
            spec = state / "hub.sqlite" if store == "sqlite" else store
            out["add_delay_s"] = add_delays(urls, Store(spec), trials, domain)
        out["swap_delay_s"] = swap_delays(urls, state, router_dir, cfg.get("runtime", "onnx-int8"), 3)
        out["cost"] = cost(procs, float(cfg.get("idle_s", 10)))
        return out
    finally:
        for p in procs:
            stop(p)


def follower_cost(work: Path, router_dir: Path, cfg: dict) -> dict:
    """Idle CPU of one replica with the follower off (``follow_s = 0``), for comparison."""
    proc, _ = start(
        work / "state-nofollow",
        router_dir,
        "--inference",
        cfg.get("runtime", "onnx-int8"),
        env={"HUBROUTE_FOLLOW_S": "0"},
    )
    try:
        return cost([proc], float(cfg.get("idle_s", 10)))
    finally:
        stop(proc)


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment (see the module docstring)."""
    stream = load_stream(args.data, "public", args.max_examples)
    prompts = [e.prompt for exp in stream for e in exp.eval]
    work = Path(tempfile.mkdtemp(prefix="hubroute-replicas-"))
    router = EmbeddingRouter(finetune="full", precision="bf16", row_init="card", training={"epochs": 2}, seed=0)
    router.add_models(stream.all_cards())
    router_dir = router.save(work / "router")
    domain = stream[0].new_cards[0].domain
    machine = Machine()
    pg = None
    stores = []
    for s in config["stores"]:
        if s == "postgresql":
            import pgserver

            pg = pg or pgserver.get_server(work / "pg", cleanup_mode="stop")
            stores.append(pg.get_uri())
        else:
            stores.append(s)
    settings = []
    try:
        for store, n in itertools.product(stores, config["replicas"]):
            if store != "sqlite" and pg is not None:  # a fresh database per setting
                name = f"replicas_{n}"
                pg.psql(f"DROP DATABASE IF EXISTS {name};")
                pg.psql(f"CREATE DATABASE {name};")
                store = pg.get_uri().replace("/postgres?", f"/{name}?", 1)
            r = run_setting(store, n, work, router_dir, prompts, domain, config)
            machine.sample()
            print(json.dumps({k: v for k, v in r.items() if k != "phases"}, default=str), flush=True)
            settings.append(r)
        nofollow = follower_cost(work, router_dir, config)
    finally:
        if pg is not None:
            pg.cleanup()
    payload = {
        "command": command_line(),
        "config": config,
        "models": len(router.registry_),
        "settings": settings,
        "one_replica_follower_off": nofollow,
        "cores": psutil.cpu_count(),
        "machine": machine.record(),
    }
    write(out, payload, markdown(config, payload))


def markdown(config: dict, payload: dict) -> str:
    """``results.md``: load by store and replica count, propagation delays, cost per replica."""
    lines = header(config["title"], payload)
    lines += [
        f"Router: embedding, all-MiniLM-L6-v2, rows from the card text, {payload['models']} models, served with "
        f"`--inference {config.get('runtime', 'onnx-int8')}`. {payload['cores']} cores: the replicas, the load "
        "clients (and PostgreSQL) share them, so more replicas cannot add throughput here; the table shows what "
        "a replica costs and how fast replicas agree, not how a cluster scales.",
        "",
    ]
    rows = []
    for s in payload["settings"]:
        for name, r in s["phases"].items():
            rows.append(
                [s["store"], s["replicas"], name, r["p50_ms"], r["p99_ms"], f"{r['prompts_per_s']:.0f}", r["errors"]]
            )
    lines += [tables.markdown(["store", "replicas", "phase", "p50 ms", "p99 ms", "prompts/s", "errors"], rows), ""]
    rows = []
    for s in payload["settings"]:
        add = s.get("add_delay_s")
        rows.append(
            [
                s["store"],
                s["replicas"],
                None if add is None else 1000 * float(np.median(add)),
                None if add is None else 1000 * float(np.max(add)),
                1000 * float(np.median(s["swap_delay_s"])),
                float(np.median(s["start_s"])),
                s["cost"]["rss_mib"],
                s["cost"]["idle_cpu_pct"],
            ]
        )
    lines += [
        "Propagation (add: acknowledged on one replica until every other reports its revision; swap: a new "
        "version made current until every replica serves it, loading included) and cost per replica (median "
        "over replicas):",
        "",
        tables.markdown(
            [
                "store",
                "replicas",
                "add median ms",
                "add max ms",
                "swap median ms",
                "start s",
                "RSS MiB",
                "idle CPU % of a core",
            ],
            rows,
        ),
        "",
        "Idle CPU is what the follower costs (a look at the store and the version pointer every `follow_s`, "
        "0.5 s); one replica with the follower off (`follow_s = 0`) idles at "
        f"{payload['one_replica_follower_off']['idle_cpu_pct']:.2f} % of a core. RSS is measured after the load "
        "phases.",
        "",
    ]
    return "\n".join(lines)
