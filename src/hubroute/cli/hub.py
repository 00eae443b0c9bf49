"""``hubroute hub``: your own hub as a hub folder (cards, prompts, experiences), and
``hubroute update``: learn one more experience on a saved router."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hubroute.cli.app import app, hub_app
from hubroute.cli.common import command_line, console, note, out, print_table, progress_bars
from hubroute.errors import HubrouteError

HubOpt = Annotated[Path, typer.Option("--into", help="The hub folder (created on the first import or sync).")]


def _report(report: Any, as_json: bool, what: str) -> None:
    """Print an import report: counts, then each problem on its own line (stderr)."""
    if as_json:
        print(json.dumps(report.to_dict(), ensure_ascii=False))
        return
    out.print(
        f"{what}: {report.added} added, {report.unchanged} unchanged, {report.retired} retired, "
        f"{report.skipped} skipped, {len(report.problems)} problem(s)"
    )
    for p in report.problems[:50]:
        console.print(f"[yellow]problem[/yellow] {p}", soft_wrap=True, highlight=False)
    if len(report.problems) > 50:
        console.print(f"... and {len(report.problems) - 50} more (--json lists them all)")
    for n in report.notes[:20]:
        note(n)
    if len(report.notes) > 20:
        note(f"... and {len(report.notes) - 20} more notes (--json lists them all)")


@hub_app.command("import")
def hub_import(
    source: Annotated[
        Path,
        typer.Argument(help="A folder of Hugging Face model cards (`<org>/<name>/README.md`), or a table of cards."),
    ],
    into: HubOpt,
    name: Annotated[str | None, typer.Option(help="The hub's name, when the import creates it.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Import model cards into a hub folder: a folder of Hugging Face cards, or a table (JSONL, CSV or Parquet with
    `model_id`, `domain` and optional `family`, `text`, `created_at`, `license`, `params`; other columns go to `extra`).
    Bad cards are reported with their file and line and never keep the others out."""
    from hubroute.hubs.cards import card_folder, card_table
    from hubroute.hubs.folder import HubFolder

    hub = HubFolder(into, create=True, name=name)
    items = card_folder(source) if source.is_dir() else card_table(source)
    with progress_bars():
        report = hub.add_cards(items)
    _report(report, as_json, f"imported into {into}")


@hub_app.command("sync")
def hub_sync(
    into: HubOpt,
    source: Annotated[str, typer.Option("--source", help="Where from (only `huggingface`).")] = "huggingface",
    author: Annotated[str | None, typer.Option(help="Only this organisation's or user's models.")] = None,
    filter_: Annotated[
        list[str] | None,
        typer.Option("--filter", help="`pipeline_tag=TAG`, or a tag the models must have; repeatable."),
    ] = None,
    since: Annotated[str | None, typer.Option(help="Ignore models created before this date (YYYY-MM-DD).")] = None,
    endpoint: Annotated[str | None, typer.Option(help="Hub API endpoint (default: $HF_ENDPOINT or the Hub).")] = None,
    readme: Annotated[bool, typer.Option(help="Download each new model's README for its card text.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Bring a hub folder up to date with the Hugging Face Hub: store the models created since the last sync (its
    watermark), retire those that disappeared or became gated. An interrupted sync resumes from the watermark."""
    from hubroute.hubs.folder import HubFolder
    from hubroute.hubs.sync import Query, sync_huggingface

    if source != "huggingface":
        raise HubrouteError(f"unknown sync source {source!r}; only 'huggingface' is supported")
    tags, pipeline = [], None
    for f in filter_ or []:
        key, sep, value = f.partition("=")
        if sep and key == "pipeline_tag":
            pipeline = value
        elif sep:
            raise HubrouteError(f"--filter takes pipeline_tag=TAG or a tag, got {f!r}")
        else:
            tags.append(f)
    start = None
    if since:
        try:
            start = dt.datetime.fromisoformat(since).replace(tzinfo=dt.UTC)
        except ValueError:
            raise HubrouteError(f"--since expects a date YYYY-MM-DD, got {since!r}") from None
    hub = HubFolder(into, create=True)
    from hubroute import progress

    with progress_bars(), progress.task("sync: store new cards") as advance:
        done = [0]

        def chunk(stored: int, total: int) -> None:
            advance(stored - done[0])
            done[0] = stored

        report = sync_huggingface(
            hub, Query(author, tuple(tags), pipeline), since=start, endpoint=endpoint, readme=readme, on_chunk=chunk
        )
    _report(report, as_json, f"synced {into}")


@hub_app.command("examples")
def hub_examples(
    action: Annotated[str, typer.Argument(help="`add`.")],
    log: Annotated[Path, typer.Argument(help="A prompt log: JSONL, CSV or Parquet with `prompt` and `model_id`.")],
    into: HubOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Add labelled prompts from a log (`prompt`, `model_id`, optional `domain`, `timestamp`, `outcome`): exact
    duplicates are dropped, negative outcomes skipped, prompts for unknown models reported, and a fixed share held
    out for evaluation."""
    from hubroute.hubs.cards import table_rows
    from hubroute.hubs.folder import HubFolder

    if action != "add":
        raise HubrouteError(f"unknown action {action!r}; use `hubroute hub examples add LOG --into HUB`")
    hub = HubFolder(into)
    report = hub.add_examples(table_rows(log, required=("prompt", "model_id")))
    _report(report, as_json, f"examples into {into}")


@hub_app.command("experience")
def hub_experience(
    into: HubOpt,
    name: Annotated[str | None, typer.Option(help="A name for the experience (default: experience-N).")] = None,
) -> None:
    """Close the current experience: the cards added, the examples gathered and the models retired since the last
    one. A hub folder is a stream: give it to `bench`, `train` or `update` with `--data`."""
    from hubroute.hubs.folder import HubFolder

    folder = HubFolder(into).close(name)
    meta = json.loads((folder / "experience.json").read_text(encoding="utf-8"))
    out.print(
        f"closed {folder.name}: {meta['new_models']} new model(s), {meta['train']} training and {meta['eval']} "
        f"held-out example(s), {len(meta['retired'])} retired"
    )


@hub_app.command("status")
def hub_status(
    into: HubOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """What a hub folder holds: models, closed experiences, what is pending, sync watermarks."""
    from hubroute.hubs.folder import HubFolder

    status = HubFolder(into).status()
    if as_json:
        print(json.dumps(status))
        return
    rows = [[k, v] for k, v in status.items() if k != "sources"]
    rows += [[f"sync {k}", json.dumps(v.get("query"))] for k, v in status["sources"].items()]
    print_table(["", "value"], rows, title=str(into))


@app.command()
def update(
    router_dir: Annotated[Path, typer.Option("--router", help="The saved router to start from (never overwritten).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Where to save the updated router and its report.")],
    data: Annotated[Path, typer.Option("--data", help="A hub folder.")],
    experience: Annotated[
        str, typer.Option("--experience", help="Which closed experience: its folder name, its number, or `last`.")
    ] = "last",
    margin: Annotated[float, typer.Option(help="Refuse when held-out M-Acc falls by more points.")] = 1.0,
    reference_margin: Annotated[
        float, typer.Option(help="Refuse when M-Acc on the router's reference sample falls by more points.")
    ] = 5.0,
    min_held_out: Annotated[int, typer.Option(help="Fewest held-out examples to accept the update.")] = 10,
    force: Annotated[
        bool, typer.Option("--force", help="Save the updated router even when the checks refuse it.")
    ] = False,
) -> None:
    """Learn one more experience on a saved router, with its strategy's state (replay buffer, anchors, Fisher
    information, adapters), check the result as the service's updates do (held-out and reference accuracy) and save
    it with a report. The same code path as the service's feedback updates. Under `torchrun` the processes train
    data-parallel and rank 0 writes (docs/scale-out.md)."""
    from hubroute.training import distributed

    with distributed.from_env():
        _update(router_dir, out_dir, data, experience, margin, reference_margin, min_held_out, force)


def _update(
    router_dir: Path,
    out_dir: Path,
    data: Path,
    experience: str,
    margin: float,
    reference_margin: float,
    min_held_out: int,
    force: bool,
) -> None:
    from hubroute.hubs.folder import HubFolder
    from hubroute.routers import load_router
    from hubroute.training.distributed import is_writer
    from hubroute.update import GatePolicy, learn_and_check

    if out_dir.resolve() == router_dir.resolve():
        raise HubrouteError("--out must differ from --router: the router you start from is never overwritten")
    hub = HubFolder(data)
    dirs = hub.experience_dirs()
    if not dirs:
        raise HubrouteError(f"{data}: no closed experience yet (`hubroute hub experience` closes one)")
    if experience == "last":
        folder = dirs[-1]
    else:
        match = [
            d for d in dirs if d.name == experience or d.name.split("-", 1)[0].lstrip("0") == experience.lstrip("0")
        ]
        if not match:
            raise HubrouteError(f"no experience {experience!r} in {data}; it has {', '.join(d.name for d in dirs)}")
        folder = match[0]
    exp = hub.experience(folder)
    earlier = [e for d in dirs if d != folder and d.name < folder.name for e in hub.experience(d).eval]
    router = load_router(router_dir)
    policy = GatePolicy(margin=margin, reference_margin=reference_margin, min_held_out=min_held_out)
    with progress_bars():
        report = learn_and_check(router, exp, policy, also={"earlier_held_out": earlier})
    if not is_writer():  # the other ranks hold the same router and verdict
        if not (report.accepted or force):
            raise HubrouteError(f"update refused ({report.reason})")
        return
    if report.accepted or force:
        router.save(out_dir / "router")
    out_dir.mkdir(parents=True, exist_ok=True)
    record = report.to_dict() | {"experience": folder.name, "from": str(router_dir), "command": command_line()}
    (out_dir / "update.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    rows = [
        [f"{part.replace('_', ' ')} {lv}", report.before.get(part, {}).get(lv), report.after.get(part, {}).get(lv)]
        for part in ("held_out", "earlier_held_out", "reference")
        for lv in ("M", "D")
        if report.before.get(part)
    ]
    print_table(["top-1 accuracy %", "before", "after"], rows)
    verdict = "accepted" if report.accepted else "refused"
    out.print(f"{verdict}: {report.reason}")
    if report.accepted or force:
        out.print(f"updated router saved to {out_dir / 'router'}; report in {out_dir / 'update.json'}")
    else:
        raise HubrouteError(
            f"update refused ({report.reason}); nothing saved but {out_dir / 'update.json'} (--force saves it)"
        )
