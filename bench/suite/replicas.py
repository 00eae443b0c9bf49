"""Replicas of `hubroute serve` sharing one state folder and store (kind ``replicas``).

For each store (the state folder's SQLite file; a PostgreSQL 16 server from the ``pgserver``
wheel on a Unix socket) and each replica count, fresh `hubroute serve` processes start on one
state folder, and the load clients spread their requests over them round-robin (client-side
balancing: no proxy process shares the cores); then, for each of ``ray_replicas``, one
`hubroute serve --engine ray --replicas N` takes the load through Ray Serve's proxy. The run
measures, side by side:

1. single-prompt and ``batch``-prompt route requests: p50, p99 and throughput (the median of
   ``rounds`` rounds);
2. the propagation delay of an add (a card acknowledged, until every replica's
   ``/health/ready`` reports the new registry revision) and of a swap (a new version exported and
   made current as an update worker does, until every replica serves it);
3. the cost of one replica: resident memory, and idle CPU with the follower on (for Ray, also
   what Ray's own processes take).
"""

from __future__ import annotations

import itertools
import json
import random
import tempfile
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
from suite.service_load import phase

RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0"}
FOLLOW_S = 0.5  # the servers' follow_s (the default)


def until_every_server(c: httpx.Client, urls: list[str], n: int, check, timeout_s: float = 120.0) -> float:
    """Poll ``/health/ready`` at ``urls`` (every 5 ms) until each of the ``n`` servers behind them
    (told apart by the ``server`` field: behind Ray's proxy one URL reaches them all) has
    answered with a body that passes ``check``; returns when the last one did (perf_counter)."""
    seen: dict[str, float] = {}
    deadline = time.perf_counter() + timeout_s
    while len(seen) < n:
        for u in urls:
            body = c.get(f"{u}/health/ready").json()
            if body["server"] not in seen and check(body):
                seen[body["server"]] = time.perf_counter()
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{n - len(seen)} of {n} servers never caught up")
        time.sleep(0.005)
    return max(seen.values())


def add_delays(urls: list[str], n: int, store: Store, trials: int, domain: str) -> list[float]:
    """Seconds from a card's acknowledgement until every one of the ``n`` servers reports the
    registry revision it took in ``store``, one value per trial (the URL posted to rotates)."""
    delays = []
    rng = random.Random(0)
    with httpx.Client(timeout=60) as c:
        for t in range(trials):
            time.sleep(rng.uniform(0, FOLLOW_S))  # not in step with the followers' looks
            card = {"model_id": f"bench/replica-{t}-{time.time_ns()}", "domain": domain, "text": f"probe card {t}"}
            r = c.post(f"{urls[t % len(urls)]}/v1/models", json=[card])
            acked = time.perf_counter()
            assert r.status_code == 201, r.text
            target = store.registry_revision()
            done = until_every_server(c, urls, n, lambda b, t=target: b["registry_revision"] >= t)
            delays.append(done - acked)
    return delays


def swap_delays(urls: list[str], n: int, state: Path, router_dir: Path, runtime: str, trials: int) -> list[float]:
    """Seconds from making a new version current (saved and exported beforehand, as an update
    worker does) until every one of the ``n`` servers serves it."""
    versions = Versions(state)
    delays = []
    rng = random.Random(1)
    with httpx.Client(timeout=60) as c:
        for _ in range(trials):
            name = versions.import_dir(router_dir)
            load_router(versions.path(name)).prepare_inference(runtime, versions.inference_dir(name))
            time.sleep(rng.uniform(0, FOLLOW_S))
            t0 = time.perf_counter()
            versions.promote(name)
            delays.append(until_every_server(c, urls, n, lambda b, v=name: b["version"] == v) - t0)
    return delays


def _tree(procs: list) -> list[psutil.Process]:
    out = []
    for p in procs:
        root = psutil.Process(p.pid)
        out += [root, *root.children(recursive=True)]
    return out


def cost(procs: list, idle_s: float, replica_mark: str | None = None) -> dict:
    """Resident memory (MiB) and CPU share of one core while idle for ``idle_s``: the median over
    replicas, and with ``replica_mark`` (Ray) the processes whose command line lacks it (Ray's own:
    GCS, raylet, proxy, controller, the driver) as a fixed overhead, in total."""
    ps = _tree(procs) if replica_mark else [psutil.Process(p.pid) for p in procs]

    def cpu_s(p: psutil.Process) -> float:
        try:
            return sum(p.cpu_times()[:2])
        except psutil.Error:
            return 0.0

    cpu0 = {p.pid: cpu_s(p) for p in ps}
    time.sleep(idle_s)
    rows = []
    for p in ps:
        try:
            is_replica = replica_mark is None or replica_mark in " ".join(p.cmdline())
            rows.append((is_replica, p.memory_info().rss / 2**20, (cpu_s(p) - cpu0[p.pid]) / idle_s * 100))
        except psutil.Error:
            continue
    rep = [r for r in rows if r[0]]
    out = {"rss_mib": float(np.median([r[1] for r in rep])), "idle_cpu_pct": float(np.median([r[2] for r in rep]))}
    if replica_mark:
        fixed = [r for r in rows if not r[0]]
        out["fixed_rss_mib"] = float(sum(r[1] for r in fixed))
        out["fixed_idle_cpu_pct"] = float(sum(r[2] for r in fixed))
    return out


def run_setting(
    engine: str, store: str, n: int, work: Path, router_dir: Path, prompts: list[str], domain: str, cfg: dict
) -> dict:
    """Start ``n`` replicas on one new state folder (``n`` `hubroute serve` processes, or one
    `hubroute serve --engine ray --replicas n`) and measure them (see the module docstring)."""
    state = work / f"state-{engine}-{store.split(':')[0]}-{n}"
    runtime = cfg.get("runtime", "onnx-int8")
    flags = ["--inference", runtime]
    if store != "sqlite":
        flags += ["--store", store]
    procs, urls, start_s = [], [], []
    try:
        t0 = time.perf_counter()
        if engine == "ray":
            p, u = start(state, router_dir, *flags, "--engine", "ray", "--replicas", str(n), env=RAY_ENV)
            procs.append(p)
            urls.append(u)
            with httpx.Client(timeout=60) as c:
                until_every_server(c, urls, n, lambda b: b["status"] == "ready", timeout_s=600)
            start_s.append(time.perf_counter() - t0)
        else:
            for i in range(n):
                p, u = start(state, router_dir if i == 0 else None, *flags)
                procs.append(p)
                urls.append(u)
                start_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
        c, b = int(cfg.get("clients", 8)), int(cfg.get("batch", 64))
        phase(urls, prompts, clients=2, requests=20 * n, batch=1, headers={})  # warm-up
        rounds = []
        for _ in range(int(cfg.get("rounds", 3))):
            rounds.append(
                {
                    f"single prompt, {c} clients": phase(
                        urls, prompts, clients=c, requests=int(cfg.get("requests", 800)), batch=1, headers={}
                    ),
                    f"{b}-prompt batches, {c} clients": phase(
                        urls, prompts, clients=c, requests=int(cfg.get("batch_requests", 40)), batch=b, headers={}
                    ),
                }
            )
        out: dict[str, Any] = {"engine": engine, "store": store.split(":")[0], "replicas": n, "start_s": start_s}
        out["phases"] = {
            name: sorted((r[name] for r in rounds), key=lambda x: x["p50_ms"])[(len(rounds) - 1) // 2]
            for name in rounds[0]
        }
        if n > 1:
            spec = state / "hub.sqlite" if store == "sqlite" else store
            out["add_delay_s"] = add_delays(urls, n, Store(spec), int(cfg.get("propagation_trials", 10)), domain)
        out["swap_delay_s"] = swap_delays(urls, n, state, router_dir, runtime, 3)
        out["cost"] = cost(procs, float(cfg.get("idle_s", 10)), "ServeReplica" if engine == "ray" else None)
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
    plan = [("uvicorn", s, n) for s, n in itertools.product(stores, config["replicas"])]
    plan += [("ray", "sqlite", n) for n in config.get("ray_replicas", [])]
    try:
        for engine, store, n in plan:
            if store != "sqlite" and pg is not None:  # a fresh database per setting
                name = f"replicas_{engine}_{n}"
                pg.psql(f"DROP DATABASE IF EXISTS {name};")
                pg.psql(f"CREATE DATABASE {name};")
                store = pg.get_uri().replace("/postgres?", f"/{name}?", 1)
            r = run_setting(engine, store, n, work, router_dir, prompts, domain, config)
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
    """``results.md``: load by engine, store and replica count, propagation delays, cost per replica."""
    lines = header(config["title"], payload)
    lines += [
        f"Router: embedding, all-MiniLM-L6-v2, rows from the card text, {payload['models']} models, served with "
        f"`--inference {config.get('runtime', 'onnx-int8')}`. uvicorn: N `hubroute serve` processes, the clients "
        "spreading requests over them in turn; ray: one `hubroute serve --engine ray --replicas N`, the clients "
        f"sending to Ray's proxy. {payload['cores']} cores: the replicas, the load clients (and PostgreSQL, and "
        "Ray's own processes) share them, so more replicas cannot add throughput here; the tables show what a "
        "replica costs and how fast replicas agree, not how a cluster scales.",
        "",
    ]
    rows = []
    for s in payload["settings"]:
        for name, r in s["phases"].items():
            rows.append(
                [
                    s["engine"],
                    s["store"],
                    s["replicas"],
                    name,
                    r["p50_ms"],
                    r["p99_ms"],
                    f"{r['prompts_per_s']:.0f}",
                    r["errors"],
                ]
            )
    lines += [
        tables.markdown(["engine", "store", "replicas", "phase", "p50 ms", "p99 ms", "prompts/s", "errors"], rows),
        "",
    ]
    rows = []
    for s in payload["settings"]:
        add, c = s.get("add_delay_s"), s["cost"]
        rows.append(
            [
                s["engine"],
                s["store"],
                s["replicas"],
                None if add is None else 1000 * float(np.median(add)),
                None if add is None else 1000 * float(np.max(add)),
                1000 * float(np.median(s["swap_delay_s"])),
                float(np.median(s["start_s"])),
                c["rss_mib"],
                c["idle_cpu_pct"],
                c.get("fixed_rss_mib"),
            ]
        )
    lines += [
        "Propagation (add: a card acknowledged until every replica reports its registry revision; swap: a new "
        "version made current until every replica serves it, loading included; both polled every 5 ms, each trial "
        "started at a random moment of the followers' 0.5 s cycle) and cost "
        "per replica (median over replicas; start: per replica, or for ray the whole deployment; Ray's fixed "
        "processes apart):",
        "",
        tables.markdown(
            [
                "engine",
                "store",
                "replicas",
                "add median ms",
                "add max ms",
                "swap median ms",
                "start s",
                "RSS MiB",
                "idle CPU % of a core",
                "Ray's own RSS MiB",
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
