"""Cold start (kind ``cold_start``): how well each router routes to models that arrive with only a
card, and after their first prompts arrive.

A share of CMRBench's models (``cold_share``, seeded, stratified by domain) is held out as
"arrived with only a card": every router learns the four experiences without any prompt of those
models (their cards are registered), and is scored on the eval prompts of the cold models and of
the others. Then the cold models' training prompts arrive as a fifth experience, and both are
scored again: what the router gains on the cold models, and whether it loses anything on the
others.
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from hubroute.evaluation import tables
from hubroute.evaluation.metrics import top1
from hubroute.hub import Experience, Stream
from hubroute.routers import make_router
from hubroute.seed import seed_everything
from suite.common import Machine, command_line, header, load_stream, write
from suite.stream import merge


def cold_models(stream: Stream, share: float, seed: int) -> set[str]:
    """``share`` of each domain's models (at least one of a domain with two or more), seeded."""
    by_domain: dict[str, list[str]] = defaultdict(list)
    for c in stream.all_cards():
        by_domain[c.domain].append(c.model_id)
    rng = random.Random(seed)
    out: set[str] = set()
    for domain in sorted(by_domain):
        ids = sorted(by_domain[domain])
        n = round(share * len(ids))
        if n == 0 and len(ids) >= 2:
            n = 1
        out.update(rng.sample(ids, n))
    return out


def split(stream: Stream, cold: set[str]) -> tuple[Stream, Experience]:
    """The stream without the cold models' training prompts, and the experience that brings them."""
    exps = [dataclasses.replace(e, train=[x for x in e.train if x.model_id not in cold]) for e in stream]
    arrival = Experience(
        index=len(stream),
        name="cold models' prompts",
        new_cards=[],
        train=[x for e in stream for x in e.train if x.model_id in cold],
        eval=[],
    )
    return dataclasses.replace(stream, experiences=exps), arrival


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment (see the module docstring)."""
    stream = load_stream(args.data, "public", args.max_examples)
    seed = int(config.get("seed", 0))
    cold = cold_models(stream, float(config.get("cold_share", 0.2)), seed)
    warm_stream, arrival = split(stream, cold)
    evals = [x for e in stream for x in e.eval]
    sets = {"cold": [x for x in evals if x.model_id in cold], "warm": [x for x in evals if x.model_id not in cold]}
    machine = Machine()
    runs: dict[str, Any] = {}
    labels = [r["label"] for r in config["runs"]]
    wanted = args.only or labels
    for spec in config["runs"]:
        if spec["label"] not in wanted:
            continue
        seed_everything(seed)
        router = make_router(spec["router"], **merge(config.get("defaults", {}), spec.get("params", {})))
        t0 = time.perf_counter()
        for e in warm_stream:
            router.fit(e)
        before = {name: top1(router, xs) for name, xs in sets.items()}
        t1 = time.perf_counter()
        router.fit(arrival)
        learn_s = time.perf_counter() - t1
        after = {name: top1(router, xs) for name, xs in sets.items()}
        runs[spec["label"]] = {
            "before": before,
            "after": after,
            "arrival_fit_s": learn_s,
            "wall_s": time.perf_counter() - t0,
        }
        print(f"{spec['label']:40s} cold D {before['cold']['D']:5.1f} -> {after['cold']['D']:5.1f}  "
              f"warm D {before['warm']['D']:5.1f} -> {after['warm']['D']:5.1f}", flush=True)  # fmt: skip
        payload = _payload(config, cold, sets, arrival, runs, machine)
        write(out, payload, markdown(config, payload))
    payload = _payload(config, cold, sets, arrival, runs, machine)
    write(out, payload, markdown(config, payload))


def _payload(
    config: dict[str, Any], cold: set[str], sets: dict[str, list], arrival: Experience, runs: dict, machine: Machine
) -> dict[str, Any]:
    return {
        "command": command_line(),
        "config": config,
        "cold_models": len(cold),
        "eval_prompts": {k: len(v) for k, v in sets.items()},
        "arrival_prompts": len(arrival.train),
        "runs": runs,
        "machine": machine.record(),
    }


def markdown(config: dict, payload: dict) -> str:
    """``results.md``: per router, cold and warm top-1 M/F/D before and after the prompts arrive."""
    lines = header(config["title"], payload)
    lines += [
        f"{payload['cold_models']} models ({100 * float(config.get('cold_share', 0.2)):.0f} % of each domain, seeded) "
        f"arrive with only a card; {payload['eval_prompts']['cold']} eval prompts are theirs, "
        f"{payload['eval_prompts']['warm']} belong to the other models. Then {payload['arrival_prompts']} training "
        "prompts of the cold models arrive as one more experience. Top-1 accuracy in %, M / F / D.",
        "",
    ]

    def mfd(d: dict) -> str:
        return " / ".join(f"{d[lv]:.1f}" for lv in ("M", "F", "D"))

    rows = []
    for label, r in payload["runs"].items():
        b, a = r["before"], r["after"]
        rows.append(
            [label, mfd(b["cold"]), mfd(a["cold"]), mfd(b["warm"]), mfd(a["warm"]), f"{r['arrival_fit_s']:.1f}"]
        )
    header_row = ["router", "cold, card only", "cold, prompts arrived", "others before", "others after", "learn s"]
    lines.append(tables.markdown(header_row, rows))
    return "\n".join(lines)
