"""The routing service: a FastAPI app over one live router, its state folder and store.

``create_app(state_dir, router_dir)`` serves the version that ``<state>/CURRENT`` names (the first
start imports ``router_dir`` as ``v0001``). Routing and registry changes share one lock, so a
request never sees a half-added model; a finished update is loaded beside the serving router and
swapped in under the lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, Field

import hubroute
from hubroute.encoders import CachedEncoder
from hubroute.errors import HubrouteError
from hubroute.hub import ModelCard
from hubroute.routers import load_router
from hubroute.routers.base import RouteHit, Router, RouteRequest
from hubroute.service.batcher import RouteBatcher
from hubroute.service.metrics import Metrics
from hubroute.service.store import RUNNING, Store
from hubroute.service.updater import STORE_FILE, sync_registry
from hubroute.service.versions import Versions


class UnknownDomain(HubrouteError):
    """A route request named a domain no registered model has."""


@dataclass
class ServiceConfig:
    """Limits and update policy of the service."""

    max_batch: int = 256
    max_prompt_chars: int = 4000
    max_k: int = 100
    margin: float = 1.0
    holdout_every: int = 5
    update_threads: int = 1
    inference: str = "onnx"  # encoder runtime while serving: hubroute.inference.INFERENCE_PRECISIONS


class RouteBody(BaseModel):
    prompts: str | list[str] = Field(description="One prompt or a list of prompts.")
    k: int = Field(5, description="Models to return per prompt.")
    domain: str | None = Field(None, description="Only route to models of this domain.")


class ModelIn(BaseModel):
    model_id: str
    domain: str
    family: str | None = None
    text: str = ""
    created_at: int | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class FeedbackIn(BaseModel):
    prompt: str
    model_id: str
    domain: str | None = None


class FeedbackBatch(BaseModel):
    items: list[FeedbackIn]


class Service:
    """Everything one running service holds: router, version, store, locks, update worker."""

    def __init__(
        self, state_dir: str | Path, router_dir: str | Path | None = None, config: ServiceConfig | None = None
    ):
        self.state_dir = Path(state_dir)
        self.config = config or ServiceConfig()
        self.store = Store(self.state_dir / STORE_FILE)
        self.versions = Versions(self.state_dir)
        self.metrics = Metrics()
        self.lock = threading.RLock()
        self.update_lock = threading.Lock()
        self.worker: subprocess.Popen | None = None
        if self.config.inference.startswith("onnx"):
            # the encoder runs in ONNX Runtime on every core; torch only projects and scores, and
            # with one thread its pool leaves the cores to ONNX Runtime's (see hubroute.onnx_runtime)
            torch.set_num_threads(1)
        if self.versions.current is None:
            if router_dir is None:
                raise HubrouteError(f"{self.state_dir} holds no router yet: start once with --router DIR")
            self.versions.promote(self.versions.import_dir(router_dir))
        self._recover_updates()
        self.version = self.versions.current
        self.router: Router = self._load(self.version)
        self.previous: tuple[str, Router] | None = None  # the version served before, still loaded
        self.batcher = RouteBatcher(self._route_group, self.config.max_batch)

    def _route_group(self, requests: list[RouteRequest]) -> list[tuple[list[list[RouteHit]], str] | Exception]:
        """Answer requests that arrived together with one scoring pass (batcher thread); a request
        naming an unknown domain gets an :class:`UnknownDomain` error instead."""
        with self.lock:
            version = self.version
            known = set(self.router.registry_.domains()) if any(r.domain for r in requests) else set()
            valid = [r for r in requests if r.domain is None or r.domain in known]
            answers = iter(self.router.route_many(valid)) if valid else iter(())
        return [
            (next(answers), version)
            if r.domain is None or r.domain in known
            else UnknownDomain(f"unknown domain {r.domain!r}")
            for r in requests
        ]

    def _load(self, version: str) -> Router:
        """Load a version for serving: registry synced with the store, and embedding caches off
        (a service sees each prompt once; caching them would only grow the cache file)."""
        router = load_router(self.versions.path(version))
        sync_registry(router, self.store)
        for enc in router.encoders():
            if isinstance(enc, CachedEncoder):
                enc.enabled = False
        return router.prepare_inference(self.config.inference, self.versions.inference_dir(version))

    def _recover_updates(self) -> None:
        """Updates left running by a killed server: stop their worker, mark them interrupted."""
        for u in self.store.running_updates():
            if u["pid"]:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(u["pid"], signal.SIGKILL)
            self.store.set_update(u["id"], status="interrupted", error="the server stopped during this update")

    def swap(self, version: str) -> None:
        """Load ``version`` beside the serving router, then serve it. The router it replaces is
        kept in memory, so a rollback to it is immediate."""
        previous = self.previous
        router = previous[1] if previous is not None and previous[0] == version else self._load(version)
        with self.lock:
            sync_registry(router, self.store)  # models registered (or retired) while it was not serving
            self.previous = (self.version, self.router)
            self.router, self.version = router, version

    # -- updates -------------------------------------------------------------------------
    def start_update(self) -> int:
        """Queue an update and start its worker process; 409 while one runs."""
        with self.update_lock:
            if self.worker is not None and self.worker.poll() is None:
                raise HTTPException(409, "an update is already running")
            uid = self.store.create_update(self.version)
            cmd = [
                sys.executable,
                "-m",
                "hubroute.service.updater",
                str(self.state_dir),
                str(uid),
                "--margin",
                str(self.config.margin),
                "--holdout-every",
                str(self.config.holdout_every),
                "--threads",
                str(self.config.update_threads),
                "--inference",
                self.config.inference,
            ]
            log = self.state_dir / "updates" / f"{uid}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            with log.open("wb") as err:
                self.worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
            threading.Thread(target=self._watch, args=(uid, self.worker, log), daemon=True).start()
            return uid

    def _watch(self, uid: int, proc: subprocess.Popen, log: Path, poll_s: float = 0.5) -> None:
        """Follow one update: swap as soon as it is promoted (without waiting for the worker
        to exit), and mark it failed when the worker dies before finishing."""
        swapped = False
        while True:
            done = proc.poll() is not None
            u = self.store.update(uid) or {}
            if not swapped and u.get("status") == "promoted" and u.get("to_version"):
                swapped = True
                try:
                    self.swap(u["to_version"])
                except Exception as e:  # keep serving the old router; say why on GET /v1/updates/{id}
                    self.store.set_update(uid, error=f"promoted but not loaded: {type(e).__name__}: {e}")
            if done:
                break
            time.sleep(poll_s)
        if u.get("status") in RUNNING:
            lines = log.read_text(errors="replace").strip().splitlines() if log.is_file() else []
            self.store.set_update(
                uid, status="failed", error=f"worker exited with {proc.returncode}: {' '.join(lines[-1:])}"
            )

    def stop(self) -> None:
        """Stop the batcher and a running worker (server shutdown)."""
        self.batcher.close()
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()


def _validate_prompts(prompts: str | list[str], cfg: ServiceConfig) -> list[str]:
    items = [prompts] if isinstance(prompts, str) else list(prompts)
    if not items:
        raise HTTPException(422, "prompts must hold at least one prompt")
    if len(items) > cfg.max_batch:
        raise HTTPException(422, f"at most {cfg.max_batch} prompts per request, got {len(items)}")
    out = []
    for i, p in enumerate(items):
        p = p.strip()
        if not p:
            raise HTTPException(422, f"prompt {i} is empty")
        if len(p) > cfg.max_prompt_chars:
            raise HTTPException(422, f"prompt {i} has {len(p)} characters; the limit is {cfg.max_prompt_chars}")
        out.append(p)
    return out


def create_app(
    state_dir: str | Path, router_dir: str | Path | None = None, config: ServiceConfig | None = None
) -> FastAPI:
    """The FastAPI application (see the module docstring)."""
    svc = Service(state_dir, router_dir, config)
    cfg = svc.config

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        svc.stop()

    app = FastAPI(title="hubroute", version=hubroute.__version__, lifespan=lifespan)
    app.state.service = svc

    @app.middleware("http")
    async def count(request: Request, call_next):
        response = await call_next(request)
        route = request.scope.get("route")
        svc.metrics.request(request.method, getattr(route, "path", "unmatched"), response.status_code)
        return response

    @app.get("/health")
    def health() -> dict[str, Any]:
        reg = svc.router.registry_
        return {
            "status": "ok",
            "version": svc.version,
            "router": svc.router.kind,
            "models": len(reg),
            "active": reg.n_active(),
        }

    @app.post("/v1/route")
    async def route(req: RouteBody) -> JSONResponse:
        prompts = _validate_prompts(req.prompts, cfg)
        if not 1 <= req.k <= cfg.max_k:
            raise HTTPException(422, f"k must lie between 1 and {cfg.max_k}, got {req.k}")
        t0 = time.perf_counter()
        try:  # awaited on the event loop: no worker thread is held while the batcher computes
            hits, version = await asyncio.wrap_future(svc.batcher.submit(RouteRequest(prompts, req.k, req.domain)))
        except UnknownDomain as e:
            raise HTTPException(422, str(e)) from None
        except HubrouteError as e:  # e.g. a router without models
            raise HTTPException(409, str(e)) from None
        svc.metrics.route(time.perf_counter() - t0, len(prompts))
        results = [{"prompt": p, "models": [h.__dict__ for h in hs]} for p, hs in zip(prompts, hits, strict=True)]
        return JSONResponse({"version": version, "results": results})

    @app.get("/v1/models")
    def list_models(status: str | None = None, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        if status not in (None, "active", "retired"):
            raise HTTPException(422, "status must be 'active' or 'retired'")
        if offset < 0 or not 1 <= limit <= 10_000:
            raise HTTPException(422, "need offset >= 0 and 1 <= limit <= 10000")
        with svc.lock:
            reg = svc.router.registry_
            rows = [(c, reg.status(c.model_id)) for c in reg]
        rows = [(c, s) for c, s in rows if status is None or s == status]
        page = [c.to_dict() | {"status": s} for c, s in rows[offset : offset + limit]]
        return {"total": len(rows), "models": page}

    @app.post("/v1/models", status_code=201)
    def add_models(body: ModelIn | list[ModelIn]) -> dict[str, Any]:
        items = body if isinstance(body, list) else [body]
        if not items:
            raise HTTPException(422, "no model cards given")
        cards = []
        for m in items:
            if not m.model_id.strip() or not m.domain.strip():
                raise HTTPException(422, "model_id and domain must not be empty")
            cards.append(
                ModelCard(
                    m.model_id.strip(), m.family or m.model_id.strip(), m.domain.strip(), m.text, m.created_at, m.extra
                )
            )
        ids = [c.model_id for c in cards]
        if len(set(ids)) != len(ids):
            raise HTTPException(409, "the same model id appears twice in the request")
        with svc.lock:
            taken = [i for i in ids if i in svc.router.registry_]
            if taken:
                raise HTTPException(409, f"model id(s) already registered: {', '.join(taken[:5])}")
            for c in cards:
                if not svc.store.add_model(c):
                    raise HTTPException(409, f"model id already registered: {c.model_id}")
            svc.router.add_models(cards)
        return {"registered": ids, "version": svc.version}

    def _set_status(model_id: str, status: str) -> dict[str, Any]:
        with svc.lock:
            reg = svc.router.registry_
            if model_id not in reg:
                raise HTTPException(404, f"unknown model id {model_id!r}")
            svc.store.set_status(model_id, status, reg.card(model_id))
            (svc.router.retire if status == "retired" else svc.router.activate)([model_id])
        return {"model_id": model_id, "status": status}

    @app.post("/v1/models/{model_id:path}/retire")
    def retire(model_id: str) -> dict[str, Any]:
        return _set_status(model_id, "retired")

    @app.post("/v1/models/{model_id:path}/activate")
    def activate(model_id: str) -> dict[str, Any]:
        return _set_status(model_id, "active")

    @app.post("/v1/feedback", status_code=201)
    def feedback(body: FeedbackIn | FeedbackBatch) -> dict[str, Any]:
        items = body.items if isinstance(body, FeedbackBatch) else [body]
        if not items:
            raise HTTPException(422, "no feedback items given")
        rows = []
        with svc.lock:
            reg = svc.router.registry_
            for i, it in enumerate(items):
                prompt = _validate_prompts(it.prompt, cfg)[0]
                if it.model_id not in reg:
                    raise HTTPException(404, f"item {i}: unknown model id {it.model_id!r}")
                rows.append((prompt, it.model_id, it.domain))
        ids = svc.store.add_feedback(rows)
        return {"stored": len(ids), "ids": ids, "pending": svc.store.feedback_count(pending_only=True)}

    @app.post("/v1/updates", status_code=202)
    def start_update() -> dict[str, Any]:
        uid = svc.start_update()
        return {"id": uid, "status": "queued", "from_version": svc.version}

    @app.get("/v1/updates/{update_id}")
    def get_update(update_id: int) -> dict[str, Any]:
        u = svc.store.update(update_id)
        if u is None:
            raise HTTPException(404, f"unknown update {update_id}")
        return u

    @app.post("/v1/rollback")
    def rollback() -> dict[str, Any]:
        try:
            with svc.lock:
                version = svc.versions.rollback()
        except HubrouteError as e:
            raise HTTPException(409, str(e)) from None
        svc.swap(version)
        return {"version": version}

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics() -> Response:
        reg = svc.router.registry_
        gauges = {
            "registry_models": len(reg),
            "registry_active_models": reg.n_active(),
            "feedback_rows": svc.store.feedback_count(),
            "feedback_pending_rows": svc.store.feedback_count(pending_only=True),
        }
        text = svc.metrics.render(gauges, {"version": svc.version or "", "kind": svc.router.kind})
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    return app
