"""Write the generated reference pages from the code itself: ``docs/cli.md`` (every command,
argument and option of ``hubroute``) and ``docs/settings.md`` (every service setting).

    python docs/gen_reference.py          # rewrite both pages
    python docs/gen_reference.py --check  # exit 1 when a page is out of date (CI)
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

DOCS = Path(__file__).resolve().parent


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _command_section(cmd: Any, path: list[str]) -> list[str]:
    name = " ".join(path)
    lines = [f"## `{name}`", "", _cell(cmd.help or "").replace("\\|", "|"), ""]
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    opts = [p for p in cmd.params if p.param_type_name == "option" and p.name != "help"]
    usage = " ".join([name] + (["[OPTIONS]"] if opts else []) + [a.name.upper() for a in args])
    lines += ["```", usage, "```", ""]
    rows = []
    for p in args:
        rows.append(f"| `{p.name.upper()}` | argument | {_cell(getattr(p, 'help', '') or '')} | |")
    for p in opts:
        names = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts])
        empty = p.default is None or p.default is False or p.default == () or (p.is_flag and not p.default)
        default = "" if empty else f"`{p.default}`"
        if p.required:
            default = "required"
        env = f" (env `{p.envvar}`)" if p.envvar else ""
        rows.append(f"| {names} | option | {_cell(p.help or '')}{env} | {default} |")
    if rows:
        lines += ["| name | kind | what | default |", "| --- | --- | --- | --- |", *rows, ""]
    return lines


def cli_page() -> str:
    """The CLI reference as Markdown."""
    from hubroute.cli import app

    root = typer.main.get_command(app)
    lines = [
        "# CLI reference",
        "",
        "Generated from the `hubroute` command itself (`python docs/gen_reference.py`). Every command",
        "prints errors as one line (`error: ...`, exit code 2); `--verbose` shows third-party progress",
        "bars, warnings and tracebacks, `--quiet` hides hubroute's progress bars.",
        "",
    ]

    def walk(cmd: Any, path: list[str]) -> None:
        if hasattr(cmd, "commands"):
            for sub_name in cmd.commands:
                walk(cmd.commands[sub_name], [*path, sub_name])
        else:
            lines.extend(_command_section(cmd, path))

    walk(root, ["hubroute"])
    return "\n".join(lines).rstrip() + "\n"


def settings_page() -> str:
    """The service settings as Markdown."""
    from dataclasses import MISSING, fields

    from hubroute.service.config import ENV_PREFIX, SETTINGS_HELP, ServiceConfig

    lines = [
        "# Service settings",
        "",
        "Generated from `hubroute.service.config.ServiceConfig` (`python docs/gen_reference.py`).",
        "Set each one in a TOML file given to `hubroute serve --config FILE` (at the top level or under",
        f"`[service]`), with an environment variable `{ENV_PREFIX}<NAME>`, or with the `serve` flag where",
        "there is one; later sources win in that order.",
        "",
        "| setting | environment variable | default | what |",
        "| --- | --- | --- | --- |",
    ]
    for f in fields(ServiceConfig):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        lines.append(
            f"| `{f.name}` | `{ENV_PREFIX}{f.name.upper()}` | `{default}` | {_cell(SETTINGS_HELP.get(f.name, ''))} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    pages = {DOCS / "cli.md": cli_page(), DOCS / "settings.md": settings_page()}
    check = "--check" in sys.argv
    stale = []
    for path, text in pages.items():
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python docs/gen_reference.py", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
