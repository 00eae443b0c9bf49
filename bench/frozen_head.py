"""How far training the projection and model table on frozen all-MiniLM-L6-v2 features goes on
CMRBench-public's first experience (APIBench) alone, against the untrained prompt centroids.

Issue 3's reference says a projection trained on frozen features reaches 66.6 D-Acc on APIBench
after experience 1. This grid trains the embedding router (frozen encoder, one experience, no
continual strategy involved) over row initialisation, learning rates, epochs and projection size,
and reports M- and D-Acc on APIBench's eval split. Writes ``OUT/results.json`` and
``OUT/results.md``.

    python bench/frozen_head.py --data ../shared/cmrbench
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from common import command_line, top1
from hubroute.data.cmrbench import load_cmrbench
from hubroute.routers import CentroidRouter, EmbeddingRouter
from hubroute.seed import seed_everything

HERE = Path(__file__).resolve().parent
# label -> embedding router settings (frozen encoder, full softmax, tau 0.05, batch 64)
GRID: dict[str, dict] = {
    "prompt-mean rows, no training": {"epochs": 0},
    "prompt-mean rows, lr proj 1e-3 / rows 3e-4, 4 epochs (the benchmarks' default)": {},
    "prompt-mean rows, lr rows 3e-3, 4 epochs": {"lr_rows": 3e-3},
    "prompt-mean rows, lr rows 3e-3, 10 epochs": {"lr_rows": 3e-3, "epochs": 10},
    "prompt-mean rows, lr rows 1e-2, 4 epochs": {"lr_rows": 1e-2},
    "prompt-mean rows, lr proj 3e-3 / rows 3e-3, 10 epochs": {"lr_proj": 3e-3, "lr_rows": 3e-3, "epochs": 10},
    "random rows, lr rows 1e-2, 10 epochs": {"row_init": "random", "lr_rows": 1e-2, "epochs": 10},
    "random rows, lr rows 3e-2, 10 epochs": {"row_init": "random", "lr_rows": 3e-2, "epochs": 10},
    "random rows, d 1024, lr 1e-3, 30 epochs": {
        "row_init": "random",
        "dim": 1024,
        "lr_rows": 1e-3,
        "epochs": 30,
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="CMRBench folder (default: the data directory)")
    ap.add_argument("--out", default=str(HERE / "results" / "frozen_head"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    exp = load_cmrbench(args.data, "public")[0]

    results: dict[str, dict[str, float]] = {}
    for label, overrides in GRID.items():
        seed_everything(args.seed)
        cfg = {"finetune": "frozen", "tau": 0.05, "loss": "full", "batch_size": 64, "seed": args.seed} | overrides
        results[label] = top1(EmbeddingRouter(**cfg).fit(exp), exp.eval)
        print(f"{label:80s} M {results[label]['M']:5.1f} D {results[label]['D']:5.1f}", flush=True)
    for w in (0.0, 0.5):
        label = f"prompt centroids, card_weight {w:g} (centroid router)"
        results[label] = top1(CentroidRouter(card_weight=w).fit(exp), exp.eval)
        print(f"{label:80s} M {results[label]['M']:5.1f} D {results[label]['D']:5.1f}", flush=True)

    payload = {"command": command_line(), "experience": exp.name, "runs": results}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Frozen-feature heads on APIBench (experience 1 alone)",
        "",
        f"Command: `{payload['command']}`  ",
        "Embedding router, all-MiniLM-L6-v2 frozen, full softmax, tau 0.05, batch 64, seed "
        f"{args.seed}; trained on APIBench val, tested on APIBench eval over its 852 models. Issue 3's "
        "reference: 66.6 D-Acc.",
        "",
        "| head | M | D |",
        "| --- | --- | --- |",
        *(f"| {k} | {v['M']:.1f} | {v['D']:.1f} |" for k, v in results.items()),
    ]
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"results in {out}")


if __name__ == "__main__":
    main()
