"""``hubroute serve``, ``models`` and ``keys``: run the HTTP service and manage it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hubroute.cli.app import app, keys_app, models_app
from hubroute.cli.common import console, out, print_table
from hubroute.errors import HubrouteError

UrlOpt = Annotated[
    str, typer.Option("--url", envvar="HUBROUTE_URL", help="Base URL of a running service ($HUBROUTE_URL).")
]
KeyOpt = Annotated[
    str | None, typer.Option("--key", envvar="HUBROUTE_API_KEY", help="API key for the service ($HUBROUTE_API_KEY).")
]
StateOpt = Annotated[Path, typer.Option("--state", help="The service's state folder.")]
StoreOpt = Annotated[
    str | None,
    typer.Option(
        "--store",
        envvar="HUBROUTE_STORE",
        help="postgresql:// URL of a shared store ($HUBROUTE_STORE); default: the SQLite file in the state folder.",
    ),
]


@app.command()
def serve(
    state: Annotated[Path, typer.Option("--state", help="State folder: router versions, SQLite store.")],
    store: StoreOpt = None,
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
    engine: Annotated[
        str, typer.Option(help="uvicorn (one process, the default) or ray (Ray Serve replicas; the `ray` extra).")
    ] = "uvicorn",
    replicas: Annotated[int, typer.Option(help="--engine ray: replicas to run (the least, with --max-replicas).")] = 1,
    max_replicas: Annotated[
        int | None, typer.Option(help="--engine ray: autoscale up to this many replicas by requests in flight.")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="--engine ray: join this Ray cluster (default: start a local one).")
    ] = None,
) -> None:
    """Serve a router over HTTP (OpenAPI at /docs) and keep it current from feedback; settings in
    docs/service.md."""
    from hubroute.extras import require

    require("fastapi", "serve")
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
        store=store,
    )
    if engine == "ray":
        from hubroute.service import ray_engine

        ray_engine.run(
            state,
            router_dir,
            cfg,
            host=host,
            port=port,
            replicas=replicas,
            max_replicas=max_replicas,
            address=ray_address,
            on_ready=lambda v: console.print(
                f"serving {v} on http://{host}:{port} with Ray Serve ({replicas} replicas)"
            ),
        )
        return
    if engine != "uvicorn":
        raise HubrouteError(f"unknown engine {engine!r}: choose uvicorn or ray")
    if replicas != 1 or max_replicas is not None or ray_address is not None:
        raise HubrouteError("--replicas, --max-replicas and --ray-address need --engine ray")
    application = create_app(state, router_dir, cfg, bind_host=host)
    console.print(f"serving {application.state.service.version} on http://{host}:{port}")
    run_server(application, host, port)


def _store(state: Path, url: str | None):
    from hubroute.service.config import ServiceConfig
    from hubroute.service.store import Store
    from hubroute.service.updater import store_location

    if url is None and not state.is_dir():
        raise HubrouteError(f"{state}: no such state folder")
    return Store(store_location(state, ServiceConfig(store=url).store))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Argument(help="A name for the key's holder (letters, digits, - _ . @).")],
    state: StateOpt,
    store: StoreOpt = None,
    scope: Annotated[
        list[str] | None, typer.Option("--scope", help="route, feedback or admin; repeatable (default: route).")
    ] = None,
) -> None:
    """Create a key and print it once (only its hash is kept)."""
    from hubroute.service.auth import create_key

    key = create_key(_store(state, store), name, scope or ["route"])
    print(key)
    console.print(f"key {name!r} with scopes {', '.join(scope or ['route'])}: store it now, it is not shown again")


@keys_app.command("list")
def keys_list(
    state: StateOpt,
    store: StoreOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the keys (ids, names, scopes, created, revoked)."""
    rows = [
        {k: r[k] for k in ("key_id", "name", "scopes", "created_at", "revoked_at")}
        for r in _store(state, store).api_keys()
    ]
    if as_json:
        print(json.dumps(rows))
        return
    table = [
        [r["key_id"], r["name"], ",".join(r["scopes"]), _when(r["created_at"]), _when(r["revoked_at"]) or "-"]
        for r in rows
    ]
    print_table(["key_id", "name", "scopes", "created", "revoked"], table)


def _when(t: float | None) -> str:
    import datetime

    return "" if t is None else datetime.datetime.fromtimestamp(t, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's id or name.")],
    state: StateOpt,
    store: StoreOpt = None,
) -> None:
    """Revoke a key; a running service refuses it from its next request on."""
    if not _store(state, store).revoke_key(key):
        raise HubrouteError(f"no live key {key!r}")
    out.print(f"revoked {key}")


def _client(url: str, key: str | None) -> Any:
    import httpx

    headers = {"X-API-Key": key} if key else {}
    return httpx.Client(base_url=url, timeout=60, headers=headers)


def _check(resp: Any) -> Any:
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text.strip()[:200]
        raise HubrouteError(f"the service answered {resp.status_code}: {detail}")
    return resp.json()


def read_cards(file: Path) -> list[dict[str, Any]]:
    """Cards from a JSON lines file (one object a line); problems name the file and line."""
    from hubroute.data.lines import read_json_objects
    from hubroute.errors import DataError

    cards = []
    for lineno, card in read_json_objects(file):
        if not card.get("model_id") or not card.get("domain"):
            raise DataError("each line is an object with at least 'model_id' and 'domain'", file, lineno)
        cards.append(card)
    if not cards:
        raise DataError("no cards in the file", file)
    return cards


@models_app.command("add")
def models_add(
    url: UrlOpt = "http://127.0.0.1:8000",
    key: KeyOpt = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="JSON lines of cards: model_id, domain, and optional family, text, created_at, extra."
        ),
    ] = None,
    model_id: Annotated[str | None, typer.Option("--model-id", help="The model's id, e.g. `org/name`.")] = None,
    domain: Annotated[
        str | None,
        typer.Option("--domain", help="Its domain, 'Category Task' (e.g. `Audio Automatic Speech Recognition`)."),
    ] = None,
    family: Annotated[str | None, typer.Option("--family", help="Its family (default: the model id).")] = None,
    text: Annotated[str, typer.Option("--text", help="Card text: what the model does, for whom, how well.")] = "",
) -> None:
    """Register model cards with a running service; they are routable as soon as this returns."""
    if file is not None:
        cards = read_cards(file)
    elif model_id and domain:
        cards = [{"model_id": model_id, "domain": domain, "family": family, "text": text}]
    else:
        raise HubrouteError("give --file, or --model-id and --domain")
    registered = []
    with _client(url, key) as c:
        for i in range(0, len(cards), 1000):
            registered += _check(c.post("/v1/models", json=cards[i : i + 1000]))["registered"]
    out.print(f"registered {len(registered)} model(s)")


def read_ids(file: Path) -> list[str]:
    """Model ids from a text file, one a line (blank lines and ``#`` comments skipped)."""
    from hubroute.data.lines import read_lines

    return [line.strip() for _, line in read_lines(file) if not line.strip().startswith("#")]


def set_status(ids: list[str], file: Path | None, status: str, url: str, key: str | None) -> int:
    """Retire or re-activate ``ids`` and those listed in ``file``, 10,000 a request (the
    service's limit); returns how many changed."""
    wanted = list(dict.fromkeys([*ids, *(read_ids(file) if file is not None else [])]))
    if not wanted:
        raise HubrouteError("give model ids, or --file with one a line")
    changed = 0
    with _client(url, key) as c:
        for i in range(0, len(wanted), 10_000):
            body = {"model_ids": wanted[i : i + 10_000], "status": status}
            changed += _check(c.post("/v1/models/status", json=body))["changed"]
    return changed


IdsArg = Annotated[list[str] | None, typer.Argument(help="Model ids.", show_default=False)]
IdsFileOpt = Annotated[Path | None, typer.Option("--file", help="A text file of model ids, one a line.")]


@models_app.command("retire")
def models_retire(
    model_ids: IdsArg = None,
    file: IdsFileOpt = None,
    url: UrlOpt = "http://127.0.0.1:8000",
    key: KeyOpt = None,
) -> None:
    """Stop routing to models (their rows stay; `activate` undoes it). All or nothing per 10,000:
    an unknown id changes none of them."""
    out.print(f"retired {set_status(model_ids or [], file, 'retired', url, key)} model(s)")


@models_app.command("activate")
def models_activate(
    model_ids: IdsArg = None,
    file: IdsFileOpt = None,
    url: UrlOpt = "http://127.0.0.1:8000",
    key: KeyOpt = None,
) -> None:
    """Route to retired models again (all or nothing per 10,000, as `retire`)."""
    out.print(f"activated {set_status(model_ids or [], file, 'active', url, key)} model(s)")


@models_app.command("list")
def models_list(
    url: UrlOpt = "http://127.0.0.1:8000",
    key: KeyOpt = None,
    status: Annotated[str | None, typer.Option(help="Only `active` or `retired` models.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show (1-10000).")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the models a running service knows."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    with _client(url, key) as c:
        res = _check(c.get("/v1/models", params=params))
    if as_json:
        print(json.dumps(res, ensure_ascii=False))
        return
    rows = [[m["model_id"], m["domain"], m["family"], m["status"]] for m in res["models"]]
    print_table(["model_id", "domain", "family", "status"], rows, title=f"{res['total']} model(s)")
