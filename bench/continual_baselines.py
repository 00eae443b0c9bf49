"""Continual-learning baselines of the trainable embedding router on CMRBench-public.

Every strategy uses the same encoder, projection, model table, epochs, batch size and seed, so
the comparison isolates the strategy: naive (sequential fine-tuning), random replay 10 % and
20 %, online EWC, LwF, LoRA adapter merging (TIES), cumulative and joint retraining.
Results are written after each strategy (so a long run can be resumed with ``--resume``) to
``bench/results/continual_baselines/results.json`` and ``results.md``.

    python bench/continual_baselines.py --data ../shared/cmrbench --finetune full --precision bf16

``merge`` trains LoRA adapters (it needs them); the others fine-tune the encoder as
``--finetune`` says.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from common import router_config, run_resumable
from hubroute.data.cmrbench import load_cmrbench
from hubroute.evaluation.report import matrix_table
from hubroute.evaluation.runner import StreamResult

HERE = Path(__file__).resolve().parent

# label -> (strategy, strategy params, router overrides)
STRATEGIES: dict[str, tuple[str, dict, dict]] = {
    "joint": ("joint", {}, {}),
    "naive": ("naive", {}, {}),
    "replay 10%": ("replay", {"ratio": 0.1}, {}),
    "replay 20%": ("replay", {"ratio": 0.2}, {}),
    "ewc": ("ewc", {"lam": 1000.0}, {}),
    "lwf": ("lwf", {"alpha": 1.0, "temperature": 2.0}, {}),
    "merge (LoRA, TIES)": ("merge", {"combination": "ties", "density": 0.5}, {"finetune": "lora", "lr_encoder": 5e-4}),
    "cumulative": ("cumulative", {}, {}),
}


def _row(label: str, r: StreamResult) -> str:
    s = r.summary()
    cpu = [f.cpu_s for f in r.fits]
    return (
        f"| {label} | {s['M']['final_average']:.1f} | {s['F']['final_average']:.1f} | {s['D']['final_average']:.1f} | "
        f"{s['M']['stream_average']:.1f} | {s['D']['stream_average']:.1f} | {s['D']['forgetting']:.1f} | "
        f"{s['M']['forgetting']:.1f} | {' / '.join(f'{c:.0f}' for c in cpu)} | {sum(cpu):.0f} |"
    )


def write_markdown(out: Path, payload: dict, results: dict[str, StreamResult]) -> None:
    """``results.md``: the summary table and each strategy's D matrix."""
    lines = [
        "# Continual-learning baselines on CMRBench-public",
        "",
        f"Command: `{payload['command']}`  ",
        f"Router: `{json.dumps(payload['router'], sort_keys=True)}`",
        "",
        "Top-1 accuracy in %; *final* = after the last experience, *stream* = diagonal. Fit CPU-seconds are "
        "process CPU time (2 threads) per experience.",
        "",
        "| strategy | M final | F final | D final | M stream | D stream | D forgetting | M forgetting | "
        "fit CPU-s per experience | fit CPU-s total |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [_row(label, r) for label, r in results.items()]
    lines.append("")
    for label, r in results.items():
        lines += [f"## {label}: D-Acc matrix", "", matrix_table(r, "D"), ""]
    (out / "results.md").write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "cmrbench"))
    ap.add_argument("--out", default=str(HERE / "results" / "continual_baselines"))
    ap.add_argument("--finetune", default="full", choices=["frozen", "full", "lora"])
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr-encoder", type=float, default=1e-4, help="Learning rate of the encoder (full/LoRA).")
    ap.add_argument("--lr-rows", type=float, default=3e-4, help="Learning rate of the model table.")
    ap.add_argument("--card-weight", type=float, default=0.0, help="Cards counted as prompts in a new row's mean.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", nargs="*", help="Run only these strategy labels.")
    ap.add_argument("--max-examples", type=int, default=None, help="First N records per split (quick checks).")
    ap.add_argument("--resume", action="store_true", help="Keep strategies already in results.json.")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stream = load_cmrbench(args.data, "public", max_examples=args.max_examples)
    router_cfg = router_config(args, lr_encoder=args.lr_encoder, lr_rows=args.lr_rows)
    path = out / "results.json"
    payload, results = run_resumable(
        STRATEGIES, args.only or list(STRATEGIES), router_cfg, stream, args.seed, path, args.resume
    )
    write_markdown(out, payload, results)
    print(f"wrote {path} and results.md")


if __name__ == "__main__":
    main()
