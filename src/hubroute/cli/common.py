"""What every command shares: output consoles, tables that never cut a model id, progress bars,
parameters given as KEY=VALUE, data options, and one-line errors."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hubroute.errors import HubrouteError

console = Console(stderr=True, highlight=False)  # messages and progress
out = Console(highlight=False, soft_wrap=True)  # results

DataOpt = Annotated[
    Path | None,
    typer.Option(
        "--data",
        help="CMRBench-layout folder or hub folder (default: $HUBROUTE_CMRBENCH, else ~/.cache/hubroute/cmrbench).",
    ),
]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="public (train on val) or full (train on train+val).")]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        help="Router parameter KEY=VALUE (VALUE read as JSON, else text); `training.epochs=2` sets a nested one. "
        "Repeatable.",
    ),
]
MaxExamplesOpt = Annotated[
    int | None,
    typer.Option(
        "--max-examples",
        help="Keep the first N examples of each split, for a quick look (every model is still registered).",
    ),
]


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["w=0.5", "fusion=rrf", "training.epochs=2"]`` -> ``{"w": 0.5, "fusion": "rrf",
    "training": {"epochs": 2}}``."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise HubrouteError(f"a parameter is KEY=VALUE, got {item!r}")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        *parents, last = key.split(".")
        node = params
        for p in parents:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise HubrouteError(f"parameter {p!r} is given both as a value and as a group")
            node = child
        node[last] = parsed
    return params


def command_line() -> str:
    """The command that is running (recorded in reports)."""
    return "hubroute " + " ".join(shlex.quote(a) for a in sys.argv[1:])


def print_table(header: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A results table on stdout: a terminal table whose cells wrap (an id is never cut) on a
    terminal, tab-separated lines with a header line when stdout is a pipe or a file."""
    from hubroute.evaluation import tables

    if out.is_terminal:
        out.print(tables.terminal(header, rows, title))
        return
    if title:
        print(f"# {title}")
    print("\t".join(header))
    for row in rows:
        print("\t".join(tables.fmt(c) for c in row))


def note(message: str) -> None:
    """A dim line on stderr."""
    console.print(f"[dim]{message}[/dim]")


class ProgressBars:
    """A :class:`hubroute.progress.Reporter` that draws rich progress bars with an ETA on stderr
    (nothing when stderr is not a terminal, or with ``--quiet``)."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.depth = 0

    def __enter__(self) -> ProgressBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, description: str, total: int | None) -> object:
        indent = "  " * self.depth
        self.depth += 1
        return self.progress.add_task(indent + description, total=total)

    def advance(self, handle: object, n: int) -> None:
        self.progress.advance(handle, n)  # type: ignore[arg-type]

    def finish(self, handle: object) -> None:
        self.depth = max(0, self.depth - 1)
        task = self.progress.tasks[[t.id for t in self.progress.tasks].index(handle)]
        if task.total is None:
            self.progress.update(handle, total=1, completed=1)  # type: ignore[arg-type]
        if self.depth:  # inner steps disappear once done; the outermost ones stay as a log
            self.progress.remove_task(handle)  # type: ignore[arg-type]


def progress_bars() -> Any:
    """A context that shows library progress as bars while it is open (see :class:`ProgressBars`)."""
    import contextlib

    from hubroute import progress

    rank = os.environ.get("RANK", "0")  # under torchrun, only rank 0 draws
    if os.environ.get("HUBROUTE_QUIET") == "1" or not console.is_terminal or rank != "0":
        return contextlib.nullcontext()
    bars = ProgressBars()

    @contextlib.contextmanager
    def both():
        with bars, progress.reporting(bars):
            yield

    return both()
