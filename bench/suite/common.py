"""What every experiment shares: its config, the data, the command and machine it ran on, and
writing ``results.json`` / ``results.md``."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import sys
import threading
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
    """The machine while an experiment ran: the CPU time other processes used (system-wide busy
    time minus this process's and its children's), as a share of all cores over the run, so
    results say when other work ran beside them."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.busy0 = self._busy()
        self.own0 = self._own()

    @staticmethod
    def _busy() -> float:
        t = psutil.cpu_times()
        return sum(t) - t.idle - getattr(t, "iowait", 0.0)

    @staticmethod
    def _own() -> float:
        t = psutil.Process().cpu_times()
        return t.user + t.system + t.children_user + t.children_system

    def sample(self) -> None:
        """Kept for callers that mark progress; the measure covers the whole run."""

    def record(self) -> dict[str, Any]:
        """What to store with the results."""
        wall = time.time() - self.t0
        others = max(0.0, (self._busy() - self.busy0) - (self._own() - self.own0))
        cores = psutil.cpu_count() or 1
        return {
            "wall_s": round(wall, 1),
            "other_processes_cpu_s": round(others, 1),
            "other_processes_cpu_share": round(others / max(wall * cores, 1e-9), 3),
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
        share = m.get("other_processes_cpu_share")
        if share is None:
            note = "other work may have run beside it (not measured), so timings are approximate"
        elif share > 0.05:
            note = f"other processes used {100 * share:.0f} % of the CPU meanwhile, so timings are approximate"
        else:
            note = f"other processes used {100 * share:.0f} % of the CPU meanwhile"
        lines += [
            f"Ran {m.get('wall_s', 0) / 60:.1f} min on {m.get('cpus')} CPUs (torch {m.get('torch')}, "
            f"{m.get('threads')} threads); {note}.",
            "",
        ]
    return lines


class PeakRSS:
    """The largest resident memory of this process while the block runs (sampled every 50 ms)."""

    def __enter__(self) -> PeakRSS:
        self.proc, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
