"""Tables of results: one set of rows, rendered as Markdown (reports, benchmarks, docs) or as a
terminal table (the CLI)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Cell = str | float | int | None


def fmt(x: Cell, digits: int = 1) -> str:
    """A cell as text: numbers with ``digits`` decimals, missing values as an en dash."""
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def markdown(header: Sequence[str], rows: Sequence[Sequence[Cell]], digits: int = 1) -> str:
    """A Markdown table; columns of numbers are right-aligned, the others left-aligned."""

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    def numeric(col: int) -> bool:
        cells = [row[col] for row in rows if col < len(row) and row[col] is not None]
        return bool(cells) and all(isinstance(c, (int, float)) or _number(c) for c in cells)

    align = ["---:" if i and numeric(i) else "---" for i in range(len(header))]
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(esc(fmt(c, digits)) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _number(cell: Cell) -> bool:
    """Whether a text cell reads as a number (``12.5``, ``–``, ``1.2 / 3.4``)."""
    text = str(cell).replace("–", "").replace("≈", "").replace("/", " ").replace("%", "").strip()
    try:
        [float(x) for x in text.split()]
    except ValueError:
        return False
    return True


def terminal(header: Sequence[str], rows: Sequence[Sequence[Cell]], title: str | None = None, digits: int = 1) -> Any:
    """The same table as a :class:`rich.table.Table` (cells never cut: long ones wrap)."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*(fmt(c, digits) for c in row))
    return table


SUMMARY_HEADER = (
    "router",
    "M final",
    "F final",
    "D final",
    "M stream",
    "F stream",
    "D stream",
    "D forgetting",
    "D BWT",
    "top-3 D",
    "top-10 M",
)


def summary_rows(results: Sequence[Any], labels: Sequence[str]) -> list[list[Cell]]:
    """One row per :class:`~hubroute.evaluation.runner.StreamResult` (columns of
    :data:`SUMMARY_HEADER`): final and stream averages, D forgetting and BWT, top-3 D, top-10 M."""
    rows: list[list[Cell]] = []
    for label, r in zip(labels, results, strict=True):
        s = r.summary()
        k3 = "final_top3" if "final_top3" in s["D"] else "final_top1"
        k10 = f"final_top{max(r.ks)}"
        rows.append(
            [
                label,
                s["M"]["final_average"],
                s["F"]["final_average"],
                s["D"]["final_average"],
                s["M"]["stream_average"],
                s["F"]["stream_average"],
                s["D"]["stream_average"],
                s["D"]["forgetting"],
                s["D"]["bwt"],
                s["D"][k3],
                s["M"][k10],
            ]
        )
    return rows
