"""Routing speed of each encoder by runtime (kind ``encoder_speed``).

For each encoder and runtime a prompt-centroid router over every CMRBench model (card vectors
from the embedding cache, so only routing is timed) is converted for inference and measured in
one process: 64-prompt requests (prompts/s), single prompts (p50 ms), and top-1 agreement with
the same encoder in torch fp32, on CMRBench eval prompts, with the embedding cache bypassed.
bge-small-en-v1.5 ships as an int8 ONNX graph and runs as it is under every runtime, so it is
measured once (as ``onnx-int8``, its own reference); in a concatenation the runtime applies to the
other part. Configurations are measured once per round, rounds interleaved, and the median
round is reported.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hubroute.encoders import find_spec, split_concat, uncached
from hubroute.encoders.catalog import default_models_dir
from hubroute.evaluation import tables
from hubroute.routers import CentroidRouter
from suite.common import Machine, command_line, header, load_stream, write


def measure(router: CentroidRouter, prompts: list[str], singles: int) -> dict[str, float]:
    """Prompts/s over 64-prompt requests and p50 ms of single prompts (top 10 each)."""
    with uncached(router):
        t0 = time.perf_counter()
        for i in range(0, len(prompts), 64):
            router.rank(prompts[i : i + 64], 10)
        batch = len(prompts) / (time.perf_counter() - t0)
        times = []
        for p in prompts[:singles]:
            t0 = time.perf_counter()
            router.rank([p], 10)
            times.append(time.perf_counter() - t0)
    return {"batch64_prompts_per_s": batch, "single_p50_ms": 1000 * float(np.median(times))}


def runtimes_of(encoder: str, runtimes: list[str]) -> list[str]:
    """The runtimes worth measuring for ``encoder``: one when every part ships as an ONNX graph."""
    frozen = all((s := find_spec(p)) is not None and s.runtime == "onnx-file" for p in split_concat(encoder))
    return ["onnx-int8"] if frozen else runtimes


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment (see the module docstring)."""
    warnings.simplefilter("ignore")
    stream = load_stream(args.data, "public", args.max_examples)
    pool = [e.prompt for exp in stream for e in exp.eval]
    rng = np.random.default_rng(0)
    prompts = [pool[i] for i in rng.choice(len(pool), min(int(config.get("prompts", 256)), len(pool)), replace=False)]
    cards = stream.all_cards()
    graphs = default_models_dir().parent / "bench-onnx"  # exported graphs, reused by later runs
    machine = Machine()
    routers: dict[tuple[str, str], CentroidRouter] = {}
    top1: dict[tuple[str, str], np.ndarray] = {}
    reference: dict[str, str] = {}
    for enc in config["encoders"]:
        wanted = runtimes_of(enc, config["runtimes"])
        reference[enc] = "fp32" if "fp32" in wanted else wanted[0]
        for runtime in wanted:
            router = CentroidRouter(enc)
            router.add_models(cards)
            router.prepare_inference(runtime, graphs / enc.replace("+", "_"))
            with uncached(router):
                top1[enc, runtime] = router.rank(prompts, 1)[0][:, 0]  # also the warm-up
            routers[enc, runtime] = router
            print("ready", enc, runtime, flush=True)
    runs: dict[tuple[str, str], list[dict[str, float]]] = {}
    for r in range(int(config.get("rounds", 3))):
        for key, router in routers.items():
            runs.setdefault(key, []).append(measure(router, prompts, int(config.get("singles", 100))))
            print(r, *key, runs[key][-1], flush=True)
        machine.sample()
    rows = []
    for (enc, runtime), ms in runs.items():
        row: dict[str, Any] = {"encoder": enc, "runtime": runtime}
        row |= {k: float(np.median([m[k] for m in ms])) for k in ms[0]}
        row["rounds"] = ms
        row["top1_agreement_with_fp32"] = float(100 * np.mean(top1[enc, runtime] == top1[enc, reference[enc]]))
        rows.append(row)
    payload = {
        "command": command_line(),
        "config": config,
        "models": len(cards),
        "prompts": len(prompts),
        "rows": rows,
        "machine": machine.record(),
    }
    write(out, payload, markdown(config, payload))


def markdown(config: dict, payload: dict) -> str:
    """``results.md``: one row per encoder and runtime."""
    lines = header(config["title"], payload)
    lines += [
        f"Prompt-centroid router over {payload['models']} models, {payload['prompts']} CMRBench eval prompts, "
        f"top 10; median of {config.get('rounds', 3)} interleaved rounds; embedding cache bypassed.",
        "",
    ]
    rows = [
        [
            r["encoder"],
            r["runtime"],
            f"{r['batch64_prompts_per_s']:.0f}",
            r["single_p50_ms"],
            r["top1_agreement_with_fp32"],
        ]
        for r in payload["rows"]
    ]
    head = [
        "encoder",
        "runtime",
        "64-prompt requests, prompts/s",
        "single prompt p50 ms",
        "top-1 agreement with fp32 %",
    ]
    lines.append(tables.markdown(head, rows))
    return "\n".join(lines)
