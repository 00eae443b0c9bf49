"""Zero-shot routers on CMRBench-public, side by side in one run.

Runs BM25, dense card retrieval and their hybrids (with and without the pooled domain prior)
along the CMRBench stream, with one shared encoder and embedding cache, and writes
``bench/results/zero_shot/results.json`` and ``results.md`` (plus the default router's plots).

    python bench/zero_shot.py --data ../shared/cmrbench

Quality numbers do not depend on the cache; latency is measured with the cache bypassed.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from common import command_line
from hubroute.data.cmrbench import load_cmrbench
from hubroute.encoders import load_encoder
from hubroute.evaluation.report import matrix_table, plot, summary_table
from hubroute.evaluation.runner import run_stream
from hubroute.routers import make_router
from hubroute.seed import seed_everything

HERE = Path(__file__).resolve().parent
PAPER = "| BGE-M3 + reranker (paper, 7B-era zero-shot anchor) | 13.6 | 16.2 | 44.0 | – | – | – | 3.3 | – | – | – |"

# label -> (router kind, params)
CONFIGS: dict[str, tuple[str, dict]] = {
    "bm25": ("bm25", {}),
    "dense": ("dense", {}),
    "dense + domain prior (lse)": ("dense", {"domain_weight": 1.5}),
    "hybrid, no domain prior": ("hybrid", {"domain_weight": 0.0}),
    "hybrid rrf": ("hybrid", {"fusion": "rrf", "domain_weight": 0.0}),
    "hybrid + centroid prior": ("hybrid", {"domain_pool": "centroid", "domain_weight": 1.0}),
    "hybrid (default: + lse prior)": ("hybrid", {}),
}
DEFAULT = "hybrid (default: + lse prior)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "cmrbench"))
    ap.add_argument("--out", default=str(HERE / "results" / "zero_shot"))
    ap.add_argument("--encoder", default="default")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    seed_everything(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    stream = load_cmrbench(args.data, "public")
    encoder = load_encoder(args.encoder)
    t0 = time.perf_counter()
    encoder.encode([c.text for c in stream.all_cards()] + [x.prompt for e in stream for x in e.eval])
    encode_s = time.perf_counter() - t0

    results, labels = [], []
    for label, (kind, params) in CONFIGS.items():
        router = make_router(kind, **params) if kind == "bm25" else make_router(kind, encoder=encoder, **params)
        res = run_stream(router, stream, ks=(1, 3, 5, 10), seed=args.seed)
        results.append(res)
        labels.append(label)
        s = res.summary()
        print(
            f"{label:32s} M {s['M']['final_average']:5.1f}  F {s['F']['final_average']:5.1f}  "
            f"D {s['D']['final_average']:5.1f}  (stream M {s['M']['stream_average']:5.1f} D "
            f"{s['D']['stream_average']:5.1f})",
            flush=True,
        )

    command = command_line()
    payload = {
        "command": command,
        "encoder": encoder.name,
        "encode_all_texts_s": encode_s,
        "runs": {label: r.to_dict() for label, r in zip(labels, results, strict=True)},
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")

    best = results[labels.index(DEFAULT)]
    lines = [
        "# Zero-shot routers on CMRBench-public",
        "",
        f"Command: `{command}`  ",
        f"Encoder: `{encoder.name}` (CPU). Protocol: train split unused (zero-shot); eval on each experience's "
        "eval split over every model registered so far. Top-1 accuracy in %; *final* = mean of the last row of "
        "the accuracy matrix, *stream* = mean of its diagonal.",
        "",
        summary_table(results, labels),
        PAPER,
        "",
        "## Default hybrid router: accuracy matrices (top-1, %)",
        "",
    ]
    for lv in ("M", "F", "D"):
        lines += [f"**{lv}-Acc**", "", matrix_table(best, lv), ""]
    lat = ["| router | single p50 ms | single p95 ms | batch prompts/s |", "| --- | --- | --- | --- |"]
    for label, r in zip(labels, results, strict=True):
        la = r.latency
        lat.append(
            f"| {label} | {la['single_p50_ms']:.1f} | {la['single_p95_ms']:.1f} | {la['batch_prompts_per_s']:.0f} |"
        )
    lines += [
        "## Routing latency over 2,127 models (embedding cache bypassed, 2 CPU cores)",
        "",
        *lat,
        "",
        f"Encoding every card and eval prompt once took {encode_s:.0f} s (0 s when already cached).",
        "",
    ]
    (out / "results.md").write_text("\n".join(lines))
    plot(best, out)
    print(f"wrote {out}/results.json and results.md")


if __name__ == "__main__":
    main()
