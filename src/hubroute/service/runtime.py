"""Everything one running service holds: the serving router and its version, the store, the
request batcher, the update worker, keys, limits and metrics.

Routing and registry changes share one lock, so a request never sees a half-added model; adding
models encodes their cards before taking the lock, so routing never waits on the encoder for
them. A finished update is loaded beside the serving router and swapped in under the lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from hubroute.encoders import cached_encoders, caching
from hubroute.errors import HubrouteError, RegistryError
from hubroute.hub import ModelCard
from hubroute.routers import load_router
from hubroute.routers.base import RouteHit, Router, RouteRequest
from hubroute.service.auth import KeyRing
from hubroute.service.batcher import RouteBatcher
from hubroute.service.config import ServiceConfig
from hubroute.service.limits import RateLimiter
from hubroute.service.metrics import Metrics
from hubroute.service.store import RUNNING, Store, UpdateRunning
from hubroute.service.updater import (
    STORE_ENV,
    WORKER_MODULE,
    apply_registry,
    is_worker,
    store_location,
    sync_registry,
)
from hubroute.service.versions import Versions

log = logging.getLogger("hubroute.service")
PROBE_PROMPT = "a readiness probe: route this prompt"


class UnknownDomain(HubrouteError):
    """A route request named a domain no registered model has."""


class Conflict(HubrouteError):
    """A change that contradicts the current state (HTTP 409)."""


class NotFound(HubrouteError):
    """An unknown model or update (HTTP 404)."""


class Service:
    """One service's state (see the module docstring)."""

    def __init__(
        self, state_dir: str | Path, router_dir: str | Path | None = None, config: ServiceConfig | None = None
    ):
        self.state_dir = Path(state_dir)
        self.config = cfg = config or ServiceConfig()
        self.store = Store(store_location(self.state_dir, cfg.store))
        self.versions = Versions(self.state_dir)
        self.metrics = Metrics()
        self.keys = KeyRing(self.store, cfg.keys_file)
        self.limiter = RateLimiter(cfg.rate_limit_per_s, cfg.rate_limit_burst)
        self.lock = threading.RLock()
        self.update_lock = threading.Lock()
        self.swap_lock = threading.Lock()
        self.worker: subprocess.Popen | None = None
        self.draining = False
        self.ready_error: str | None = "not probed yet"
        if cfg.inference.startswith("onnx"):
            # the encoder runs in ONNX Runtime on every core; torch only projects and scores, and
            # with one thread its pool leaves the cores to ONNX Runtime's (see hubroute.encoders.onnx)
            torch.set_num_threads(1)
        if self._current() is None:
            if router_dir is None:
                raise HubrouteError(f"{self.state_dir} holds no router yet: start once with --router DIR")
            self.versions.promote(self.versions.import_dir(router_dir))
        self._recover_updates()
        self.revision = self.store.registry_revision()  # the router below is synced to at least this
        self.version, self.router = self._open_serving()
        self.previous: tuple[str, Router] | None = None  # the version served before, still loaded
        self.batcher = RouteBatcher(
            self._route_group,
            cfg.max_prompts,
            cfg.max_queue,
            on_group=self.metrics.batch_prompts.observe,
            on_queue=self.metrics.queue_depth.set,
        )
        self.metrics.set_router(self.version, self.router.kind)
        self.versions.prune(cfg.keep_versions)
        self.probe()
        self._stopping = threading.Event()
        self._unloadable: str | None = None  # a version made current elsewhere that failed to load
        if cfg.follow_s > 0:
            threading.Thread(target=self._follow_loop, name="follow", daemon=True).start()

    # -- opening versions ------------------------------------------------------------------
    def _current(self) -> str | None:
        try:
            return self.versions.current
        except HubrouteError:
            return "damaged"

    def _open_serving(self) -> tuple[str, Router]:
        """Load the serving version; when it (or the pointer) is damaged, say so in one line and
        name the newest intact version, or serve that one when ``recover`` is set."""
        try:
            version = self.versions.current
            if version is None:
                raise HubrouteError(f"{self.versions.pointer}: names no version")
            return version, self._load(version)
        except Exception as e:
            problem = f"{type(e).__name__}: {e}" if not isinstance(e, HubrouteError) else str(e)
            problem = " ".join(problem.split())
            failed = self._safe_current()
        candidates = [n for n in reversed(self.versions.names()) if n != failed]
        for name in candidates:
            try:
                router = self._load(name)
            except Exception:
                continue
            if not self.config.recover:
                raise HubrouteError(
                    f"cannot serve {failed or 'the current version'} ({problem}); the newest intact version "
                    f"is {name}: start again with --recover to serve it"
                )
            log.warning("serving %s: %s could not be loaded (%s)", name, failed, problem)
            self.versions.recover(name)
            return name, router
        raise HubrouteError(f"cannot serve {failed or 'any version'} ({problem}); no intact version to recover")

    def _safe_current(self) -> str | None:
        try:
            return self.versions.current
        except HubrouteError:
            return None

    def _load(self, version: str) -> Router:
        """Load a version for serving, converted for inference, its registry synced with the
        store. Embedding caches stay on for cards only: a card added through the service is
        encoded once, not again at every start, while prompts (each seen once) are not kept."""
        router = load_router(self.versions.path(version))
        router = router.prepare_inference(self.config.inference, self.versions.inference_dir(version))
        for enc in cached_encoders(router):
            enc.enabled = False
        with caching(router):
            sync_registry(router, self.store, log.warning)
        return router

    def _recover_updates(self) -> None:
        """Updates left running by a killed server are marked interrupted. An update whose worker
        still runs is left alone: a worker exits with its server (it watches its parent, and
        marks its update interrupted as it goes), so a live worker belongs to another server that
        shares this state folder, and restarting this one must not touch it. An update run on
        another host is left alone too (it is taken for dead once its worker stops stamping it,
        see :meth:`Store.create_update`)."""
        here = socket.gethostname()
        for u in self.store.running_updates():
            if u.get("host") not in (None, here):
                log.info("update %s runs on host %s; left alone", u["id"], u["host"])
                continue
            pid = u.get("pid")
            if pid and is_worker(pid, self.state_dir, u["id"], u.get("pid_started")):
                log.info("update %s runs in process %s of another server; left alone", u["id"], pid)
                continue
            self.store.set_update(u["id"], status="interrupted", error="the server stopped during this update")

    # -- routing ---------------------------------------------------------------------------
    def _route_group(self, requests: list[RouteRequest]) -> list[tuple[list[list[RouteHit]], str] | Exception]:
        """Answer requests that arrived together with one scoring pass (batcher thread); a request
        naming an unknown domain gets an :class:`UnknownDomain` error instead."""
        with self.lock:
            version = self.version
            known = set(self.router.registry_.domains()) if any(r.domain for r in requests) else set()
            valid = [r for r in requests if r.domain is None or r.domain in known]
            answers = iter(self.router.route_many(valid)) if valid else iter(())
        out: list[tuple[list[list[RouteHit]], str] | Exception] = []
        for r in requests:
            if r.domain is None or r.domain in known:
                hits = next(answers)
                for hs in hits:
                    if hs:
                        self.metrics.routed_to.labels(hs[0].model_id).inc()
                out.append((hits, version))
            else:
                out.append(UnknownDomain(f"unknown domain {r.domain!r}"))
        return out

    def probe(self) -> bool:
        """Route one prompt through the batcher; the service is ready only when that works."""
        try:
            self.batcher.submit(RouteRequest([PROBE_PROMPT], 1)).result(timeout=60)
            self.ready_error = None
        except Exception as e:
            self.ready_error = f"{type(e).__name__}: {e}"
        return self.ready_error is None

    # -- registry changes ------------------------------------------------------------------
    def add_models(self, cards: list[ModelCard], actor: str) -> list[str]:
        """Validate and encode ``cards`` (outside the routing lock), then store and register them
        in one step; nothing is kept when any card fails."""
        ids = [c.model_id for c in cards]
        if len(set(ids)) != len(ids):
            raise Conflict("the same model id appears twice in the request")
        router = self.router
        try:
            with caching(router):
                prepared = router.prepare_models(cards)
            router.reserve(len(cards))  # a large table grows here, not under the routing lock
        except RegistryError as e:
            if "already registered" in str(e):
                raise Conflict(str(e)) from None
            raise
        with self.lock:
            if self.router is not router:  # a swap happened meanwhile: prepare for the new router
                with caching(self.router):
                    prepared = self.router.prepare_models(cards)
            taken = [i for i in ids if i in self.router.registry_]
            if taken:
                raise Conflict(f"model id(s) already registered: {', '.join(taken[:5])}")
            stored_before = self.store.add_models(cards)
            if stored_before:
                raise Conflict(f"model id(s) already registered: {', '.join(stored_before[:5])}")
            try:
                self.router.commit_models(prepared)
            except BaseException:
                self.store.delete_models(ids)
                raise
        self.store.audit(actor, "models.add", ",".join(ids[:20]), {"count": len(ids)})
        return ids

    def set_status(self, model_id: str, status: str, actor: str) -> None:
        """Retire or re-activate a model (in the store and the serving router)."""
        with self.lock:
            reg = self.router.registry_
            if model_id not in reg:
                raise NotFound(f"unknown model id {model_id!r}")
            self.store.set_status(model_id, status, reg.card(model_id))
            (self.router.retire if status == "retired" else self.router.activate)([model_id])
        self.store.audit(actor, f"models.{'retire' if status == 'retired' else 'activate'}", model_id)

    def set_status_many(self, model_ids: list[str], status: str, actor: str) -> int:
        """Retire or re-activate many models in one step (an unknown id changes nothing);
        returns how many changed."""
        ids = list(dict.fromkeys(model_ids))
        with self.lock:
            reg = self.router.registry_
            unknown = [m for m in ids if m not in reg]
            if unknown:
                raise NotFound(f"{len(unknown)} unknown model id(s): {', '.join(map(repr, unknown[:5]))}")
            want = status == "active"
            active = reg.active_mask
            change = [m for m in ids if bool(active[reg.row(m)]) != want]
            self.store.set_statuses(change, status, [reg.card(m) for m in change])
            if change:
                (self.router.activate if want else self.router.retire)(change)
        self.store.audit(
            actor, f"models.{'activate' if want else 'retire'}", ",".join(change[:20]), {"count": len(change)}
        )
        return len(change)

    # -- versions and updates --------------------------------------------------------------
    def swap(self, version: str) -> None:
        """Load ``version`` beside the serving router, then serve it (nothing when it is served
        already). The router it replaces is kept in memory, so a rollback to it is immediate."""
        if version == self.version:
            return
        previous = self.previous
        router = previous[1] if previous is not None and previous[0] == version else self._load(version)
        with self.lock:
            sync_registry(router, self.store, log.warning)  # models changed while it was not serving
            self.previous = (self.version, self.router)
            self.router, self.version = router, version
        self.metrics.set_router(version, router.kind)

    def serve_current(self) -> str:
        """Serve the version ``CURRENT`` names now (see :meth:`swap`); returns it. One such swap
        at a time, each reading the pointer under the lock, so a swap never lands after a newer
        change of the pointer (a promotion seen late cannot undo a rollback)."""
        with self.swap_lock:
            current = self.versions.current
            if current is not None and current != self.version:
                self.swap(current)
            return self.version

    def start_update(self, actor: str) -> int:
        """Queue an update and start its worker process; :class:`Conflict` while one runs."""
        cfg = self.config
        with self.update_lock:
            if self.worker is not None and self.worker.poll() is None:
                raise Conflict("an update is already running")
            try:
                uid = self.store.create_update(self.version)
            except UpdateRunning as e:  # started by another server sharing the state folder
                raise Conflict(str(e)) from None
            cmd = [
                sys.executable,
                "-m",
                WORKER_MODULE,
                str(self.state_dir.resolve()),
                str(uid),
                "--margin",
                str(cfg.margin),
                "--reference-margin",
                str(cfg.reference_margin),
                "--min-held-out",
                str(cfg.min_held_out),
                "--holdout-every",
                str(cfg.holdout_every),
                "--threads",
                str(cfg.update_threads),
                "--keep-versions",
                str(cfg.keep_versions),
                "--inference",
                cfg.inference,
                "--parent",
                str(os.getpid()),
            ]
            logfile = self.state_dir / "updates" / f"{uid}.log"
            logfile.parent.mkdir(parents=True, exist_ok=True)
            with logfile.open("wb") as err:
                env = os.environ | ({STORE_ENV: cfg.store} if cfg.store else {})
                self.worker = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
            threading.Thread(target=self._watch, args=(uid, self.worker, logfile), daemon=True).start()
        self.store.audit(actor, "updates.start", str(uid), {"from_version": self.version})
        return uid

    def _watch(self, uid: int, proc: subprocess.Popen, logfile: Path, poll_s: float = 0.25) -> None:
        """Follow one update: swap as soon as it is promoted (without waiting for the worker
        to exit), mark it failed when the worker dies before finishing, and count its outcome
        once it has one."""
        t0 = time.time()
        counted = False
        while True:
            done = proc.poll() is not None
            u = self.store.update(uid) or {}
            status = u.get("status")
            if not counted and status not in RUNNING and status is not None:
                counted = True
                if status == "promoted" and u.get("to_version"):
                    try:
                        if self.versions.current == u["to_version"]:
                            self.serve_current()
                    except Exception as e:  # keep serving the old router; say why on GET /v1/updates/{id}
                        self.store.set_update(uid, error=f"promoted but not loaded: {type(e).__name__}: {e}")
                self.metrics.updates.labels(status).inc()
                self.metrics.update_seconds.observe(time.time() - t0)
            if done:
                break
            time.sleep(poll_s)
        if not counted:
            lines = logfile.read_text(errors="replace").strip().splitlines() if logfile.is_file() else []
            error = f"worker exited with {proc.returncode}: {' '.join(lines[-1:])}"
            self.store.set_update(uid, status="failed", error=error)
            self.metrics.updates.labels("failed").inc()
            self.metrics.update_seconds.observe(time.time() - t0)

    def rollback(self, actor: str) -> str:
        """Serve the version promoted before the current one; running updates are cancelled
        first, so none of them can promote over the rollback."""
        with self.update_lock:
            cancelled = self.store.cancel_updates("cancelled by a rollback")
            self._stop_worker()
            for u in cancelled:
                pid, here = u.get("pid"), u.get("host") in (None, socket.gethostname())
                if here and pid and is_worker(pid, self.state_dir, u["id"], u.get("pid_started")):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
            version = self.versions.rollback()
        self.serve_current()
        self.store.audit(actor, "rollback", version, {"cancelled_updates": [u["id"] for u in cancelled]})
        return version

    # -- servers sharing one state folder ---------------------------------------------------
    def follow(self) -> None:
        """Apply what other servers sharing this state folder changed since the last call: the
        version they made current (promoted or rolled back), then the registry changes they
        stored (cards encoded outside the routing lock)."""
        current = self._safe_current()
        if current not in (None, self.version, self._unloadable) and current in self.versions.names():
            try:
                self.serve_current()
            except Exception:
                self._unloadable = current  # said once; tried again when another version is made current
                raise
            log.info("serving %s, made current by another server", current)
        rev, changed = self.store.models_since(self.revision)
        if not changed:
            self.revision = max(self.revision, rev)
            return
        router = self.router
        missing = [c for c, _ in changed if c.model_id not in router.registry_]
        prepared = None
        if missing:
            with caching(router):
                prepared = router.prepare_models(missing, skip_existing=True)
            router.reserve(len(missing))
        with self.lock:
            if prepared is not None and self.router is router:
                with contextlib.suppress(RegistryError):  # registered meanwhile: apply_registry adds the rest
                    router.commit_models(prepared)
            with caching(self.router):
                apply_registry(self.router, changed, log.warning)
            self.revision = max(self.revision, rev)

    def _follow_loop(self) -> None:
        while not self._stopping.wait(self.config.follow_s):
            try:
                self.follow()
            except Exception as e:  # a failed look is retried at the next one
                log.warning("following the state folder failed: %s: %s", type(e).__name__, e)

    def _stop_worker(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.worker.wait(10)

    def refresh_gauges(self) -> None:
        """Set the registry and feedback gauges before the metrics are read."""
        reg = self.router.registry_
        self.metrics.models.set(len(reg))
        self.metrics.active_models.set(reg.n_active())
        self.metrics.feedback_rows.set(self.store.feedback_count())
        self.metrics.feedback_pending.set(self.store.feedback_count(pending_only=True))

    def stop(self) -> None:
        """Stop the batcher and a running worker (server shutdown)."""
        self.draining = True
        self._stopping.set()
        self.batcher.close()
        self._stop_worker()
