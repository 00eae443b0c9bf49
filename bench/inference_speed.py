"""In-process routing speed of the embedding router's encoder by inference precision and chunk size.

Routing encodes a request's prompts sorted by length in chunks of
``hubroute.routers.embedding.INFERENCE_CHUNK`` (so each chunk pads to similar lengths); with a
chunk of 64 a 64-prompt request is one unsorted pass, as before chunking. For each chunk size and
inference runtime (torch fp32, bf16 weights, int8 dynamic quantisation; ONNX Runtime fp32 and
int8) this measures 64-prompt requests (prompts/s), single prompts (p50 ms) and top-1 agreement
with torch fp32, on 256 CMRBench eval prompts, 2,127 models, one process. Every configuration is
measured once per round, rounds interleaved, and the median round is reported, so a slow spell
of the machine does not land on one configuration.

    python bench/inference_speed.py --data ../shared/cmrbench
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np

import hubroute.routers.embedding as embedding
from common import command_line
from hubroute.data.cmrbench import load_cmrbench
from hubroute.routers import EmbeddingRouter

HERE = Path(__file__).resolve().parent


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "cmrbench"))
    ap.add_argument("--out", default=str(HERE / "results" / "inference_speed"))
    ap.add_argument("--chunks", type=int, nargs="+", default=[64, 32, 16, 8])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16", "int8", "onnx", "onnx-int8"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=256)
    ap.add_argument("--singles", type=int, default=100)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    stream = load_cmrbench(args.data)
    pool = [e.prompt for exp in stream for e in exp.eval]
    rng = np.random.default_rng(0)
    prompts = [pool[i] for i in rng.choice(len(pool), args.prompts, replace=False)]
    routers, top1 = {}, {}
    for precision in args.precisions:
        router = EmbeddingRouter(finetune="full", row_init="card", seed=0)
        router.add_models(stream.all_cards())
        routers[precision] = router.prepare_inference(precision)
        top1[precision] = router.scores(prompts).argmax(1)  # also the warm-up
    reference = top1.get("fp32")
    runs: dict[tuple[int, str], list[dict[str, float]]] = {}
    for r in range(args.rounds):
        for chunk in args.chunks:
            embedding.INFERENCE_CHUNK = chunk
            for precision, router in routers.items():
                runs.setdefault((chunk, precision), []).append(measure(router, prompts, args.singles))
                print(r, chunk, precision, runs[chunk, precision][-1], flush=True)
    rows = []
    for (chunk, precision), ms in runs.items():
        row = {"chunk": chunk, "precision": precision}
        row |= {k: float(np.median([m[k] for m in ms])) for k in ms[0]}
        row["rounds"] = ms
        if reference is not None:
            row["top1_agreement_with_fp32"] = float(100 * np.mean(top1[precision] == reference))
        rows.append(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"command": command_line(), "models": len(stream.all_cards()), "rows": rows}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# In-process routing speed by precision and chunk size",
        "",
        f"Command: `{payload['command']}`  ",
        f"{payload['models']} models, all-MiniLM-L6-v2 (full fine-tunable router, card rows), 2 CPU cores; "
        f"median of {args.rounds} interleaved rounds.",
        "",
        "| chunk | runtime | 64-prompt requests, prompts/s | single prompt p50 ms | top-1 agreement with fp32 (%) |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['chunk']} | {r['precision']} | {r['batch64_prompts_per_s']:.0f} | {r['single_p50_ms']:.1f} "
        f"| {r.get('top1_agreement_with_fp32', float('nan')):.1f} |"
        for r in sorted(rows, key=lambda r: (-r["chunk"], args.precisions.index(r["precision"])))
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
