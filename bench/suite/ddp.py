"""One experience learned by one process and by ``torchrun`` processes (kind ``ddp``).

For each setting (a trainable router and its parameters) the first CMRBench experience is
learned by ``python -m torch.distributed.run --nproc-per-node N`` for each N of ``nprocs`` (N = 1
is a plain process), running this module as the worker: it times the training loop (the
optimiser steps, without encoding the cards or the final evaluation), counts the steps, and
evaluates the router on the experience's eval split; rank 0 writes the record. One process uses
every core for torch's threads; N processes use ``cores / N`` threads each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from hubroute.evaluation import tables
from suite.common import Machine, command_line, header, write

BENCH = Path(__file__).resolve().parents[1]


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment (see the module docstring)."""
    work = Path(tempfile.mkdtemp(prefix="hubroute-ddp-"))
    machine = Machine()
    cores = psutil.cpu_count() or 1
    records = []
    for setting in config["settings"]:
        for rnd in range(int(config.get("rounds", 1))):
            order = config["nprocs"] if rnd % 2 == 0 else list(reversed(config["nprocs"]))
            for n in order:
                dest = work / f"{setting['label']}-{n}-{rnd}.json".replace(" ", "_").replace(",", "")
                launcher = [sys.executable]
                if n > 1:
                    launcher += ["-m", "torch.distributed.run", "--nproc-per-node", str(n)]
                cmd = [*launcher, str(Path(__file__).resolve()), "--out", str(dest)]
                cmd += ["--router", setting["router"], "--params", json.dumps(setting.get("params", {}))]
                if args.data:
                    cmd += ["--data", str(args.data)]
                examples = args.max_examples or setting.get("max_examples")
                if examples:
                    cmd += ["--max-examples", str(examples)]
                env = {**os.environ, "OMP_NUM_THREADS": str(max(1, cores // n)), "HUBROUTE_QUIET": "1"}
                env["PYTHONPATH"] = os.pathsep.join([str(BENCH), env.get("PYTHONPATH", "")])
                done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=7200)
                if done.returncode != 0:
                    raise RuntimeError(f"{setting['label']} with {n} processes failed:\n{done.stderr[-3000:]}")
                record = json.loads(dest.read_text()) | {"label": setting["label"], "nprocs": n, "round": rnd}
                print(json.dumps(record), flush=True)
                records.append(record)
                machine.sample()
    payload = {"command": command_line(), "config": config, "cores": cores, "runs": records}
    payload["machine"] = machine.record()
    write(out, payload, markdown(config, payload))


def markdown(config: dict, payload: dict) -> str:
    """``results.md``: accuracy and time per step by setting and process count."""
    lines = header(config["title"], payload)
    lines += [
        f"{payload['cores']} cores: one process uses them all for torch's threads, two processes one each; "
        "neither can be faster than the cores allow, so the ratio shows what the gradient exchange costs, "
        "not how training scales on more machines.",
        "",
    ]
    rows = []
    for label in dict.fromkeys(r["label"] for r in payload["runs"]):
        base = None
        for n in config["nprocs"]:
            runs = [r for r in payload["runs"] if r["label"] == label and r["nprocs"] == n]
            step = float(np.median([r["train_s"] / r["steps"] for r in runs]))
            base = base or step
            rows.append(
                [
                    label,
                    n,
                    runs[0]["steps"],
                    1000 * step,
                    f"{step / base:.2f}",
                    float(np.median([r["M"] for r in runs])),
                    float(np.median([r["D"] for r in runs])),
                    len(runs),
                ]
            )
    lines += [
        tables.markdown(
            ["setting", "processes", "steps", "ms per step", "vs 1 process", "M-Acc %", "D-Acc %", "rounds"], rows
        ),
        "",
    ]
    return "\n".join(lines)


def worker(argv: list[str] | None = None) -> None:
    """Learn the first experience under whatever ``torchrun`` set up; rank 0 writes ``--out``."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--router", required=True)
    ap.add_argument("--params", default="{}")
    ap.add_argument("--data", default=None)
    ap.add_argument("--max-examples", type=int, default=None)
    a = ap.parse_args(argv)
    import torch

    from hubroute.evaluation.metrics import top1
    from hubroute.routers import make_router
    from hubroute.seed import seed_everything
    from hubroute.training import Trainer, distributed
    from suite.common import load_stream

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    with distributed.from_env():
        seed_everything(0)
        exp = load_stream(a.data, "public", a.max_examples)[0]
        router = make_router(a.router, seed=0, **json.loads(a.params))
        timed: list[float] = []
        train = Trainer.train

        def timed_train(self: Trainer, *args: Any, **kwargs: Any) -> None:
            t0 = time.perf_counter()
            train(self, *args, **kwargs)
            timed.append(time.perf_counter() - t0)

        Trainer.train = timed_train  # type: ignore[method-assign]
        router.fit(exp)
        acc = top1(router, exp.eval)
        if distributed.is_writer():
            record = {
                "train_s": sum(timed),
                "steps": int(sum(h["steps"] for h in router.history_)),
                "M": acc["M"],
                "D": acc["D"],
                "world": distributed.world()[1],
                "threads": torch.get_num_threads(),
            }
            Path(a.out).write_text(json.dumps(record) + "\n")


if __name__ == "__main__":
    worker()
