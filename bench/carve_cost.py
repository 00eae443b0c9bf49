"""What CARvE 10 % and cumulative retraining train on at each experience, counted (no timing).

Target (c) asks CARvE to learn an experience for at most half the CPU-seconds of cumulative
retraining. With equal epochs, CPU follows how much each trains on per epoch; this counts it per
experience of CMRBench-public, for CARvE 10 % (the new training set plus a coreset of 10 % of
each earlier one, chosen as CARvE chooses it, cut into domain batches) and cumulative (every
training set so far, cut as the router cuts it):

- examples;
- tokens the encoder reads, each prompt truncated at the router's ``max_seq_length``;
- padded tokens: what full fine-tuning encodes, batches split into length-sorted chunks of
  ``TRAIN_CHUNK`` (``bench/train_chunk.py``);
- optimiser steps per epoch (what a frozen-encoder step's cost scales with).

Each is reported as CARvE / cumulative. The counts are deterministic for a seed.

    python bench/carve_cost.py --data ../shared/cmrbench
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch

from common import command_line
from hubroute.continual import CARvEStrategy
from hubroute.continual.base import TrainItem
from hubroute.continual.rehearsal import ReplayStrategy
from hubroute.data.cmrbench import load_cmrbench
from hubroute.routers import EmbeddingRouter
from hubroute.routers.embedding import TRAIN_CHUNK
from hubroute.seed import seed_everything
from train_chunk import padded_tokens

HERE = Path(__file__).resolve().parent
KINDS = ("examples", "tokens", "padded_tokens", "steps")


def counts(router: EmbeddingRouter, items: list[TrainItem], batches: list[list[int]]) -> dict[str, int]:
    """Examples, truncated tokens, padded tokens and steps of one epoch over ``batches``."""
    tok, limit = router.st_.tokenizer, router.st_.max_seq_length
    tokens = sum(min(len(tok(it.example.prompt)["input_ids"]), limit) for it in items)
    return {
        "examples": len(items),
        "tokens": tokens,
        "padded_tokens": padded_tokens(router, items, batches, TRAIN_CHUNK),
        "steps": len(batches),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "cmrbench"))
    ap.add_argument("--out", default=str(HERE / "results" / "carve_cost"))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    seed_everything(args.seed)
    stream = load_cmrbench(args.data, "public")
    # full fine-tuning: the router's tokenizer and its length-grouped batches for cumulative
    router = EmbeddingRouter(finetune="full", batch_size=args.batch_size, seed=args.seed)
    router._build()
    carve = CARvEStrategy(ratio=0.1, seed=args.seed)
    rows: list[dict] = []
    seen: list[TrainItem] = []
    for t, exp in enumerate(stream):
        g = torch.Generator().manual_seed(args.seed * 7919 + t)  # as EmbeddingRouter.train_items seeds
        ours = carve.training_data(router, exp)
        seen += [TrainItem(x) for x in exp.train]
        row = {
            "experience": exp.name,
            "carve": counts(router, ours, carve.batches(router, ours, g)),
            "cumulative": counts(router, seen, router.default_batches(seen, g)),
        }
        row["ratio"] = {k: row["carve"][k] / row["cumulative"][k] for k in KINDS}
        rows.append(row)
        ReplayStrategy.after_experience(carve, router, exp)  # the coreset, without a trained snapshot
        print(exp.name, {k: round(v, 3) for k, v in row["ratio"].items()}, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"command": command_line(), "batch_size": args.batch_size, "train_chunk": TRAIN_CHUNK, "rows": rows}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# What CARvE 10 % and cumulative retraining train on, per experience",
        "",
        f"Command: `{payload['command']}`  ",
        f"One epoch; batches of {args.batch_size}; padded tokens in length-sorted chunks of {TRAIN_CHUNK}. "
        "Each cell: CARvE / cumulative (ratio).",
        "",
        "| experience | examples | tokens | padded tokens | steps |",
        "| --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cells = [f"{row['carve'][k]} / {row['cumulative'][k]} ({row['ratio'][k]:.2f})" for k in KINDS]
        lines.append(f"| {row['experience']} | " + " | ".join(cells) + " |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / 'results.json'} and results.md")


if __name__ == "__main__":
    main()
