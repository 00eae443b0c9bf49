"""The ``hubroute`` command: data, bench, route and demo.

Errors that hubroute raises on purpose are printed as one line (``error: ...``) with exit code 2.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from hubroute.errors import HubrouteError

app = typer.Typer(
    help="Continual model routing over evolving model hubs.", no_args_is_help=True, pretty_exceptions_enable=False
)
data_app = typer.Typer(help="Get, generate and inspect routing data.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)
out = Console()

DataOpt = Annotated[
    Path | None,
    typer.Option("--data", help="CMRBench-layout folder (default: $HUBROUTE_CMRBENCH or ~/.cache/hubroute/cmrbench)."),
]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="public (train on val) or full (train on train+val).")]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Router parameter KEY=VALUE (JSON value), repeatable.")
]


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["w_bm25=0.5", "fusion=rrf"]`` -> ``{"w_bm25": 0.5, "fusion": "rrf"}``."""
    params: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise HubrouteError(f"--param expects KEY=VALUE, got {item!r}")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def _progress(msg: str) -> None:
    console.print(f"[dim]· {msg}[/dim]")


def _print_summary(results: list[Any], labels: list[str]) -> None:
    """Final/stream averages and D forgetting of each result, as a terminal table."""
    table = Table(title="top-1 accuracy, % (final = after the last experience; stream = diagonal)")
    for col in ("router", "M final", "F final", "D final", "M stream", "D stream", "D forgetting"):
        table.add_column(col, justify="left" if col == "router" else "right")
    for label, res in zip(labels, results, strict=True):
        s = res.summary()
        table.add_row(
            label,
            *(f"{s[lv]['final_average']:.1f}" for lv in ("M", "F", "D")),
            f"{s['M']['stream_average']:.1f}",
            f"{s['D']['stream_average']:.1f}",
            f"{s['D']['forgetting']:.1f}",
        )
    out.print(table)


# -- data ---------------------------------------------------------------------------------
@data_app.command("fetch")
def data_fetch(
    dataset: Annotated[str, typer.Argument(help="Dataset to download (only 'cmrbench').")] = "cmrbench",
    to: Annotated[Path | None, typer.Option("--to", help="Destination folder (default: the --data default).")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="Mirror of the release's data/ folder.")] = None,
    protocol: ProtocolOpt = "public",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the server.")] = 30.0,
) -> None:
    """Download the public CMRBench release (resumes partial files, checks sizes)."""
    from hubroute.data.cmrbench import default_data_dir
    from hubroute.data.fetch import fetch_cmrbench

    if dataset != "cmrbench":
        raise HubrouteError(f"unknown dataset {dataset!r}; only 'cmrbench' can be fetched")
    dest = to or default_data_dir()
    last: dict[str, int] = {}

    def progress(rel: str, got: int, total: int | None) -> None:
        if last.get(rel) is None:
            console.print(f"[dim]· {rel}[/dim]")
        last[rel] = got

    fetch_cmrbench(dest, base_url=base_url, protocol=protocol, timeout=timeout, progress=progress)
    out.print(f"CMRBench ({protocol}) is in {dest}")


@data_app.command("synth")
def data_synth(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write (CMRBench layout).")],
    models: Annotated[int, typer.Option(help="Number of models.")] = 400,
    experiences: Annotated[int, typer.Option(help="Number of experiences.")] = 4,
    train_per_model: Annotated[int, typer.Option(help="Training prompts per labelled model.")] = 2,
    eval_per_model: Annotated[int, typer.Option(help="Eval prompts per labelled model.")] = 1,
    recurring: Annotated[float, typer.Option(help="Re-queried earlier models, share of new ones.")] = 0.2,
    family_size: Annotated[int, typer.Option(help="Models per family.")] = 4,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write a SYNTHETIC evolving hub (not real models) for demos, tests and scale runs."""
    from hubroute.data.synth import SynthConfig, write_synthetic

    cfg = SynthConfig(models, experiences, train_per_model, eval_per_model, recurring, family_size, seed)
    write_synthetic(cfg, out_dir, progress=_progress)
    out.print(f"SYNTHETIC hub of {models} models over {experiences} experiences written to {out_dir}")


@data_app.command("stats")
def data_stats(
    data: DataOpt = None,
    protocol: ProtocolOpt = "public",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Per-experience counts of a CMRBench-layout folder, and any label conflicts."""
    from hubroute.data.cmrbench import load_cmrbench

    stream = load_cmrbench(data, protocol)
    rows = [e.summary() for e in stream]
    total = {
        "experiences": len(stream),
        "models": len(stream.all_cards()),
        "domains": len({c.domain for c in stream.all_cards()}),
        "families": len({c.family for c in stream.all_cards()}),
    }
    if as_json:
        out.print_json(json.dumps({"stream": stream.name, "experiences": rows, "total": total, "notes": stream.notes}))
        return
    table = Table(title=f"{stream.name} ({protocol} protocol)")
    for col in ("index", "name", "new_models", "models", "train", "eval", "domains"):
        table.add_column(col, justify="right" if col != "name" else "left")
    for r in rows:
        table.add_row(*(str(r[c]) for c in ("index", "name", "new_models", "models", "train", "eval", "domains")))
    out.print(table)
    out.print(", ".join(f"{k}: {v}" for k, v in total.items()))
    for n in stream.notes:
        out.print(f"[yellow]note[/yellow] {n}")


# -- bench and route -----------------------------------------------------------------------
def _build_router(name: str, params: dict[str, Any], encoder: str | None):
    from hubroute.plugins import accepts
    from hubroute.routers import ROUTERS, make_router

    if encoder is not None:
        if not accepts(ROUTERS.resolve(name), "encoder"):
            raise HubrouteError(f"router {name!r} takes no encoder")
        params = {**params, "encoder": encoder}
    return make_router(name, **params)


@app.command()
def bench(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for results.json, results.md, plots and the router.")],
    router: Annotated[str, typer.Option("--router", help="Router kind: bm25, dense, hybrid, centroid.")] = "hybrid",
    data: DataOpt = None,
    protocol: ProtocolOpt = "public",
    param: ParamOpt = None,
    encoder: Annotated[str | None, typer.Option(help="Encoder name or path (default: all-MiniLM-L6-v2).")] = None,
    max_examples: Annotated[int | None, typer.Option(help="Keep the first N records of each split.")] = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
    latency: Annotated[bool, typer.Option(help="Measure routing latency after the stream.")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Run a router along the stream, write its report and save the final router."""
    from hubroute.data.cmrbench import load_cmrbench
    from hubroute.evaluation.report import write_report
    from hubroute.evaluation.runner import run_stream
    from hubroute.seed import seed_everything

    seed_everything(seed)
    stream = load_cmrbench(data, protocol, max_examples=max_examples)
    r = _build_router(router, parse_params(param), encoder)
    result = run_stream(r, stream, seed=seed, latency=latency, progress=_progress)
    command = "hubroute " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_report(result, out_dir, command=command, plots=plots)
    r.save(out_dir / "router")
    _print_summary([result], [router])
    out.print(f"results in {out_dir}; router saved to {out_dir / 'router'}")


@app.command()
def train(
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the router, its checkpoints and the report.")],
    router: Annotated[str, typer.Option("--router", help="Trainable router kind: embedding or carve.")] = "embedding",
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy",
            help="naive, replay, ewc, lwf, merge, cumulative, joint or carve (default: naive for embedding, "
            "carve for carve).",
        ),
    ] = None,
    data: DataOpt = None,
    protocol: ProtocolOpt = "public",
    param: ParamOpt = None,
    strategy_param: Annotated[
        list[str] | None, typer.Option("--strategy-param", "-s", help="Strategy parameter KEY=VALUE, repeatable.")
    ] = None,
    max_examples: Annotated[int | None, typer.Option(help="Keep the first N records of each split.")] = None,
    plots: Annotated[bool, typer.Option(help="Write PNG plots.")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Learn the stream one experience at a time; save the router after each experience
    (``OUT/checkpoints/<t>-<name>``, latest in ``OUT/router``) and write the report."""
    from hubroute.data.cmrbench import load_cmrbench
    from hubroute.evaluation.report import write_report
    from hubroute.evaluation.runner import run_stream
    from hubroute.routers import ROUTERS, EmbeddingRouter, make_router
    from hubroute.seed import seed_everything

    if router not in ROUTERS or not issubclass(ROUTERS[router], EmbeddingRouter):
        trainable = ", ".join(k for k, v in ROUTERS.items() if issubclass(v, EmbeddingRouter))
        raise HubrouteError(
            f"router {router!r} is not trainable (choose {trainable}); "
            "use 'bench' for the zero-shot and centroid routers"
        )
    seed_everything(seed)
    stream = load_cmrbench(data, protocol, max_examples=max_examples)
    params = {
        "seed": seed,
        **parse_params(param),
        "strategy_params": parse_params(strategy_param),
    }
    if strategy is not None:
        params["strategy"] = strategy
    r = make_router(router, **params)
    strategy = r.strategy_.name

    def checkpoint(t: int, rt: Any) -> None:
        rt.save(out_dir / "checkpoints" / f"{t + 1}-{stream[t].name}")
        rt.save(out_dir / "router")
        _progress(f"saved router after {stream[t].name}")

    result = run_stream(r, stream, seed=seed, latency=False, progress=_progress, on_experience=checkpoint)
    command = "hubroute " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_report(result, out_dir, command=command, plots=plots)
    _print_summary([result], [f"{router}/{strategy}"])
    out.print(f"results in {out_dir}; router saved to {out_dir / 'router'}")


@app.command()
def route(
    prompt: Annotated[list[str], typer.Argument(help="One or more prompts.")],
    k: Annotated[int, typer.Option("-k", help="Models to return per prompt.")] = 5,
    router_dir: Annotated[Path | None, typer.Option("--router", help="A saved router folder.")] = None,
    data: DataOpt = None,
    kind: Annotated[
        str, typer.Option("--kind", help="Zero-shot router to build when no --router is given.")
    ] = "hybrid",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Rank models for prompts with a saved router, or a zero-shot router over a dataset's cards."""
    from hubroute.routers import load_router, make_router

    if k < 1:
        raise HubrouteError("-k must be at least 1")
    if router_dir is not None:
        r = load_router(router_dir)
    else:
        from hubroute.data.cmrbench import load_cmrbench

        stream = load_cmrbench(data)
        r = make_router(kind)
        r.add_models(stream.all_cards())
    results = r.route(prompt, k)
    if as_json:
        out.print_json(
            json.dumps(
                [{"prompt": p, "models": [h.__dict__ for h in hits]} for p, hits in zip(prompt, results, strict=True)]
            )
        )
        return
    for p, hits in zip(prompt, results, strict=True):
        table = Table(title=p, title_justify="left")
        for col in ("#", "model", "score", "domain", "family"):
            table.add_column(col)
        for i, h in enumerate(hits, 1):
            table.add_row(str(i), h.model_id, f"{h.score:.3f}", h.domain, h.family)
        out.print(table)


@app.command()
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Where to write the demo's report.")] = Path("hubroute-demo"),
    models: Annotated[int, typer.Option(help="Models in the synthetic hub.")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """End-to-end run on built-in defaults: a SYNTHETIC hub, BM25 / dense / hybrid routers
    along its stream, a report, and one routed prompt. Needs no download."""
    from hubroute.data.synth import SynthConfig, synth_stream
    from hubroute.encoders import load_encoder
    from hubroute.evaluation.report import write_report
    from hubroute.evaluation.runner import run_stream
    from hubroute.routers import make_router
    from hubroute.seed import seed_everything

    seed_everything(seed)
    stream = synth_stream(SynthConfig(models=models, seed=seed))
    console.print(f"[bold]SYNTHETIC hub[/bold]: {models} models, {len(stream)} experiences (not real models)")
    enc = load_encoder("default")
    results, labels = [], []
    for kind in ("bm25", "dense", "hybrid"):
        r = make_router(kind) if kind == "bm25" else make_router(kind, encoder=enc)
        res = run_stream(r, stream, seed=seed, latency=kind == "hybrid", progress=_progress)
        write_report(res, out_dir / kind, command=f"hubroute demo --out {out_dir} --models {models} --seed {seed}")
        results.append(res)
        labels.append(kind)
    r.save(out_dir / "hybrid" / "router")
    _print_summary(results, labels)
    example = stream[-1].eval[0]
    hits = r.route(example.prompt, 3)[0]
    out.print(f"\nprompt: {example.prompt}\ngold:   {example.model_id}")
    for i, h in enumerate(hits, 1):
        out.print(f"  {i}. {h.model_id}  ({h.score:.2f}, {h.domain})")
    out.print(f"\nreports in {out_dir}/<router>/results.md")
    out.print(f'try: hubroute route --router {out_dir}/hybrid/router "your prompt"')


# -- service --------------------------------------------------------------------------------
models_app = typer.Typer(help="Manage the models of a running service.", no_args_is_help=True)
app.add_typer(models_app, name="models")
UrlOpt = Annotated[str, typer.Option("--url", help="Base URL of a running hubroute service.")]


@app.command()
def serve(
    state: Annotated[Path, typer.Option("--state", help="State folder: router versions, SQLite store.")],
    router_dir: Annotated[Path | None, typer.Option("--router", help="Saved router to serve on first start.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    config_file: Annotated[
        Path | None, typer.Option("--config", help="TOML file of service settings (see docs/service.md).")
    ] = None,
    max_prompts: Annotated[int | None, typer.Option(help="Most prompts per route request.")] = None,
    margin: Annotated[
        float | None, typer.Option(help="Promote an update unless held-out M-Acc drops by more points.")
    ] = None,
    min_held_out: Annotated[int | None, typer.Option(help="Fewest held-out feedback rows to promote.")] = None,
    update_threads: Annotated[int | None, typer.Option(help="CPU threads of the update worker.")] = None,
    inference: Annotated[
        str | None,
        typer.Option(
            help="Encoder runtime while serving: fp32, bf16 (weights), int8 (dynamic), "
            "onnx (ONNX Runtime, fp32: the same routes as fp32, faster; the default) or onnx-int8 (fastest)."
        ),
    ] = None,
    keys_file: Annotated[Path | None, typer.Option(help="JSON file of API keys, besides those in the store.")] = None,
    rate_limit: Annotated[float | None, typer.Option(help="Requests per second per API key (0: none).")] = None,
    recover: Annotated[
        bool, typer.Option("--recover", help="Serve the newest intact version if the current one is damaged.")
    ] = False,
) -> None:
    """Serve a router over HTTP (OpenAPI at /docs) and keep it current from feedback."""
    from hubroute.service.app import create_app
    from hubroute.service.config import ServiceConfig
    from hubroute.service.server import serve as run_server

    cfg = ServiceConfig.load(
        config_file,
        max_prompts=max_prompts,
        margin=margin,
        min_held_out=min_held_out,
        update_threads=update_threads,
        inference=inference,
        keys_file=str(keys_file) if keys_file else None,
        rate_limit_per_s=rate_limit,
        recover=recover or None,
    )
    application = create_app(state, router_dir, cfg, bind_host=host)
    console.print(f"serving {application.state.service.version} on http://{host}:{port}")
    run_server(application, host, port)


keys_app = typer.Typer(help="API keys of a service (stored hashed in its state folder).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
StateOpt = Annotated[Path, typer.Option("--state", help="The service's state folder.")]


def _store(state: Path):
    from hubroute.service.store import Store
    from hubroute.service.updater import STORE_FILE

    if not state.is_dir():
        raise HubrouteError(f"{state}: no such state folder")
    return Store(state / STORE_FILE)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key's holder (letters, digits, - _ . @).")],
    state: StateOpt,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="route, feedback or admin; repeatable (default: route).")
    ] = None,
) -> None:
    """Create a key and print it once (only its hash is kept)."""
    from hubroute.service.auth import create_key

    key = create_key(_store(state), name, scope or ["route"])
    out.print(key, soft_wrap=True)
    console.print(f"key {name!r} with scopes {', '.join(scope or ['route'])}: store it now, it is not shown again")


@keys_app.command("list")
def keys_list(state: StateOpt, as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """List the keys (ids, names, scopes, created, revoked)."""
    rows = [
        {k: r[k] for k in ("key_id", "name", "scopes", "created_at", "revoked_at")} for r in _store(state).api_keys()
    ]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table()
    for col in ("key_id", "name", "scopes", "created", "revoked"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            r["key_id"], r["name"], ",".join(r["scopes"]), _when(r["created_at"]), _when(r["revoked_at"]) or "-"
        )
    out.print(table)


def _when(t: float | None) -> str:
    import datetime

    return "" if t is None else datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id or name.")],
    state: StateOpt,
) -> None:
    """Revoke a key; a running service refuses it from its next request on."""
    if not _store(state).revoke_key(key):
        raise HubrouteError(f"no live key {key!r}")
    out.print(f"revoked {key}")


def _client(url: str):
    import httpx

    return httpx.Client(base_url=url, timeout=60)


def _check(resp: Any) -> Any:
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text
        raise HubrouteError(f"server answered {resp.status_code}: {detail}")
    return resp.json()


@models_app.command("add")
def models_add(
    url: UrlOpt = "http://127.0.0.1:8000",
    file: Annotated[Path | None, typer.Option("--file", help="JSON lines of cards (model_id, domain, text…).")] = None,
    model_id: Annotated[str | None, typer.Option("--model-id")] = None,
    domain: Annotated[str | None, typer.Option("--domain")] = None,
    family: Annotated[str | None, typer.Option("--family")] = None,
    text: Annotated[str, typer.Option("--text", help="Card text.")] = "",
) -> None:
    """Register model cards with a running service (routable at once)."""
    if file is not None:
        cards = []
        for i, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    cards.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise HubrouteError(f"{file}:{i}: invalid JSON ({e.msg})") from None
    elif model_id and domain:
        cards = [{"model_id": model_id, "domain": domain, "family": family, "text": text}]
    else:
        raise HubrouteError("give --file, or --model-id and --domain")
    with _client(url) as c:
        res = _check(c.post("/v1/models", json=cards))
    out.print(f"registered {len(res['registered'])} model(s)")


@models_app.command("retire")
def models_retire(model_id: str, url: UrlOpt = "http://127.0.0.1:8000") -> None:
    """Stop routing to a model (its row stays; ``activate`` undoes it)."""
    with _client(url) as c:
        _check(c.post(f"/v1/models/{model_id}/retire"))
    out.print(f"retired {model_id}")


@models_app.command("activate")
def models_activate(model_id: str, url: UrlOpt = "http://127.0.0.1:8000") -> None:
    """Route to a retired model again."""
    with _client(url) as c:
        _check(c.post(f"/v1/models/{model_id}/activate"))
    out.print(f"activated {model_id}")


@models_app.command("list")
def models_list(
    url: UrlOpt = "http://127.0.0.1:8000",
    status: Annotated[str | None, typer.Option(help="active or retired")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
) -> None:
    """List the models a running service knows."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    with _client(url) as c:
        res = _check(c.get("/v1/models", params=params))
    table = Table(title=f"{res['total']} model(s)")
    for col in ("model_id", "domain", "family", "status"):
        table.add_column(col)
    for m in res["models"]:
        table.add_row(m["model_id"], m["domain"], m["family"], m["status"])
    out.print(table)


def main() -> None:
    """Console entry point: run the app, turning hubroute errors into one line."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        app()
    except HubrouteError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
