"""Load test of `hubroute serve` on loopback, idle and while a continual update trains.

Builds an embedding router over the 2,127 CMRBench models (all-MiniLM-L6-v2, trainable encoder,
bf16 autocast, rows from the card text), starts a real server process, and runs fixed numbers of
requests from concurrent httpx clients in four phases, side by side:

1. single prompts, idle server;  2. batches of prompts, idle server;
3. single prompts while an update (full fine-tuning on posted feedback) runs;
4. batches while that update runs.

Writes ``bench/results/service_load/results.json`` and ``results.md``.

    python bench/service_load.py --data ../shared/cmrbench
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import httpx
import numpy as np

from hubroute.data.cmrbench import load_cmrbench
from hubroute.routers import EmbeddingRouter

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(state: Path, router: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "hubroute.cli",
        "serve",
        "--state",
        str(state),
        "--router",
        str(router),
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("server did not start")


def phase(url: str, prompts: list[str], *, clients: int, requests: int, batch: int) -> dict:
    """``requests`` POSTs of ``batch`` prompts each, spread over ``clients`` threads."""
    lat: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        with httpx.Client(base_url=url, timeout=60) as c:
            while True:
                with lock:
                    if next(counter, None) is None:
                        return
                body = {"prompts": rng.sample(prompts, batch) if batch > 1 else rng.choice(prompts), "k": 5}
                t0 = time.perf_counter()
                try:
                    r = c.post("/v1/route", json=body)
                    ok = r.status_code == 200
                    msg = f"HTTP {r.status_code}"
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "cmrbench"))
    ap.add_argument("--out", default=str(HERE / "results" / "service_load"))
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--feedback", type=int, default=1500)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stream = load_cmrbench(args.data)
    prompts = [e.prompt for exp in stream for e in exp.eval]
    work = Path(tempfile.mkdtemp(prefix="hubroute-load-"))
    router = EmbeddingRouter(finetune="full", precision="bf16", row_init="card", epochs=2, seed=0)
    router.add_models(stream.all_cards())
    router.save(work / "router")
    proc, url = start(work / "state", work / "router")
    results: dict[str, dict] = {}
    try:
        phase(url, prompts, clients=1, requests=20, batch=1)  # warm-up
        results["idle, single prompt, 1 client"] = phase(url, prompts, clients=1, requests=args.requests // 2, batch=1)
        results[f"idle, single prompt, {args.clients} clients"] = phase(
            url, prompts, clients=args.clients, requests=args.requests, batch=1
        )
        results[f"idle, {args.batch}-prompt batches"] = phase(url, prompts, clients=2, requests=40, batch=args.batch)
        rng = random.Random(0)
        fb = rng.sample([e for exp in stream for e in exp.train], args.feedback)
        httpx.post(
            url + "/v1/feedback",
            json={"items": [{"prompt": e.prompt, "model_id": e.model_id} for e in fb]},
            timeout=120,
        )
        uid = httpx.post(url + "/v1/updates").json()["id"]
        while httpx.get(f"{url}/v1/updates/{uid}").json()["stage"] != "training":
            time.sleep(0.5)
        results["during update, single prompt, 1 client"] = phase(
            url, prompts, clients=1, requests=args.requests // 2, batch=1
        )
        results[f"during update, single prompt, {args.clients} clients"] = phase(
            url, prompts, clients=args.clients, requests=args.requests, batch=1
        )
        results[f"during update, {args.batch}-prompt batches"] = phase(
            url, prompts, clients=2, requests=40, batch=args.batch
        )
        still_running = httpx.get(f"{url}/v1/updates/{uid}").json()["status"] == "running"
        t0 = time.time()
        while (u := httpx.get(f"{url}/v1/updates/{uid}").json())["status"] in ("queued", "running"):
            time.sleep(1)
        update = {
            "id": uid,
            "status": u["status"],
            "result": u["result"],
            "running_through_load": still_running,
            "finished_after_load_s": time.time() - t0,
            "version_after": httpx.get(url + "/health").json()["version"],
        }
    finally:
        proc.terminate()
        proc.wait(30)
    command = "python " + " ".join(
        shlex.quote(a) for a in [sys.argv[0].replace(str(HERE.parent) + "/", ""), *sys.argv[1:]]
    )
    payload = {
        "command": command,
        "models": len(router.registry_),
        "router": router.get_params(),
        "phases": results,
        "update": update,
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Service load on loopback (2 CPU cores)",
        "",
        f"Command: `{command}`  ",
        f"Router: embedding, all-MiniLM-L6-v2 fine-tunable encoder under bf16 autocast, "
        f"{len(router.registry_)} models. "
        f"Update: full fine-tuning on {args.feedback} feedback rows in a worker process (1 thread, nice 10); "
        f"it was {'still running' if still_running else 'finished'} when the last loaded phase ended; "
        f"outcome: {update['status']}, serving {update['version_after']} afterwards.",
        "",
        "| phase | clients | prompts/request | requests | p50 ms | p99 ms | requests/s | prompts/s | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['clients']} | {r['batch']} | {r['requests']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['requests_per_s']:.1f} | {r['prompts_per_s']:.0f} | {r['errors']} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
