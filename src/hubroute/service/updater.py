"""Continual updates from stored feedback, run in a separate, low-priority process.

``python -m hubroute.service.updater STATE UPDATE_ID`` loads the version the update was queued
from, applies the stored registry, turns the feedback gathered since the last update into a new
experience (every ``holdout_every``-th row is held back for evaluation), learns it on that copy
and checks the result (:mod:`hubroute.update`: enough held-out rows, held-out and reference
accuracy within their margins). A result that passes is promoted only if the version it was
built from is still serving: a rollback meanwhile wins. The serving process notices the new
pointer and swaps routers.

The worker exits as soon as its server does (it watches its parent process), and a cancelled
update (a rollback cancels running ones) stops at its next stage. Running apart keeps the server
answering while the update trains, and a crash or kill of either side leaves the pointer on the
last good version.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from typing import Any

import numpy as np
import psutil

from hubroute.errors import HubrouteError
from hubroute.hub import Experience, ModelCard, RoutingExample
from hubroute.routers import load_router
from hubroute.routers.base import Router
from hubroute.service.store import Store
from hubroute.service.versions import Versions
from hubroute.update import GatePolicy, learn_and_check

STORE_FILE = "hub.sqlite"
STORE_ENV = "HUBROUTE_STORE"  # the worker finds a PostgreSQL store here (a URL never goes on a command line)
WORKER_MODULE = "hubroute.service.updater"
HEARTBEAT_S = 5.0  # a running worker stamps its update this often


def store_location(state_dir: str | os.PathLike, url: str | None = None) -> str:
    """Where a service's store lives: ``url``, else ``$HUBROUTE_STORE``, else ``<state>/hub.sqlite``."""
    return url or os.environ.get(STORE_ENV) or os.path.join(state_dir, STORE_FILE)


class Cancelled(Exception):
    """The update was cancelled (or superseded) while it ran."""


def sync_registry(router: Router, store: Store, log: Any = None) -> list[str]:
    """Make the router's registry agree with the store: add stored cards it lacks (one call;
    when that fails, card by card, skipping the ones that cannot be added), then apply every
    stored status. Returns the ids that could not be added."""
    return apply_registry(router, store.models(), log)


def apply_registry(router: Router, stored: list[tuple[ModelCard, str]], log: Any = None) -> list[str]:
    """Apply stored ``(card, status)`` rows to the router's registry (see :func:`sync_registry`);
    returns the ids that could not be added."""
    missing = [c for c, _ in stored if c.model_id not in router.registry_]
    skipped: list[str] = []
    if missing:
        try:
            router.add_models(missing)
        except Exception:  # one bad card never keeps the others out
            for c in missing:
                try:
                    router.add_models([c])
                except Exception as e:
                    skipped.append(c.model_id)
                    if log:
                        log(f"stored model {c.model_id!r} skipped: {type(e).__name__}: {e}")
    reg = router.registry_
    retire = [
        c.model_id for c, s in stored if s == "retired" and c.model_id in reg and reg.status(c.model_id) == "active"
    ]
    activate = [
        c.model_id for c, s in stored if s == "active" and c.model_id in reg and reg.status(c.model_id) == "retired"
    ]
    if retire:
        router.retire(retire)
    if activate:
        router.activate(activate)
    return skipped


def label(router: Router, feedback: list[tuple[int, RoutingExample]]) -> list[tuple[int, RoutingExample]]:
    """Feedback with family (and missing domain) taken from the model's card; rows naming
    models the registry does not know are dropped."""
    out = []
    for fid, e in feedback:
        if e.model_id not in router.registry_:
            continue
        card = router.registry_.card(e.model_id)
        out.append((fid, RoutingExample(e.prompt, e.model_id, e.domain or card.domain, card.family)))
    return out


def is_worker(pid: int, state_dir: str | os.PathLike, update_id: int, started: float | None) -> bool:
    """Whether process ``pid`` is the worker of this update (command line and start time match),
    so that a PID the system reused for another process is never touched."""
    try:
        proc = psutil.Process(pid)
        cmd = proc.cmdline()
        same_start = started is None or abs(proc.create_time() - started) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    return (
        same_start
        and WORKER_MODULE in cmd
        and os.path.realpath(str(state_dir)) in (os.path.realpath(c) for c in cmd)
        and str(update_id) in cmd
    )


def run_update(
    state_dir: str,
    update_id: int,
    *,
    margin: float = 1.0,
    reference_margin: float = 5.0,
    min_held_out: int = 10,
    holdout_every: int = 5,
    inference: str = "fp32",
    keep_versions: int | None = None,
) -> dict[str, Any]:
    """Do one update (see the module docstring); returns its result record."""
    store, versions = Store(store_location(state_dir)), Versions(state_dir)
    u = store.update(update_id)
    if u is None:
        raise HubrouteError(f"no update {update_id}")
    if not store.claim_update(update_id, os.getpid(), psutil.Process().create_time()):
        return {"reason": f"update {update_id} is {u['status']}, not queued"}
    beating = _heartbeat(store, update_id)
    try:
        return _run_claimed(
            store, versions, u, margin, reference_margin, min_held_out, holdout_every, inference, keep_versions
        )
    finally:
        beating.set()


def _heartbeat(store: Store, update_id: int) -> threading.Event:
    """Stamp the update every :data:`HEARTBEAT_S` seconds until the returned event is set."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):  # a store hiccup is retried at the next beat
                store.heartbeat(update_id)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    return stop


def _run_claimed(
    store: Store,
    versions: Versions,
    u: dict[str, Any],
    margin: float,
    reference_margin: float,
    min_held_out: int,
    holdout_every: int,
    inference: str,
    keep_versions: int | None,
) -> dict[str, Any]:
    update_id = int(u["id"])
    t0 = time.time()

    def stage(name: str, fraction: float) -> None:
        current = store.update(update_id)
        if current is None or current["status"] != "running":
            raise Cancelled(f"update {update_id} was {current and current['status']}")
        store.set_update(update_id, stage=name, progress=fraction)

    try:
        router = load_router(versions.path(u["from_version"]))
        sync_registry(router, store)
        rows = label(router, store.pending_feedback(u["max_feedback_id"]))
        held = [e for fid, e in rows if fid % holdout_every == 0]
        train = [e for fid, e in rows if fid % holdout_every != 0]
        index = int(getattr(router, "n_trained_", 0))
        experience = Experience(index=index, name=f"update-{update_id}", new_cards=[], train=train, eval=held)
        policy = GatePolicy(margin=margin, reference_margin=reference_margin, min_held_out=min_held_out)
        report = learn_and_check(router, experience, policy, progress=stage)
        result = report.to_dict() | {"seconds": round(time.time() - t0, 3)}
        ids = [fid for fid, _ in rows]
        if not report.accepted:
            store.finish_update(update_id, "rejected", result, None, ids if report.train else [])
            return result
        stage("saving", 0.9)
        name = versions.add(router)
        if inference.startswith("onnx"):  # export here, so the server swaps without exporting
            stage("exporting", 0.95)
            router.prepare_inference(inference, versions.inference_dir(name))
        stage("promoting", 0.99)
        if not versions.promote(name, expected=u["from_version"]):
            result["reason"] = f"{u['from_version']} no longer serves (a rollback or another update came first)"
            store.finish_update(update_id, "superseded", result, None, [])
            return result
        if not store.finish_update(update_id, "promoted", result, name, ids):
            result["reason"] = "cancelled after its version was promoted"
        if keep_versions:
            versions.prune(keep_versions)
        return result
    except Cancelled as e:
        return {"reason": str(e)}


def _watch_parent(parent: int, state: str, update_id: int, poll_s: float = 0.5) -> None:
    """Exit this process as soon as ``parent`` is gone (the worker never outlives its server),
    marking update ``update_id`` interrupted first."""

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent or not psutil.pid_exists(parent):
                with contextlib.suppress(Exception):  # exit whatever the store says
                    Store(store_location(state)).set_update(
                        update_id, status="interrupted", error="the server stopped during this update"
                    )
                os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the worker process."""
    ap = argparse.ArgumentParser(description="hubroute update worker")
    ap.add_argument("state")
    ap.add_argument("update_id", type=int)
    ap.add_argument("--margin", type=float, default=1.0)
    ap.add_argument("--reference-margin", type=float, default=5.0)
    ap.add_argument("--min-held-out", type=int, default=10)
    ap.add_argument("--holdout-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--keep-versions", type=int, default=None)
    ap.add_argument("--parent", type=int, default=None, help="Exit when this process is gone.")
    ap.add_argument("--inference", default="fp32", help="The server's inference runtime (ONNX graphs are exported).")
    args = ap.parse_args(argv)
    if args.parent:
        _watch_parent(args.parent, args.state, args.update_id)
    os.nice(args.nice)
    import torch

    torch.set_num_threads(args.threads)
    np.seterr(all="ignore")
    try:
        run_update(
            args.state,
            args.update_id,
            margin=args.margin,
            reference_margin=args.reference_margin,
            min_held_out=args.min_held_out,
            holdout_every=args.holdout_every,
            inference=args.inference,
            keep_versions=args.keep_versions,
        )
    except Exception as e:  # recorded for GET /v1/updates/{id}; the pointer is untouched
        Store(store_location(args.state)).set_update(args.update_id, status="failed", error=f"{type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
