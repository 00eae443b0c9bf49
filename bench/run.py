"""hubroute's benchmark suite: one entry point, one config per experiment.

    python bench/run.py list                          # the experiments and what each measures
    python bench/run.py run zero_shot                 # run one (results in bench/results/zero_shot/)
    python bench/run.py run carve_frozen --only 'carve 10%' --resume
    python bench/run.py report                        # README results table and docs/results.md

Configs live in ``bench/configs/<experiment>.toml``; ``kind`` says which runner reads them
(``stream``, ``cold_start``, ``hub_scale``, ``service_load``, ``service_attack``,
``inference_speed``, ``scale``). CMRBench is read from
``../shared/cmrbench`` unless ``--data`` says otherwise. ``--max-examples N`` keeps the first N
records of each split (and so fewer models): a quick check that an experiment runs, never a result.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from suite import common

RUNNERS = (
    "stream",
    "service_load",
    "service_attack",
    "cold_start",
    "hub_scale",
    "replicas",
    "ddp",
    "inference_speed",
    "encoder_speed",
    "scale",
)


def _runner(kind: str):
    """The ``run(config, out, args)`` function of runner module ``suite.<kind>``."""
    if kind not in RUNNERS:
        raise SystemExit(f"error: unknown experiment kind {kind!r} (known: {', '.join(RUNNERS)})")
    import importlib

    return importlib.import_module(f"suite.{kind}").run


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="hubroute benchmark suite")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="List the experiments.")
    r = sub.add_parser("run", help="Run one experiment.")
    r.add_argument("experiment", help="A config name from bench/configs.")
    r.add_argument("--data", default=None, help="CMRBench folder (default: ../shared/cmrbench).")
    r.add_argument("--out", default=None, help="Results folder (default: bench/results/EXPERIMENT).")
    r.add_argument("--only", nargs="*", default=None, help="Run only these labels (scale: hub sizes, or service).")
    r.add_argument("--resume", action="store_true", help="Keep the runs already in results.json.")
    r.add_argument("--max-examples", type=int, default=None, help="Quick check: first N records per split.")
    r.add_argument(
        "--device", default=None, help="stream: torch device of the routers that take one (default: cuda if present)."
    )
    rep = sub.add_parser("report", help="Write the README results table and docs/results.md from results.json files.")
    rep.add_argument("--check", action="store_true", help="Only check that the generated files are up to date.")
    args = ap.parse_args(argv)
    if args.cmd == "list":
        for name in common.experiments():
            cfg = common.load_config(name)
            print(f"{name:24s} {cfg['kind']:16s} {cfg['title']}")
        return
    if args.cmd == "report":
        from suite import report

        report.main(check=args.check)
        return
    config = common.load_config(args.experiment)
    out = Path(args.out) if args.out else common.RESULTS / args.experiment
    _runner(config["kind"])(config, out, args)
    print(f"results in {out}")


if __name__ == "__main__":
    main()
