"""What every experiment shares: its config, the data, the command and machine it ran on, and
writing ``results.json`` / ``results.md``."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import psutil

from hubroute.data.cmrbench import load_cmrbench
from hubroute.evaluation.runner import environment
from hubroute.hub import Stream

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
CONFIGS = BENCH / "configs"
RESULTS = BENCH / "results"
DEFAULT_DATA = REPO.parent / "shared" / "cmrbench"


def experiments() -> list[str]:
    """Names of every configured experiment."""
    return sorted(p.stem for p in CONFIGS.glob("*.toml"))


def load_config(name: str) -> dict[str, Any]:
    """The config of experiment ``name`` (``bench/configs/<name>.toml``)."""
    path = CONFIGS / f"{name}.toml"
    if not path.is_file():
        raise SystemExit(f"error: no experiment {name!r}; known: {', '.join(experiments())}")
    return tomllib.loads(path.read_text(encoding="utf-8"))


def command_line() -> str:
    """The command that is running, as typed from the repository root."""
    argv = [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]]
    return "python " + " ".join(shlex.quote(a) for a in argv)


def load_stream(data: str | Path | None, protocol: str = "public", max_examples: int | None = None) -> Stream:
    """CMRBench from ``data`` (default ``../shared/cmrbench``)."""
    return load_cmrbench(data or DEFAULT_DATA, protocol, max_examples=max_examples)


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


class Machine:
    """Load of the machine while an experiment ran (1-minute load average at start and end, and
    the highest CPU share other processes took), so results say when other work ran beside."""

    def __init__(self) -> None:
        self.start = os.getloadavg()[0]
        self.t0 = time.time()
        self.others_max = 0.0

    def sample(self) -> None:
        """Note the CPU share of every other process right now."""
        me = os.getpid()
        kids = {p.pid for p in psutil.Process(me).children(recursive=True)}
        busy = 0.0
        for p in psutil.process_iter(["pid", "cpu_percent"]):
            if p.info["pid"] != me and p.info["pid"] not in kids:
                busy += p.info["cpu_percent"] or 0.0
        self.others_max = max(self.others_max, busy)

    def record(self) -> dict[str, Any]:
        """What to store with the results."""
        return {
            "load_avg_start": round(self.start, 2),
            "load_avg_end": round(os.getloadavg()[0], 2),
            "wall_s": round(time.time() - self.t0, 1),
            "other_processes_cpu_percent_max": round(self.others_max, 1),
            **environment(),
        }


def write(out: Path, payload: dict[str, Any], markdown: str) -> None:
    """``results.json`` and ``results.md`` of one experiment."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(payload, indent=2, default=_json) + "\n", encoding="utf-8")
    (out / "results.md").write_text(markdown.rstrip() + "\n", encoding="utf-8")


def _json(x: Any) -> Any:
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"not JSON: {type(x).__name__}")


def header(title: str, payload: dict[str, Any]) -> list[str]:
    """The first lines of every ``results.md``: title, command, machine."""
    m = payload.get("machine", {})
    lines = [f"# {title}", "", "Command:", "", "    " + payload["command"], ""]
    for extra in payload.get("resumed_by", []):
        lines += ["Resumed with:", "", "    " + extra, ""]
    if m:
        busy = m.get("other_processes_cpu_percent_max", 0)
        note = (
            f"other processes used up to {busy:.0f} % CPU meanwhile, so timings are approximate"
            if busy > 20
            else "no other work ran beside it"
        )
        lines += [
            f"Ran {m.get('wall_s', 0) / 60:.0f} min on {m.get('cpus')} CPUs (torch {m.get('torch')}, "
            f"{m.get('threads')} threads); {note}.",
            "",
        ]
    return lines
