"""The routing service's HTTP API: a FastAPI app over one :class:`~hubroute.service.runtime.Service`.

``create_app(state_dir, router_dir, config)`` serves the version that ``<state>/CURRENT`` names
(the first start imports ``router_dir`` as ``v0001``). Endpoints, with the scope each needs when
API keys are configured:

- ``POST /v1/route`` (route), ``GET /v1/models`` (route);
- ``POST /v1/feedback`` (feedback; ``Idempotency-Key`` makes a retry store nothing twice);
- ``POST /v1/models``, ``POST /v1/models/{id}/retire|activate``, ``POST /v1/updates``,
  ``GET /v1/updates/{id}``, ``POST /v1/rollback``, ``GET /v1/audit``, ``GET /metrics`` (admin);
- ``GET /health``, ``/health/live`` and ``/health/ready`` (no key).

Every limit of :class:`~hubroute.service.config.ServiceConfig` is enforced here and stated in
the OpenAPI schema (``/openapi.json``, ``/docs``).
"""

import asyncio
import contextlib
import math
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

import hubroute
from hubroute.constraints import Constraints
from hubroute.errors import HubrouteError
from hubroute.hub import ModelCard
from hubroute.routers.base import RouteRequest
from hubroute.service import schemas as S
from hubroute.service.auth import ANONYMOUS, Principal
from hubroute.service.batcher import QueueFull
from hubroute.service.config import ServiceConfig
from hubroute.service.metrics import CONTENT_TYPE
from hubroute.service.middleware import RequestContext
from hubroute.service.runtime import Conflict, NotFound, Service, UnknownDomain
from hubroute.service.store import IdempotencyConflict

MAX_UPDATE_ID = 2**63 - 1
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]", "testserver")


def check_exposure(bind_host: str, keys_enabled: bool, cfg: ServiceConfig) -> None:
    """Refuse (:class:`HubrouteError`) to listen beyond loopback without API keys, unless
    ``allow_remote_without_keys``."""
    if bind_host not in LOOPBACK and not keys_enabled and not cfg.allow_remote_without_keys:
        raise HubrouteError(
            f"refusing to listen on {bind_host} without API keys: create one with `hubroute keys create` "
            "(or give --keys-file), or bind to 127.0.0.1"
        )


_UNION_MISMATCH = {"list_type", "model_type", "dict_type", "model_attributes_type", "string_type"}


def _one_line(errors: list[dict[str, Any]]) -> str:
    """A Pydantic error list as one readable line: ``where: what; where: what``. Errors that
    only say a body did not match the other members of a union (a list where one object was
    sent) are left out when a more specific error exists."""
    specific = [e for e in errors if e.get("type") not in _UNION_MISMATCH]
    errors = specific or errors
    parts: list[str] = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x != "body" and not _is_type_tag(x)]
        where = ".".join(loc) or "body"
        if e.get("type") == "string_unicode":
            msg = "is not valid Unicode text (it holds a lone surrogate)"
        else:
            msg = str(e.get("msg", "invalid")).removeprefix("Value error, ")
        part = f"{where}: {msg}"
        if part not in parts:
            parts.append(part)
    more = f" (and {len(parts) - 5} more)" if len(parts) > 5 else ""
    return "; ".join(parts[:5]) + more


def _is_type_tag(x: Any) -> bool:
    """Whether a location item names a union member (``ModelIn``, ``list[ModelIn]``,
    ``constrained-str``) rather than a field or an index."""
    return isinstance(x, str) and ("[" in x or "-" in x or x[:1].isupper())


def _tracer(enabled: bool) -> Any:
    if not enabled:
        return None
    from hubroute.extras import require

    trace = require("opentelemetry.trace", "otel")
    provider = trace.get_tracer_provider()
    if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        sdk = require("opentelemetry.sdk.trace", "otel")
        export = require("opentelemetry.sdk.trace.export", "otel")
        provider = sdk.TracerProvider()
        provider.add_span_processor(export.BatchSpanProcessor(export.ConsoleSpanExporter()))
        trace.set_tracer_provider(provider)
    return trace.get_tracer("hubroute.service", hubroute.__version__)


def create_app(
    state_dir: str | Path,
    router_dir: str | Path | None = None,
    config: ServiceConfig | None = None,
    *,
    bind_host: str = "127.0.0.1",
) -> FastAPI:
    """The FastAPI application (see the module docstring)."""
    svc = Service(state_dir, router_dir, config)
    cfg = svc.config
    body = S.build(cfg)
    try:
        check_exposure(bind_host, svc.keys.enabled, cfg)
    except HubrouteError:
        svc.stop()
        raise

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        svc.stop()

    app = FastAPI(
        title="hubroute",
        version=hubroute.__version__,
        lifespan=lifespan,
        responses={c: S.ERRORS[c] for c in (400, 413, 422)},  # a bad Host header, body or parameter
        description="Route each prompt to one model of an evolving hub. Limits: "
        + ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items() if k.startswith("max_") or k.startswith("rate")),
    )
    app.state.service = svc
    hosts = cfg.allowed_hosts or sorted({bind_host, *LOOPBACK} - {"::1"})
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app.add_middleware(
        RequestContext,
        metrics=svc.metrics,
        max_body_bytes=cfg.max_body_bytes,
        access_log=cfg.access_log,
        tracer=_tracer(cfg.otel),
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(list(exc.errors()))}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    def scope(name: str) -> Callable[..., Principal]:
        """A dependency: the request's principal, which must hold scope ``name``; counts the
        request against the principal's rate limit."""

        def check(
            request: Request,
            authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
            x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
        ) -> Principal:
            if svc.keys.enabled:
                key = x_api_key or (
                    authorization[7:] if authorization and authorization[:7].lower() == "bearer " else None
                )
                who = svc.keys.authenticate(key)
                if who is None:
                    raise HTTPException(401, "a valid API key is needed", headers={"WWW-Authenticate": "Bearer"})
                if not who.can(name):
                    raise HTTPException(403, f"the key {who.name!r} lacks the scope {name!r}")
            else:
                who = ANONYMOUS
            request.scope.setdefault("state", {})["principal"] = who
            client = who.name if svc.keys.enabled else (request.client.host if request.client else "?")
            wait = svc.limiter.acquire(client)
            if wait > 0:
                svc.metrics.rejected.labels("rate").inc()
                retry = str(max(1, math.ceil(wait)))
                raise HTTPException(
                    429, f"rate limit of {cfg.rate_limit_per_s:g}/s reached", headers={"Retry-After": retry}
                )
            return who

        return check

    Route = Annotated[Principal, Depends(scope("route"))]
    Feedback = Annotated[Principal, Depends(scope("feedback"))]
    Admin = Annotated[Principal, Depends(scope("admin"))]
    errors = S.ERRORS

    # -- health --------------------------------------------------------------------------------
    @app.get("/health", tags=["health"])
    def health() -> dict[str, Any]:
        """Serving version and registry size."""
        reg = svc.router.registry_
        return {
            "status": "draining" if svc.draining else "ok",
            "version": svc.version,
            "router": svc.router.kind,
            "models": len(reg),
            "active": reg.n_active(),
        }

    @app.get("/health/live", tags=["health"])
    def live() -> dict[str, str]:
        """The process answers."""
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"], responses={503: errors[503]})
    def ready() -> JSONResponse:
        """Ready to route: a router is loaded, a probe route succeeds, and the service is not draining;
        says which version and registry revision it serves, and which server answered (host:pid)."""
        problem = "draining" if svc.draining else svc.ready_error
        body_ = {
            "status": "ready" if problem is None else "not ready",
            "version": svc.version,
            "registry_revision": svc.revision,
            "server": f"{socket.gethostname()}:{os.getpid()}",
        }
        if problem is not None:
            body_["reason"] = problem
        return JSONResponse(body_, status_code=200 if problem is None else 503)

    # -- routing -------------------------------------------------------------------------------
    @app.post(
        "/v1/route",
        tags=["routing"],
        response_model=S.RouteResponse,
        responses={c: errors[c] for c in (401, 403, 409, 413, 415, 422, 429, 503, 504)},
    )
    async def route(req: body.RouteBody, who: Route) -> JSONResponse:  # type: ignore[valid-type]
        """Rank the models for one or more prompts (the best first)."""
        prompts = [req.prompts] if isinstance(req.prompts, str) else list(req.prompts)
        if svc.draining:
            raise HTTPException(503, "the service is draining")
        constraints = Constraints.from_dict(req.constraints.model_dump(exclude_none=True)) if req.constraints else None
        try:
            fut = svc.batcher.submit(RouteRequest(prompts, req.k, req.domain, constraints))
        except QueueFull as e:
            svc.metrics.rejected.labels("queue").inc()
            raise HTTPException(503, f"the router is saturated: {e}", headers={"Retry-After": "1"}) from None
        try:  # awaited on the event loop: no worker thread is held while the batcher computes
            hits, version = await asyncio.wait_for(asyncio.wrap_future(fut), cfg.request_timeout_s)
        except TimeoutError:
            fut.cancel()
            svc.metrics.rejected.labels("deadline").inc()
            raise HTTPException(504, f"no answer within {cfg.request_timeout_s:g} s") from None
        except UnknownDomain as e:
            raise HTTPException(422, str(e)) from None
        except HubrouteError as e:  # e.g. a router without models
            raise HTTPException(409, str(e)) from None
        svc.metrics.routed_prompts.inc(len(prompts))
        results = [{"prompt": p, "models": [h.__dict__ for h in hs]} for p, hs in zip(prompts, hits, strict=True)]
        return JSONResponse({"version": version, "results": results})

    # -- models --------------------------------------------------------------------------------
    @app.get(
        "/v1/models", tags=["models"], response_model=S.ModelList, responses={c: errors[c] for c in (401, 403, 422)}
    )
    def list_models(
        who: Route,
        status: Annotated[str | None, Query(pattern="^(active|retired)$")] = None,
        offset: Annotated[int, Query(ge=0, le=MAX_UPDATE_ID)] = 0,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> dict[str, Any]:
        """Registered models, in registration order (``status``: only active or retired ones)."""
        with svc.lock:
            reg = svc.router.registry_
            active = reg.active_mask
            if status is None:
                rows = np.arange(len(reg))
            else:
                rows = np.flatnonzero(active if status == "active" else ~active)
            page = [
                reg.card(int(i)).to_dict() | {"status": "active" if active[i] else "retired"}
                for i in rows[offset : offset + limit]
            ]
        return {"total": len(rows), "models": page}

    cards_body = Annotated[
        body.ModelIn | Annotated[list[body.ModelIn], Field(min_length=1, max_length=cfg.max_cards)],  # type: ignore[valid-type]
        Field(description=f"One card or a list of up to {cfg.max_cards}."),
    ]

    @app.post(
        "/v1/models",
        status_code=201,
        tags=["models"],
        response_model=S.Registered,
        responses={c: errors[c] for c in (401, 403, 409, 413, 415, 422, 429)},
    )
    def add_models(cards: cards_body, who: Admin) -> dict[str, Any]:
        """Register model cards; they are routable as soon as this returns. All or nothing."""
        items = cards if isinstance(cards, list) else [cards]
        new = [ModelCard(m.model_id, m.family or m.model_id, m.domain, m.text, m.created_at, m.extra) for m in items]
        try:
            ids = svc.add_models(new, who.name)
        except Conflict as e:
            raise HTTPException(409, str(e)) from None
        except HubrouteError as e:
            raise HTTPException(422, str(e)) from None
        return {"registered": ids, "version": svc.version}

    ModelIdPath = Annotated[str, PathParam(min_length=1, max_length=512)]

    def _set_status(model_id: str, status: str, who: Principal) -> dict[str, Any]:
        try:
            svc.set_status(model_id, status, who.name)
        except NotFound as e:
            raise HTTPException(404, str(e)) from None
        return {"model_id": model_id, "status": status}

    @app.post(
        "/v1/models/status",
        tags=["models"],
        response_model=S.StatusBatchOut,
        responses={c: errors[c] for c in (401, 403, 404, 413, 415, 422, 429)},
    )
    def set_many(body_: body.StatusBatch, who: Admin) -> dict[str, Any]:  # type: ignore[valid-type]
        """Retire or re-activate many models at once (all or nothing: an unknown id changes nothing)."""
        try:
            changed = svc.set_status_many(body_.model_ids, body_.status, who.name)
        except NotFound as e:
            raise HTTPException(404, str(e)) from None
        return {"status": body_.status, "changed": changed, "requested": len(body_.model_ids)}

    @app.post(
        "/v1/models/{model_id:path}/retire",
        tags=["models"],
        response_model=S.StatusChanged,
        responses={c: errors[c] for c in (401, 403, 404)},
    )
    def retire(model_id: ModelIdPath, who: Admin) -> dict[str, Any]:
        """Stop routing to a model (its row and learned state stay)."""
        return _set_status(model_id, "retired", who)

    @app.post(
        "/v1/models/{model_id:path}/activate",
        tags=["models"],
        response_model=S.StatusChanged,
        responses={c: errors[c] for c in (401, 403, 404)},
    )
    def activate(model_id: ModelIdPath, who: Admin) -> dict[str, Any]:
        """Route to a retired model again."""
        return _set_status(model_id, "active", who)

    # -- feedback ------------------------------------------------------------------------------
    feedback_body = Annotated[body.FeedbackIn | body.FeedbackBatch, Field(description="One item, or {items: [...]}.")]  # type: ignore[valid-type]

    @app.post(
        "/v1/feedback",
        status_code=201,
        tags=["feedback"],
        response_model=S.FeedbackStored,
        responses={
            200: {"model": S.FeedbackStored, "description": "A replayed Idempotency-Key: stored before, nothing new."},
            **{c: errors[c] for c in (401, 403, 404, 413, 415, 422, 429)},
        },
    )
    def feedback(
        items_: feedback_body,
        who: Feedback,
        idempotency_key: Annotated[str | None, Header(max_length=200, pattern=r"^[\x21-\x7e]+$")] = None,
    ) -> JSONResponse:
        """Store labelled prompts (the model that should have answered) for the next update."""
        items = items_.items if isinstance(items_, body.FeedbackBatch) else [items_]
        with svc.lock:
            reg = svc.router.registry_
            for i, it in enumerate(items):
                if it.model_id not in reg:
                    raise HTTPException(404, f"item {i}: unknown model id {it.model_id!r}")
        rows = [(it.prompt, it.model_id, it.domain) for it in items]
        key = (who.name, idempotency_key) if idempotency_key else None
        try:
            ids, replayed = svc.store.add_feedback(rows, idempotency=key)
        except IdempotencyConflict as e:
            raise HTTPException(422, str(e)) from None
        out = {
            "stored": len(ids),
            "ids": ids,
            "pending": svc.store.feedback_count(pending_only=True),
            "replayed": replayed,
        }
        return JSONResponse(out, status_code=200 if replayed else 201)

    # -- updates -------------------------------------------------------------------------------
    @app.post(
        "/v1/updates",
        status_code=202,
        tags=["updates"],
        response_model=S.UpdateStarted,
        responses={c: errors[c] for c in (401, 403, 409)},
    )
    def start_update(who: Admin) -> dict[str, Any]:
        """Learn the feedback gathered since the last update, in a separate process."""
        try:
            uid = svc.start_update(who.name)
        except Conflict as e:
            raise HTTPException(409, str(e)) from None
        return {"id": uid, "status": "queued", "from_version": svc.version}

    @app.get(
        "/v1/updates/{update_id}",
        tags=["updates"],
        response_model=S.UpdateOut,
        responses={c: errors[c] for c in (401, 403, 404, 422)},
    )
    def get_update(update_id: Annotated[int, PathParam(ge=1, le=MAX_UPDATE_ID)], who: Admin) -> dict[str, Any]:
        """An update's status, stage and (once finished) result."""
        u = svc.store.update(update_id)
        if u is None:
            raise HTTPException(404, f"unknown update {update_id}")
        return u

    @app.post(
        "/v1/rollback", tags=["updates"], response_model=S.VersionOut, responses={c: errors[c] for c in (401, 403, 409)}
    )
    def rollback(who: Admin) -> dict[str, Any]:
        """Serve the version promoted before the current one; running updates are cancelled."""
        try:
            version = svc.rollback(who.name)
        except HubrouteError as e:
            raise HTTPException(409, str(e)) from None
        return {"version": version}

    @app.get("/v1/audit", tags=["admin"], responses={c: errors[c] for c in (401, 403, 422)})
    def audit(
        who: Admin,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=MAX_UPDATE_ID)] = 0,
    ) -> dict[str, Any]:
        """Admin actions, newest first: who, what, on what, when."""
        return {"entries": svc.store.audit_log(limit, offset)}

    @app.get("/metrics", tags=["admin"], response_class=Response, responses={c: errors[c] for c in (401, 403)})
    def metrics(who: Admin) -> Response:
        """Prometheus metrics."""
        svc.refresh_gauges()
        return Response(svc.metrics.render(), media_type=CONTENT_TYPE)

    return app
