"""``hubroute bench``, ``train`` and ``demo``: routers along a stream, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hubroute.cli.app import app
from hubroute.cli.common import (
    DataOpt,
    MaxExamplesOpt,
    ParamOpt,
    ProtocolOpt,
    command_line,
    console,
    note,
    out,
    parse_params,
    print_table,
    progress_bars,
)
from hubroute.continual.registry import STRATEGIES
from hubroute.errors import HubrouteError
from hubroute.routers.registry import ROUTERS

ROUTER_HELP = f"Router: {', '.join(ROUTERS.names())}, or a class path `package.module:Class`."
STRATEGY_HELP = (
    f"Strategy: {', '.join(STRATEGIES.names())}, a composition such as `replay+ewc`, or a class path "
    "(default: the router's own: naive for embedding, carve for carve)."
)


def build_router(name: str, params: dict[str, Any], encoder: str | None = None) -> Any:
    """A router of kind (or class path) ``name`` from ``params``; ``encoder`` overrides its
    encoder when it takes one."""
    from hubroute.plugins import accepts
    from hubroute.routers import make_router

    if encoder is not None:
        if not accepts(ROUTERS.resolve(name), "encoder"):
            raise HubrouteError(f"router {name!r} takes no encoder")
        params = {**params, "encoder": encoder}
    return make_router(name, **params)


def print_summary(results: list[Any], labels: list[str]) -> None:
    """Final and stream averages with forgetting, as a table."""
    from hubroute.evaluation import tables

    header = ["router", "M final", "F final", "D final", "M stream", "D stream", "D forgetting"]
    keep = [0, 1, 2, 3, 4, 6, 7]
    rows = [[row[i] for i in keep] for row in tables.summary_rows(results, labels)]
    print_table(header, rows, title="top-1 accuracy, % (final: after the last experience; stream: each right after)")


@app.command()
def bench(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for results.json, results.md, plots and the router.")],
    router: Annotated[str, typer.Option("--router", help=ROUTER_HELP)] = "centroid",
    data: DataOpt = None,
    protocol: ProtocolOpt = "public",
    param: ParamOpt = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="Encoder: `fast` (all-MiniLM-L6-v2, the default), `accurate`, a name of `hubroute encoders list`, "
            "`a+b` for a concatenation, or a sentence-transformers name or path."
        ),
    ] = None,
    max_examples: MaxExamplesOpt = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots (needs the `plots` extra).")] = True,
    latency: Annotated[bool, typer.Option(help="Measure routing latency after the stream.")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run a router along a stream of experiences: learn each, evaluate on all so far, write the report and save the
    final router."""
    from hubroute.cli.sources import load_stream
    from hubroute.evaluation.report import write_report
    from hubroute.evaluation.runner import run_stream
    from hubroute.seed import seed_everything

    seed_everything(seed)
    stream = load_stream(data, protocol, max_examples)
    r = build_router(router, parse_params(param), encoder)
    with progress_bars():
        result = run_stream(r, stream, seed=seed, latency=latency, label=router)
    write_report(result, out_dir, command=command_line(), plots=plots, title=router)
    r.save(out_dir / "router")
    print_summary([result], [router])
    out.print(f"results in {out_dir}; router saved to {out_dir / 'router'}")


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the router, its checkpoints and the report.")],
    router: Annotated[
        str, typer.Option("--router", help="A trainable router: embedding, carve, or a class path.")
    ] = "carve",
    strategy: Annotated[str | None, typer.Option("--strategy", help=STRATEGY_HELP)] = None,
    data: DataOpt = None,
    protocol: ProtocolOpt = "public",
    param: ParamOpt = None,
    strategy_param: Annotated[
        list[str] | None,
        typer.Option("--strategy-param", "-s", help="Strategy parameter KEY=VALUE (`ewc.lam=100` for one component)."),
    ] = None,
    max_examples: MaxExamplesOpt = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots (needs the `plots` extra).")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Learn a stream one experience at a time with a trainable router, saving it after each experience
    (`OUT/checkpoints/<t>-<name>`, the latest in `OUT/router`), and write the report. Under `torchrun` the
    processes train data-parallel and rank 0 writes (docs/scale-out.md)."""
    from hubroute.training import distributed

    with distributed.from_env():
        _train(out_dir, router, strategy, data, protocol, param, strategy_param, max_examples, plots, seed)


def _train(
    out_dir: Path,
    router: str,
    strategy: str | None,
    data: Path | None,
    protocol: str,
    param: list[str] | None,
    strategy_param: list[str] | None,
    max_examples: int | None,
    plots: bool,
    seed: int,
) -> None:
    from hubroute.cli.sources import load_stream
    from hubroute.evaluation.report import write_report
    from hubroute.evaluation.runner import run_stream
    from hubroute.routers.embedding import EmbeddingRouter
    from hubroute.seed import seed_everything
    from hubroute.training.distributed import is_writer

    cls = ROUTERS.resolve(router)
    if not issubclass(cls, EmbeddingRouter):
        trainable = [n for n in ROUTERS.names() if issubclass(ROUTERS.resolve(n), EmbeddingRouter)]
        raise HubrouteError(
            f"router {router!r} is not trainable (choose {', '.join(trainable)}); use 'bench' for the others"
        )
    seed_everything(seed)
    stream = load_stream(data, protocol, max_examples)
    params = {"seed": seed, **parse_params(param), "strategy_params": parse_params(strategy_param)}
    if strategy is not None:
        params["strategy"] = strategy
    r = build_router(router, params)
    label = f"{router}/{r.strategy_.name}"

    def checkpoint(t: int, rt: Any) -> None:
        if is_writer():
            rt.save(out_dir / "checkpoints" / f"{t + 1}-{stream[t].name}")
            rt.save(out_dir / "router")

    with progress_bars():
        result = run_stream(r, stream, seed=seed, latency=False, on_experience=checkpoint, label=label)
    if not is_writer():
        return
    write_report(result, out_dir, command=command_line(), plots=plots, title=label)
    print_summary([result], [label])
    out.print(f"results in {out_dir}; router saved to {out_dir / 'router'}")


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the demo's reports and router.")] = Path(
        "hubroute-demo"
    ),
    models: Annotated[int, typer.Option(help="Models in the synthetic hub.")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """A first look on built-in defaults, no download: a SYNTHETIC hub of four experiences; a lexical, a zero-shot
    and the prompt-centroid router learn it side by side; reports, a saved router and one routed prompt."""
    from hubroute.data.synth import SynthConfig, synth_stream
    from hubroute.encoders import load_encoder
    from hubroute.evaluation.report import write_report
    from hubroute.evaluation.runner import run_stream
    from hubroute.routers import make_router
    from hubroute.seed import seed_everything

    seed_everything(seed)
    stream = synth_stream(SynthConfig(models=models, seed=seed))
    console.print(f"[bold]SYNTHETIC hub[/bold]: {models} models over {len(stream)} experiences (not real models)")
    enc = load_encoder("default")
    runs = {
        "bm25 (lexical, cards only)": ("bm25", {}),
        "hybrid (zero-shot, cards only)": ("hybrid", {"encoder": enc}),
        "centroid (cards + labelled prompts, no training)": ("centroid", {"encoder": enc}),
    }
    results, labels = [], []
    with progress_bars():
        for label, (kind, params) in runs.items():
            r = make_router(kind, **params)
            res = run_stream(r, stream, seed=seed, latency=kind == "centroid", label=label)
            write_report(
                res,
                out_dir / kind,
                command=f"hubroute demo --out {out_dir} --models {models} --seed {seed}",
                title=label,
            )
            results.append(res)
            labels.append(label)
    r.save(out_dir / "centroid" / "router")
    print_summary(results, labels)
    example = stream[-1].eval[0]
    hits = r.route(example.prompt, 3)[0]
    out.print(f"\nprompt: {example.prompt}\ngold:   {example.model_id}")
    for i, h in enumerate(hits, 1):
        out.print(f"  {i}. {h.model_id}  (score {h.score:.2f}, {h.domain})")
    out.print(f"\nreports in {out_dir}/<router>/results.md")
    note(f'next: hubroute route --router {out_dir}/centroid/router "your prompt"')
