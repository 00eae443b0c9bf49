"""``hubroute data``: fetch CMRBench, write a synthetic hub, count what a data folder holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hubroute.cli.app import data_app
from hubroute.cli.common import DataOpt, ProtocolOpt, note, out, print_table, progress_bars
from hubroute.errors import HubrouteError


@data_app.command("fetch")
def data_fetch(
    dataset: Annotated[str, typer.Argument(help="Dataset to download (only `cmrbench`).")] = "cmrbench",
    to: Annotated[Path | None, typer.Option("--to", help="Destination folder (default: the --data default).")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="A mirror of the release's data/ folder.")] = None,
    protocol: ProtocolOpt = "public",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 30.0,
) -> None:
    """Download the public CMRBench release (resumes partial files and checks their sizes)."""
    from hubroute.data.cmrbench import default_data_dir
    from hubroute.data.fetch import fetch_cmrbench

    if dataset != "cmrbench":
        raise HubrouteError(f"unknown dataset {dataset!r}; only 'cmrbench' can be fetched")
    dest = to or default_data_dir()
    seen: set[str] = set()

    def progress(rel: str, got: int, total: int | None) -> None:
        if rel not in seen:
            seen.add(rel)
            note(f"downloading {rel}")

    fetch_cmrbench(dest, base_url=base_url, protocol=protocol, timeout=timeout, progress=progress)
    out.print(f"CMRBench ({protocol}) is in {dest}")


@data_app.command("synth")
def data_synth(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write (CMRBench layout).")],
    models: Annotated[int, typer.Option(help="Number of models.")] = 400,
    experiences: Annotated[int, typer.Option(help="Number of experiences.")] = 4,
    train_per_model: Annotated[int, typer.Option(help="Training prompts per labelled model.")] = 2,
    eval_per_model: Annotated[int, typer.Option(help="Eval prompts per labelled model.")] = 1,
    recurring: Annotated[float, typer.Option(help="Re-queried earlier models, as a share of the new ones.")] = 0.2,
    family_size: Annotated[int, typer.Option(help="Models per family.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a SYNTHETIC evolving hub (not real models) for demos, tests and scale runs."""
    from hubroute.data.synth import SynthConfig, write_synthetic

    cfg = SynthConfig(models, experiences, train_per_model, eval_per_model, recurring, family_size, seed)
    with progress_bars():
        write_synthetic(cfg, out_dir, progress=note)
    out.print(f"SYNTHETIC hub of {models} models over {experiences} experiences written to {out_dir}")


@data_app.command("stats")
def data_stats(
    data: DataOpt = None,
    protocol: ProtocolOpt = "public",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-experience counts of a data folder, and any label conflicts."""
    from hubroute.cli.sources import load_stream

    stream = load_stream(data, protocol)
    rows = [e.summary() for e in stream]
    cards = stream.all_cards()
    total = {
        "experiences": len(stream),
        "models": len(cards),
        "domains": len({c.domain for c in cards}),
        "families": len({c.family for c in cards}),
    }
    if as_json:
        print(json.dumps({"stream": stream.name, "experiences": rows, "total": total, "notes": stream.notes}))
        return
    cols = ["index", "name", "new_models", "models", "train", "eval", "domains"]
    print_table(cols, [[r[c] for c in cols] for r in rows], title=f"{stream.name} ({protocol} protocol)")
    out.print(", ".join(f"{k}: {v}" for k, v in total.items()))
    for n in stream.notes:
        note(f"note: {n}")
