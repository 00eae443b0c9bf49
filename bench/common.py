"""Helpers shared by the benchmark scripts: the command line they record, the trained-router
configuration the continual benchmarks share."""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from hubroute.evaluation.metrics import hits, topk_accuracy
from hubroute.evaluation.runner import StreamResult, run_stream
from hubroute.hub import RoutingExample, Stream
from hubroute.routers import EmbeddingRouter, Router
from hubroute.seed import seed_everything

REPO = Path(__file__).resolve().parents[1]


def command_line() -> str:
    """The command that is running, as typed from the repository root (for results files)."""
    return "python " + " ".join(shlex.quote(a) for a in [sys.argv[0].replace(str(REPO) + "/", ""), *sys.argv[1:]])


def top1(router: Router, examples: list[RoutingExample]) -> dict[str, float]:
    """Top-1 M- and D-Acc in % of ``router`` on ``examples`` (over its active models)."""
    rows, _ = router.rank([x.prompt for x in examples], 1)
    h = hits(rows, examples, router.registry_)
    return {"M": topk_accuracy(h["M"], 1), "D": topk_accuracy(h["D"], 1)}


def held_out_stream(stream: Stream, every: int = 5) -> Stream:
    """``stream`` for choosing settings without its eval splits: each experience trains on its
    training examples but every ``every``-th one, and is evaluated on those held-out ones."""
    experiences = [
        dataclasses.replace(
            e,
            train=[x for i, x in enumerate(e.train) if i % every],
            eval=[x for i, x in enumerate(e.train) if not i % every],
        )
        for e in stream
    ]
    return dataclasses.replace(stream, name=f"{stream.name} (held-out val)", experiences=experiences)


def router_config(args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    """The embedding-router settings every run of a continual benchmark shares: ``--finetune``,
    ``--precision``, ``--epochs``, ``--batch-size``, ``--seed`` from ``args``; full softmax,
    tau 0.05, prompt-mean rows (``--card-weight`` cards in the mean, ``--row-refresh`` when the
    benchmark has it) and the default learning rates unless ``overrides`` say otherwise."""
    return {
        "finetune": args.finetune,
        "precision": args.precision,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "tau": 0.05,
        "loss": "full",
        "row_init": "prompt_mean",
        "card_weight": args.card_weight,
        "row_refresh": bool(getattr(args, "row_refresh", False)),
        "lr_encoder": 1e-4,
        "lr_proj": 1e-3,
        "lr_rows": 3e-4,
    } | overrides


def run_labelled(
    label: str, spec: tuple[str, dict, dict], router_cfg: dict[str, Any], stream: Stream, seed: int
) -> tuple[StreamResult, float]:
    """Run one continual benchmark entry ``spec = (strategy, strategy params, router overrides)``
    along ``stream`` from a fresh seeded router; print its summary line; return the result and
    its wall seconds."""
    name, params, overrides = spec
    seed_everything(seed)
    router = EmbeddingRouter(strategy=name, strategy_params=params, **{**router_cfg, **overrides})
    t0 = time.perf_counter()
    res = run_stream(router, stream, ks=(1, 3, 10), seed=seed, latency=False)
    wall = time.perf_counter() - t0
    s = res.summary()
    cpu = sum(f.cpu_s for f in res.fits)
    print(
        f"{label:45s} M {s['M']['final_average']:5.1f} F {s['F']['final_average']:5.1f} "
        f"D {s['D']['final_average']:5.1f} D@3 {s['D']['final_top3']:5.1f} "
        f"D-forgetting {s['D']['forgetting']:5.1f}  cpu {cpu:6.1f} s  {wall:.0f} s",
        flush=True,
    )
    return res, wall


def run_resumable(
    specs: dict[str, tuple[str, dict, dict]],
    labels: list[str],
    router_cfg: dict[str, Any],
    stream: Stream,
    seed: int,
    path: Path,
    resume: bool,
) -> tuple[dict[str, Any], dict[str, StreamResult]]:
    """Run the entries ``labels`` of ``specs`` (see :func:`run_labelled`), writing ``path``
    (results.json) after each. With ``resume``, entries already in ``path`` are kept and skipped,
    and the recorded command lists the earlier one(s) too. Returns the payload and every stored
    result, in ``specs`` order."""
    command = command_line()
    payload: dict[str, Any] = {"command": command, "router": router_cfg, "runs": {}}
    if resume and path.is_file():
        previous = json.loads(path.read_text())
        payload["runs"], payload["router"] = previous["runs"], previous["router"]
        payload["command"] = previous["command"] + " && " + command
    for label in labels:
        if label in payload["runs"]:
            continue
        res, wall = run_labelled(label, specs[label], router_cfg, stream, seed)
        payload["runs"][label] = res.to_dict() | {"wall_s": wall}
        path.write_text(json.dumps(payload, indent=2) + "\n")
    results = {k: StreamResult.from_dict(payload["runs"][k]) for k in specs if k in payload["runs"]}
    return payload, results
