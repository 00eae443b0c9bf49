"""Offline batch routing spread over a Ray cluster (``hubroute route --engine ray``).

The driver cuts the prompt log into pieces without parsing it (a Parquet file by row group, a
text or JSON-lines file by byte ranges of ``lines_per_task`` lines) and Ray Data maps them
(``map_batches``) over a pool of ``workers`` actors, each holding the router once; each piece is
read, parsed and routed by the same functions as :func:`hubroute.batch.route_file`, so the output
file is the same, row for row. Results come back in order and the driver appends them to the
output as they arrive. Every worker reads the prompt log itself: on a cluster of several
machines it must lie on a path they all see.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hubroute import progress
from hubroute.batch import BatchReport, is_parquet, open_prompt_parquet, parse_line, route_batch, schema
from hubroute.data.lines import decode_line
from hubroute.errors import DataError, HubrouteError
from hubroute.extras import require


def pieces(path: Path, lines_per_task: int) -> Iterator[dict[str, int]]:
    """Where each task reads: ``{"group": i}`` per Parquet row group, or ``{"start", "stop",
    "line"}`` byte ranges of a text file holding ``lines_per_task`` lines (``line``: the number of
    the range's first line)."""
    if is_parquet(path):
        pf = open_prompt_parquet(path)
        first = 1
        for i in range(pf.num_row_groups):
            yield {"group": i, "start": 0, "stop": 0, "line": first}
            first += pf.metadata.row_group(i).num_rows
        return
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise DataError("file not found", path) from None
    with f:
        start = pos = 0
        line = first = 1
        for raw in f:
            pos += len(raw)
            if line - first + 1 == lines_per_task:
                yield {"group": -1, "start": start, "stop": pos, "line": first}
                start, first = pos, line + 1
            line += 1
        if pos > start:
            yield {"group": -1, "start": start, "stop": pos, "line": first}


def read_piece(path: Path, piece: dict[str, int]) -> list[tuple[int, Any]]:
    """The ``(line, prompt)`` pairs of one piece, parsed as :func:`hubroute.batch.read_prompt_log`
    does; :class:`DataError` at the first line it cannot read."""
    if piece["group"] >= 0:
        pq = require("pyarrow.parquet", "hub")
        values = pq.ParquetFile(path).read_row_group(piece["group"], columns=["prompt"]).column(0).to_pylist()
        return [(piece["line"] + i, v) for i, v in enumerate(values)]
    with path.open("rb") as f:
        f.seek(piece["start"])
        data = f.read(piece["stop"] - piece["start"])
    lines = data.split(b"\n")  # as a file iterates its lines
    if lines and not lines[-1]:
        lines.pop()
    out = []
    for i, raw in enumerate(lines):
        lineno = piece["line"] + i
        line = decode_line(raw, path, lineno)
        if not line.strip():
            continue
        try:
            out.append((lineno, parse_line(line)))
        except ValueError as e:
            raise DataError(str(e), path, lineno) from None
    return out


class RouteTask:
    """A Ray Data actor: loads the router once, then routes pieces into output rows (a piece that
    cannot be read becomes one row with ``fatal`` set, which the driver raises). The job's
    settings are class attributes (:func:`task_class`), so the actors take no constructor
    arguments."""

    router_dir = source = ""
    k = batch_size = 0
    domain: str | None = None
    where: tuple[str, ...] = ()

    def __init__(self) -> None:
        from hubroute.constraints import Constraints
        from hubroute.routers import load_router

        self.router = load_router(self.router_dir)
        self.constraints = Constraints.parse(list(self.where))

    def __call__(self, batch: dict[str, Any]) -> Any:
        """Route the pieces of ``batch`` (columns group, start, stop, line)."""
        import pyarrow as pa

        rows: list[dict[str, Any]] = []
        report = BatchReport(Path())
        for group, start, stop, line in zip(batch["group"], batch["start"], batch["stop"], batch["line"], strict=True):
            piece = {"group": int(group), "start": int(start), "stop": int(stop), "line": int(line)}
            try:
                items = read_piece(Path(self.source), piece)
            except DataError as e:
                fatal = {c: None for c in schema().names} | {"line": e.line, "error": str(e), "fatal": True}
                return pa.Table.from_pylist([fatal], schema=_with_fatal())
            for i in range(0, len(items), self.batch_size):
                part = items[i : i + self.batch_size]
                rows += route_batch(self.router, part, self.k, self.domain, self.constraints, report)
        return pa.Table.from_pylist([r | {"fatal": False} for r in rows], schema=_with_fatal())


def task_class(router_dir: str, source: str, k: int, batch_size: int, domain: str | None, where: list[str]) -> type:
    """:class:`RouteTask` with one job's settings."""
    settings = {"router_dir": router_dir, "source": source, "k": k, "batch_size": batch_size}
    return type("RouteTask", (RouteTask,), settings | {"domain": domain, "where": tuple(where)})


def _no_restarts() -> dict[str, Any]:
    """Remote options of a worker: one that dies fails the job instead of being restarted."""
    return {"max_restarts": 0}


def _with_fatal() -> Any:
    import pyarrow as pa

    return schema().append(pa.field("fatal", pa.bool_()))


def route_file_ray(
    router_dir: str | Path,
    source: str | Path,
    output: str | Path,
    *,
    k: int = 5,
    batch_size: int = 256,
    domain: str | None = None,
    where: list[str] | None = None,
    workers: int = 2,
    lines_per_task: int = 4096,
    address: str | None = None,
) -> BatchReport:
    """Route every prompt of ``source`` with the saved router ``router_dir`` into the Parquet file
    ``output`` on Ray (``address``: a cluster to join; default: a local one); see the module
    docstring and :func:`hubroute.batch.route_file`."""
    ray = require("ray", "ray")
    pa = require("pyarrow", "hub")
    pq = require("pyarrow.parquet", "hub")
    if k < 1 or batch_size < 1 or workers < 1 or lines_per_task < 1:
        raise HubrouteError("k, batch_size, workers and lines_per_task must be at least 1")
    source, output = Path(source).resolve(), Path(output)
    plan = list(pieces(source, lines_per_task))
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    report = BatchReport(output)
    if not plan:  # an empty log: an empty output, no cluster needed
        pq.write_table(schema().empty_table(), tmp)
        os.replace(tmp, output)
        return report
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "ERROR")  # the driver reports progress itself
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True  # the output keeps the input's order
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        task = task_class(str(Path(router_dir).resolve()), str(source), k, batch_size, domain, where or [])
        with warnings.catch_warnings():  # Ray 2.60 to 2.63 offer no other way to set max_restarts
            warnings.filterwarnings("ignore", "`ray_remote_args_fn` is deprecated")
            ds = ray.data.from_items(plan).map_batches(
                task,
                batch_size=1,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                ray_remote_args_fn=_no_restarts,
            )
        with (
            pq.ParquetWriter(tmp, schema()) as writer,
            progress.task(f"route {source.name} on Ray", len(plan)) as advance,
        ):
            for table in ds.iter_batches(batch_format="pyarrow", batch_size=None):
                fatal = table.column("fatal").to_pylist()
                if any(fatal):
                    row = table.slice(fatal.index(True), 1).to_pylist()[0]
                    raise HubrouteError(row["error"])
                table = table.drop(["fatal"])
                errors = table.column("error").to_pylist()
                ranks = table.column("rank").to_pylist()
                report.rejected += sum(e is not None for e in errors)
                report.routed += sum(r == 1 for r in ranks)
                for line, e in zip(table.column("line").to_pylist(), errors, strict=True):
                    if e is not None and len(report.problems) < 5:
                        report.problems.append(f"{line}: {e}")
                writer.write_table(pa.Table.from_batches(table.to_batches(), schema=schema()))
                advance(1)
        os.replace(tmp, output)
    finally:
        tmp.unlink(missing_ok=True)
        if started:
            ray.shutdown()
    return report
