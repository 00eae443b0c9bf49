"""``hubroute route``: rank models for prompts from arguments, a file or stdin."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from hubroute.cli.app import app
from hubroute.cli.common import DataOpt, console, note, out, print_table, progress_bars
from hubroute.errors import DataError, HubrouteError

# the same limit as the service's (hubroute.service.config.ServiceConfig defaults)
MAX_K = 100


def read_prompts(args: list[str], input_file: Path | None) -> list[str]:
    """Prompts from the arguments, or one per line of ``input_file`` (``-``: stdin); a JSON lines
    file gives each line's ``prompt``. Empty or over-long prompts are an error."""
    prompts = list(args)
    if input_file is not None:
        if prompts:
            raise HubrouteError("give prompts as arguments or with --input, not both")
        if str(input_file) == "-":
            lines = list(enumerate(sys.stdin.read().splitlines(), 1))
            where = "stdin"
        else:
            from hubroute.data.lines import read_lines

            lines = list(read_lines(input_file))
            where = str(input_file)
        for lineno, line in lines:
            text = line.strip()
            if not text:
                continue
            if text.startswith("{"):
                try:
                    text = json.loads(text)["prompt"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise DataError("a JSON line needs a 'prompt' string", where, lineno) from None
                if not isinstance(text, str):
                    raise DataError("'prompt' must be a string", where, lineno)
            prompts.append(text)
    if not prompts:
        raise HubrouteError("no prompt given: pass one or more as arguments, or --input FILE (- for stdin)")
    from hubroute.batch import prompt_problem

    for i, p in enumerate(prompts):
        problem = prompt_problem(p)
        if problem:
            raise HubrouteError(f"prompt {i + 1} {problem}")
    return [p.strip() for p in prompts]


def default_router(data: Path | None, encoder: str = "default") -> Any:
    """The router to use without ``--router``: the prompt-centroid router fitted on the data's
    labelled prompts when it has some (the most accurate router that needs no training run),
    else the zero-shot hybrid over the cards; both embed text with ``encoder``."""
    from hubroute.cli.sources import load_stream
    from hubroute.routers import CentroidRouter, HybridRouter

    stream = load_stream(data)
    labelled = sum(len(e.train) for e in stream)
    if labelled:
        router = CentroidRouter(encoder)
        with progress_bars():
            for exp in stream:
                router.fit(exp)
        note(
            f"routing with the prompt-centroid router: {len(router.registry_)} models, {labelled} labelled prompts "
            "(save a router with `hubroute bench` or `train` to skip this step)"
        )
        return router
    router = HybridRouter(encoder=encoder)
    with progress_bars():
        router.add_models(stream.all_cards())
    note(f"routing with the zero-shot hybrid router over {len(router.registry_)} model cards (no labelled prompts)")
    return router


@app.command()
def route(
    prompt: Annotated[list[str] | None, typer.Argument(help="One or more prompts.", show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", help=f"Models to return per prompt (1-{MAX_K}).")] = 5,
    router_dir: Annotated[Path | None, typer.Option("--router", help="A saved router folder.")] = None,
    data: DataOpt = None,
    input_file: Annotated[
        Path | None,
        typer.Option(
            "--input", "-i", help="Read prompts from a file, one a line, or JSON lines with `prompt`; `-` reads stdin."
        ),
    ] = None,
    domain: Annotated[str | None, typer.Option(help="Only route to models of this domain.")] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            "--where",
            help="Only models whose cards meet this: `license=mit,apache-2.0`, `language=en`, `pipeline_tag=...`, "
            "`domain=...`, `params<=7e9`; repeatable.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    as_jsonl: Annotated[bool, typer.Option("--jsonl", help="Print one JSON line per prompt.")] = False,
    encoder: Annotated[
        str,
        typer.Option(
            help="Encoder of the router built without `--router`: `fast` (all-MiniLM-L6-v2), `accurate`, "
            "or any name of `hubroute encoders list`."
        ),
    ] = "default",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the routes to this Parquet file instead of printing them: the --input file (text, JSON lines "
            "or Parquet with a `prompt` column) is streamed in batches, of any size; a prompt that cannot be routed "
            "gets an `error` row and the others go on.",
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts per routing call with --output.")] = 256,
    engine: Annotated[
        str, typer.Option(help="With --output: local (this process) or ray (Ray Data workers; needs --router).")
    ] = "local",
    workers: Annotated[int, typer.Option(help="--engine ray: router workers (actors).")] = 2,
    ray_address: Annotated[
        str | None, typer.Option(help="--engine ray: join this Ray cluster (default: start a local one).")
    ] = None,
) -> None:
    """Rank the models for prompts with a saved router; without `--router`, with a router built from a data folder
    (the prompt-centroid router when it has labelled prompts, else the zero-shot hybrid)."""
    from hubroute.routers import load_router

    if not 1 <= k <= MAX_K:
        raise HubrouteError(f"-k must lie between 1 and {MAX_K}, got {k}")
    if engine not in ("local", "ray"):
        raise HubrouteError(f"unknown engine {engine!r}: choose local or ray")
    if output is not None:
        ray = (workers, ray_address) if engine == "ray" else None
        _route_to_file(prompt, input_file, output, k, batch_size, router_dir, data, encoder, domain, where, ray)
        return
    if engine != "local":
        raise HubrouteError("--engine ray routes a file: give --input FILE and --output OUT.parquet")
    prompts = read_prompts(prompt or [], input_file)
    if router_dir is not None and encoder != "default":
        raise HubrouteError("--encoder applies to the router built without --router; a saved router keeps its own")
    r = load_router(router_dir) if router_dir is not None else default_router(data, encoder)
    if domain is not None and domain not in set(r.registry_.domains()):
        raise HubrouteError(f"unknown domain {domain!r}")
    from hubroute.constraints import Constraints

    constraints = Constraints.parse(where or [])
    results = []
    for i in range(0, len(prompts), 256):
        results += r.route(prompts[i : i + 256], k, domain=domain, constraints=constraints)
    records = [{"prompt": p, "models": [h.__dict__ for h in hits]} for p, hits in zip(prompts, results, strict=True)]
    if as_json:
        print(json.dumps(records, ensure_ascii=False))
    elif as_jsonl:
        for rec in records:
            print(json.dumps(rec, ensure_ascii=False))
    elif out.is_terminal:
        for rec in records:
            rows = [
                [i, m["model_id"], f"{m['score']:.3f}", m["domain"], m["family"]]
                for i, m in enumerate(rec["models"], 1)
            ]
            print_table(["#", "model", "score", "domain", "family"], rows, title=rec["prompt"])
    else:  # a pipe: one tab-separated line per answer
        print("prompt\trank\tmodel_id\tscore\tdomain\tfamily")
        for rec in records:
            for i, m in enumerate(rec["models"], 1):
                print(
                    f"{_one_line(rec['prompt'])}\t{i}\t{m['model_id']}\t{m['score']:.4f}\t{m['domain']}\t{m['family']}"
                )
    if not records:
        console.print("no prompts")


def _route_to_file(
    prompt: list[str] | None,
    input_file: Path | None,
    output: Path,
    k: int,
    batch_size: int,
    router_dir: Path | None,
    data: Path | None,
    encoder: str,
    domain: str | None,
    where: list[str] | None,
    ray: tuple[int, str | None] | None = None,
) -> None:
    """``route --input FILE --output OUT.parquet``: stream the file through the router (``ray``:
    workers and cluster address, to spread it over Ray instead)."""
    from hubroute.batch import route_file
    from hubroute.constraints import Constraints
    from hubroute.routers import load_router

    if prompt or input_file is None or str(input_file) == "-":
        raise HubrouteError("--output routes a file: give --input FILE (text, JSON lines or Parquet), no prompts")
    if output.suffix.lower() not in (".parquet", ".pq"):
        raise HubrouteError(f"--output writes Parquet: name the file .parquet, got {output.name!r}")
    if batch_size < 1:
        raise HubrouteError(f"--batch-size must be at least 1, got {batch_size}")
    if not input_file.is_file():
        raise DataError("file not found", input_file)
    if ray is not None and router_dir is None:
        raise HubrouteError("--engine ray needs --router: its workers load a saved router")
    r = load_router(router_dir) if router_dir is not None else default_router(data, encoder)
    if domain is not None and domain not in set(r.registry_.domains()):
        raise HubrouteError(f"unknown domain {domain!r}")
    constraints = Constraints.parse(where or [])
    with progress_bars():
        if ray is None:
            report = route_file(
                r, input_file, output, k=k, batch_size=batch_size, domain=domain, constraints=constraints
            )
        else:
            from hubroute.batch_ray import route_file_ray

            del r  # the workers load their own
            report = route_file_ray(
                router_dir,
                input_file,
                output,
                k=k,
                batch_size=batch_size,
                domain=domain,
                where=where,
                workers=ray[0],
                address=ray[1],
            )
    note(f"{report.routed} prompts routed to {output}" + (f", {report.rejected} rejected" if report.rejected else ""))
    for p in report.problems:
        note(f"  line {p}")


def _one_line(text: str) -> str:
    """``text`` with tabs and line breaks as spaces (one field of a tab-separated line)."""
    return " ".join(text.split())
