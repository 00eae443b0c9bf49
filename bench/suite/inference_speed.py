"""In-process routing speed of the embedding router by encoder runtime and chunk size (kind
``inference_speed``).

Routing encodes a request's prompts sorted by length in chunks of
``hubroute.routers.prompt_encoder.INFERENCE_CHUNK``; with a chunk of 64 a 64-prompt request is
one unsorted pass. For each chunk size and runtime this measures 64-prompt requests (prompts/s),
single prompts (p50 ms) and top-1 agreement with torch fp32 on CMRBench eval prompts over every
CMRBench model, in one process. Configurations are measured once per round, rounds interleaved,
and the median round is reported, so a slow spell of the machine does not land on one of them.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import hubroute.routers.prompt_encoder as prompt_encoder
from hubroute.evaluation import tables
from hubroute.routers import EmbeddingRouter
from suite.common import Machine, command_line, header, load_stream, write


def measure(router: EmbeddingRouter, prompts: list[str], singles: int) -> dict[str, float]:
    """Prompts/s over 64-prompt requests and p50 ms of single prompts."""
    t0 = time.perf_counter()
    for i in range(0, len(prompts), 64):
        router.scores(prompts[i : i + 64])
    batch = len(prompts) / (time.perf_counter() - t0)
    times = []
    for p in prompts[:singles]:
        t0 = time.perf_counter()
        router.scores([p])
        times.append(time.perf_counter() - t0)
    return {"batch64_prompts_per_s": batch, "single_p50_ms": 1000 * float(np.median(times))}


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment (see the module docstring)."""
    warnings.simplefilter("ignore")
    stream = load_stream(args.data, "public", args.max_examples)
    pool = [e.prompt for exp in stream for e in exp.eval]
    rng = np.random.default_rng(0)
    prompts = [pool[i] for i in rng.choice(len(pool), min(int(config.get("prompts", 256)), len(pool)), replace=False)]
    machine = Machine()
    routers, top1 = {}, {}
    for runtime in config["runtimes"]:
        router = EmbeddingRouter(finetune="full", row_init="card", seed=0)
        router.add_models(stream.all_cards())
        routers[runtime] = router.prepare_inference(runtime)
        top1[runtime] = router.scores(prompts).argmax(1)  # also the warm-up
    reference = top1.get("fp32")
    runs: dict[tuple[int, str], list[dict[str, float]]] = {}
    default_chunk = prompt_encoder.INFERENCE_CHUNK
    try:
        for r in range(int(config.get("rounds", 3))):
            for chunk in config["chunks"]:
                prompt_encoder.INFERENCE_CHUNK = chunk
                for runtime, router in routers.items():
                    runs.setdefault((chunk, runtime), []).append(
                        measure(router, prompts, int(config.get("singles", 100)))
                    )
                    print(r, chunk, runtime, runs[chunk, runtime][-1], flush=True)
            machine.sample()
    finally:
        prompt_encoder.INFERENCE_CHUNK = default_chunk
    rows = []
    for (chunk, runtime), ms in runs.items():
        row: dict[str, Any] = {"chunk": chunk, "runtime": runtime}
        row |= {k: float(np.median([m[k] for m in ms])) for k in ms[0]}
        row["rounds"] = ms
        if reference is not None:
            row["top1_agreement_with_fp32"] = float(100 * np.mean(top1[runtime] == reference))
        rows.append(row)
    payload = {
        "command": command_line(),
        "config": config,
        "models": len(stream.all_cards()),
        "default_chunk": default_chunk,
        "rows": rows,
        "machine": machine.record(),
    }
    write(out, payload, markdown(config, payload))


def markdown(config: dict, payload: dict) -> str:
    """``results.md``: one row per chunk size and runtime."""
    lines = header(config["title"], payload)
    lines += [
        f"{payload['models']} models, all-MiniLM-L6-v2 (fine-tunable router, card rows); median of "
        f"{config.get('rounds', 3)} interleaved rounds; routing uses chunks of {payload['default_chunk']}.",
        "",
    ]
    order = config["runtimes"]
    rows = [
        [
            r["chunk"],
            r["runtime"],
            f"{r['batch64_prompts_per_s']:.0f}",
            r["single_p50_ms"],
            r.get("top1_agreement_with_fp32"),
        ]
        for r in sorted(payload["rows"], key=lambda r: (-r["chunk"], order.index(r["runtime"])))
    ]
    lines.append(
        tables.markdown(
            [
                "chunk",
                "runtime",
                "64-prompt requests, prompts/s",
                "single prompt p50 ms",
                "top-1 agreement with fp32 %",
            ],
            rows,
        )
    )
    return "\n".join(lines)
