"""The ``hubroute`` command.

Every error a user can cause is printed as one line, ``error: ...``, with exit code 2 (a
traceback only with ``--verbose``). Third-party progress bars and warnings are silenced unless
``--verbose``; hubroute's own progress bars (with an ETA) go to stderr when it is a terminal.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from hubroute.cli import data, encoders, experiments, hub, route, service  # noqa: F401 (registers the commands)
from hubroute.cli.app import app
from hubroute.cli.common import console, parse_params

__all__ = ["app", "main", "parse_params"]


def _version(value: bool) -> None:
    if value:
        import platform

        import hubroute

        print(f"hubroute {hubroute.__version__} (Python {platform.python_version()})")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show third-party progress bars and warnings, and tracebacks.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Continual model routing over evolving model hubs."""
    if verbose:
        os.environ["HUBROUTE_VERBOSE"] = "1"
        os.environ.pop("TQDM_DISABLE", None)
        os.environ["TRANSFORMERS_VERBOSITY"] = "warning"
    if quiet:
        os.environ["HUBROUTE_QUIET"] = "1"


def explain(e: BaseException) -> str | None:
    """The one-line message for an error a user can cause, or None for a bug."""
    from hubroute.errors import HubrouteError

    if isinstance(e, HubrouteError):
        return str(e)
    names = {f"{c.__module__.split('.')[0]}.{c.__name__}" for c in type(e).__mro__}
    if names & {"httpx.TransportError", "httpx2.TransportError", "requests.ConnectionError"}:
        url = getattr(getattr(e, "request", None), "url", None)
        where = f"{url.scheme}://{url.host}:{url.port}" if url is not None and hasattr(url, "host") else "the server"
        return f"cannot reach {where} ({type(e).__name__}); is it running and reachable?"
    if "huggingface_hub.HfHubHTTPError" in names:
        return f"the Hub API answered: {str(e).splitlines()[0]}"
    if isinstance(e, UnicodeDecodeError):
        return f"input is not UTF-8 text ({e.reason} at byte {e.start})"
    if isinstance(e, (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)):
        return f"{e.filename}: {e.strerror}" if e.filename else str(e)
    if isinstance(e, OSError) and e.errno is not None:
        return f"{e.filename + ': ' if e.filename else ''}{e.strerror}"
    return None


def main() -> None:
    """Console entry point: run the app, turning errors into one line."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    verbose = any(a in ("--verbose", "-v") for a in sys.argv[1:])
    if not verbose:
        os.environ.setdefault("TQDM_DISABLE", "1")
        os.environ.setdefault("HF_HUB_VERBOSITY", "error")
        import warnings

        warnings.filterwarnings("ignore")
    try:
        app(standalone_mode=True)
    except KeyboardInterrupt:
        console.print("interrupted")
        sys.exit(130)
    except Exception as e:
        if verbose:
            console.print_exception()
        message = explain(e)
        if message is None:
            message = f"internal error ({type(e).__name__}: {e}); run again with --verbose for the traceback"
            console.print(f"[red]error:[/red] {' '.join(message.split())}", soft_wrap=True)
            sys.exit(1)
        console.print(f"[red]error:[/red] {' '.join(message.split())}", soft_wrap=True)
        sys.exit(2)
