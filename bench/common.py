"""Helpers shared by the benchmark scripts: the command line they record, the trained-router
configuration the continual benchmarks share."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def command_line() -> str:
    """The command that is running, as typed from the repository root (for results files)."""
    return "python " + " ".join(shlex.quote(a) for a in [sys.argv[0].replace(str(REPO) + "/", ""), *sys.argv[1:]])


def router_config(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """The embedding-router settings every run of a continual benchmark shares: ``--finetune``,
    ``--precision``, ``--epochs``, ``--batch-size``, ``--seed`` from ``args``; full softmax,
    tau 0.05, prompt-mean rows and the default learning rates unless ``overrides`` say otherwise."""
    return {
        "finetune": args.finetune,
        "precision": args.precision,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "tau": 0.05,
        "loss": "full",
        "row_init": "prompt_mean",
        "lr_encoder": 1e-4,
        "lr_proj": 1e-3,
        "lr_rows": 3e-4,
    } | overrides
