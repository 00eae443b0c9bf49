"""Load test of `hubroute serve` on loopback at several inference precisions, idle and while a
continual update trains.

Builds an embedding router over the 2,127 CMRBench models (all-MiniLM-L6-v2, trainable encoder,
rows from the card text). For each ``--inference`` runtime (torch fp32, bf16 weights, int8 dynamic
quantisation; ONNX Runtime fp32 and int8) a fresh ``hubroute serve`` process is started and
measured side by side:

1. top-1 accuracy and agreement with fp32 on a fixed probe of CMRBench eval prompts;
2. single prompts from 1 and 4 concurrent clients, and 64-prompt batches, idle server;
3. for ``--update-inference`` only: the same phases while an update (full fine-tuning on posted
   feedback) trains in the worker process, then the time until the promoted version is served.

Writes ``bench/results/service_load/results.json`` and ``results.md``.

    python bench/service_load.py --data ../shared/cmrbench
"""

from __future__ import annotations

import argparse
import json
import os
import random
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

from common import command_line
from hubroute.data.cmrbench import load_cmrbench
from hubroute.routers import EmbeddingRouter

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(state: Path, router: Path, inference: str) -> tuple[subprocess.Popen, str]:
    """Start ``hubroute serve`` on a free loopback port; returns the process and its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "hubroute.cli", "serve", "--state", str(state), "--router", str(router)]
    cmd += ["--port", str(port), "--inference", inference]
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


def accuracy(url: str, examples: list) -> tuple[dict[str, float], list[str]]:
    """Top-1 M/D accuracy (%) of the served router on ``examples`` and its top-1 ids."""
    top: list[str] = []
    domains: list[str] = []
    for i in range(0, len(examples), 64):
        body = {"prompts": [e.prompt for e in examples[i : i + 64]], "k": 1}
        answer = httpx.post(url + "/v1/route", json=body, timeout=120).json()
        top += [r["models"][0]["model_id"] for r in answer["results"]]
        domains += [r["models"][0]["domain"] for r in answer["results"]]
    m = 100 * np.mean([t == e.model_id for t, e in zip(top, examples, strict=True)])
    d = 100 * np.mean([t == e.domain for t, e in zip(domains, examples, strict=True)])
    return {"M": float(m), "D": float(d)}, top


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


def load_phases(url: str, prompts: list[str], args: argparse.Namespace, tag: str) -> dict[str, dict]:
    """Single prompts from 1 and ``--clients`` clients, then ``--batch``-prompt requests from 2 and
    ``--clients`` clients (with 2, the server idles while each answer travels back and the next
    request arrives; with more, a request is always queued, which measures its capacity)."""
    out = {
        f"{tag}, single prompt, 1 client": phase(url, prompts, clients=1, requests=args.requests // 2, batch=1),
        f"{tag}, single prompt, {args.clients} clients": phase(
            url, prompts, clients=args.clients, requests=args.requests, batch=1
        ),
    }
    for clients in (2, args.clients):
        out[f"{tag}, {args.batch}-prompt batches, {clients} clients"] = phase(
            url, prompts, clients=clients, requests=40, batch=args.batch
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "cmrbench"))
    ap.add_argument("--out", default=str(HERE / "results" / "service_load"))
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--feedback", type=int, default=1500)
    ap.add_argument(
        "--inference", nargs="+", default=["fp32", "bf16", "int8", "onnx", "onnx-int8"], help="Runtimes to compare."
    )
    ap.add_argument("--update-inference", default="onnx-int8", help="Runtime served while the update runs.")
    ap.add_argument("--accuracy-examples", type=int, default=1024)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stream = load_cmrbench(args.data)
    prompts = [e.prompt for exp in stream for e in exp.eval]
    rng = random.Random(0)
    probe = rng.sample([e for exp in stream for e in exp.eval], args.accuracy_examples)
    work = Path(tempfile.mkdtemp(prefix="hubroute-load-"))
    router = EmbeddingRouter(finetune="full", precision="bf16", row_init="card", epochs=2, seed=0)
    router.add_models(stream.all_cards())
    router.save(work / "router")
    results: dict[str, dict] = {}
    quality: dict[str, dict] = {}
    tops: dict[str, list[str]] = {}
    update: dict = {}
    for inference in args.inference:
        t0 = time.perf_counter()
        proc, url = start(work / f"state-{inference}", work / "router", inference)
        start_s = time.perf_counter() - t0
        try:
            quality[inference], tops[inference] = accuracy(url, probe)
            quality[inference]["start_s"] = start_s
            phase(url, prompts, clients=1, requests=20, batch=1)  # warm-up
            results |= load_phases(url, prompts, args, f"{inference}, idle")
            if inference == args.update_inference:
                update, during = update_phases(url, prompts, stream, args, f"{inference}, during update")
                results |= during
        finally:
            proc.terminate()
            proc.wait(30)
    for inference, top in tops.items():
        base = tops.get("fp32", top)
        agree = [a == b for a, b in zip(top, base, strict=True)]
        quality[inference]["top1_agreement_with_fp32"] = float(100 * np.mean(agree))
    command = command_line()
    payload = {
        "command": command,
        "models": len(router.registry_),
        "router": router.get_params(),
        "quality": quality,
        "phases": results,
        "update": update,
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    write_markdown(out, payload, args)


def update_phases(url: str, prompts: list[str], stream, args: argparse.Namespace, tag: str) -> tuple[dict, dict]:
    """Post feedback, start an update, load the server while it trains, then wait for the swap."""
    rng = random.Random(0)
    fb = rng.sample([e for exp in stream for e in exp.train], args.feedback)
    httpx.post(
        url + "/v1/feedback", json={"items": [{"prompt": e.prompt, "model_id": e.model_id} for e in fb]}, timeout=120
    )
    before = httpx.get(url + "/health").json()["version"]
    uid = httpx.post(url + "/v1/updates").json()["id"]
    while httpx.get(f"{url}/v1/updates/{uid}").json()["stage"] != "training":
        time.sleep(0.5)
    results = load_phases(url, prompts, args, tag)
    still_running = httpx.get(f"{url}/v1/updates/{uid}").json()["status"] == "running"
    while (u := httpx.get(f"{url}/v1/updates/{uid}").json())["status"] in ("queued", "running"):
        time.sleep(0.5)
    t_done = time.time()
    version = before
    while u["status"] == "promoted" and version == before and time.time() - t_done < 300:
        version = httpx.get(url + "/health").json()["version"]
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


def write_markdown(out: Path, payload: dict, args: argparse.Namespace) -> None:
    """``results.md``: quality per precision, the phase table and the update outcome."""
    u = payload["update"]
    lines = [
        "# Service load on loopback (2 CPU cores)",
        "",
        f"Command: `{payload['command']}`  ",
        f"Router: embedding, all-MiniLM-L6-v2 fine-tunable encoder, rows from the card text, "
        f"{payload['models']} models; served at each precision below by a fresh `hubroute serve` process.",
        "",
        "| inference | top-1 M-Acc on probe (%) | top-1 D-Acc on probe (%) | top-1 agreement with fp32 (%) "
        "| server start s (load, conversion) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for inf, q in payload["quality"].items():
        lines.append(
            f"| {inf} | {q['M']:.1f} | {q['D']:.1f} | {q['top1_agreement_with_fp32']:.1f} | {q['start_s']:.1f} |"
        )
    lines += [
        "",
        "| phase | clients | prompts/request | requests | p50 ms | p99 ms | requests/s | prompts/s | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in payload["phases"].items():
        lines.append(
            f"| {name} | {r['clients']} | {r['batch']} | {r['requests']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
            f"{r['requests_per_s']:.1f} | {r['prompts_per_s']:.0f} | {r['errors']} |"
        )
    if u:
        swap = u["swap_s_after_promotion"]
        lines += [
            "",
            f"Update ({args.update_inference} server): full fine-tuning on {args.feedback} feedback rows in a worker "
            f"process (1 thread, nice 10); {'still running' if u['running_through_load'] else 'finished'} when the "
            f"last loaded phase ended; outcome {u['status']}; served {u['version_before']} before and "
            f"{u['version_after']} after"
            + (f", swapped {swap:.1f} s after promotion." if swap is not None else ".")
            + (f" Error: {u['error']}" if u.get("error") else ""),
        ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
