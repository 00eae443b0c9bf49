"""Continual updates from stored feedback, run in a separate, low-priority process.

``python -m hubroute.service.updater STATE UPDATE_ID`` loads the serving version, applies the
stored registry, turns the feedback gathered since the last update into a new experience (every
``holdout_every``-th row is held back for evaluation), learns it on that copy, and promotes the
result only when its top-1 accuracy on the held-back slice is no worse than before minus
``margin`` (percentage points). The serving process notices the new pointer and swaps routers.
Running apart keeps the server answering while the update trains, and a crash or kill of either
side leaves the pointer on the last good version.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import numpy as np

from hubroute.errors import HubrouteError
from hubroute.evaluation.metrics import hits, topk_accuracy
from hubroute.hub import Experience, RoutingExample
from hubroute.routers import load_router
from hubroute.routers.base import Router
from hubroute.service.store import Store
from hubroute.service.versions import Versions

STORE_FILE = "hub.sqlite"


def sync_registry(router: Router, store: Store) -> None:
    """Make the router's registry agree with the store: add stored cards it lacks (one call),
    then apply every stored status."""
    stored = store.models()
    missing = [c for c, _ in stored if c.model_id not in router.registry_]
    if missing:
        router.add_models(missing)
    retire = [c.model_id for c, s in stored if s == "retired" and router.registry_.status(c.model_id) == "active"]
    activate = [c.model_id for c, s in stored if s == "active" and router.registry_.status(c.model_id) == "retired"]
    if retire:
        router.retire(retire)
    if activate:
        router.activate(activate)


def evaluate(router: Router, examples: list[RoutingExample]) -> dict[str, float]:
    """Top-1 M/F/D accuracy (%) of ``router`` on ``examples`` (empty dict when there are none)."""
    if not examples:
        return {}
    rows, _ = router.rank([e.prompt for e in examples], 1)
    h = hits(rows, examples, router.registry_)
    return {lv: topk_accuracy(h[lv], 1) for lv in ("M", "F", "D")}


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


def run_update(
    state_dir: str, update_id: int, *, margin: float = 1.0, holdout_every: int = 5, inference: str = "fp32"
) -> dict[str, Any]:
    """Do one update (see the module docstring); returns its result record."""
    store, versions = Store(os.path.join(state_dir, STORE_FILE)), Versions(state_dir)
    u = store.update(update_id)
    if u is None:
        raise HubrouteError(f"no update {update_id}")
    store.set_update(update_id, status="running", pid=os.getpid(), stage="loading", progress=0.05)
    router = load_router(versions.path(u["from_version"]))
    sync_registry(router, store)
    rows = label(router, store.pending_feedback(u["max_feedback_id"]))
    held = [e for fid, e in rows if fid % holdout_every == 0]
    train = [e for fid, e in rows if fid % holdout_every != 0]
    result: dict[str, Any] = {"train": len(train), "held_out": len(held), "margin": margin}
    if not train:
        result["reason"] = "no new feedback to learn from"
        store.finish_update(update_id, "rejected", result, None, [])
        return result
    store.set_update(update_id, stage="evaluating", progress=0.1)
    result["before"] = evaluate(router, held)
    store.set_update(update_id, stage="training", progress=0.2)
    index = int(getattr(router, "n_trained_", 0))
    router.fit(Experience(index=index, name=f"update-{update_id}", new_cards=[], train=train, eval=held))
    store.set_update(update_id, stage="evaluating", progress=0.85)
    result["after"] = evaluate(router, held)
    before, after = result["before"].get("M", 0.0), result["after"].get("M", 0.0)
    ids = [fid for fid, _ in rows]
    if held and after < before - margin:
        result["reason"] = f"held-out M-Acc fell from {before:.1f} to {after:.1f} (margin {margin})"
        store.finish_update(update_id, "rejected", result, None, ids)
        return result
    store.set_update(update_id, stage="saving", progress=0.9)
    name = versions.add(router)
    if inference.startswith("onnx"):  # export here, so the server swaps without exporting
        store.set_update(update_id, stage="exporting", progress=0.95)
        router.prepare_inference(inference, versions.inference_dir(name))
    versions.promote(name)
    store.finish_update(update_id, "promoted", result, name, ids)
    return result


def main(argv: list[str] | None = None) -> None:
    """Entry point of the worker process."""
    ap = argparse.ArgumentParser(description="hubroute update worker")
    ap.add_argument("state")
    ap.add_argument("update_id", type=int)
    ap.add_argument("--margin", type=float, default=1.0)
    ap.add_argument("--holdout-every", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--nice", type=int, default=10)
    ap.add_argument("--inference", default="fp32", help="The server's inference runtime (ONNX graphs are exported).")
    args = ap.parse_args(argv)
    os.nice(args.nice)
    import torch

    torch.set_num_threads(args.threads)
    np.seterr(all="ignore")
    try:
        run_update(
            args.state, args.update_id, margin=args.margin, holdout_every=args.holdout_every, inference=args.inference
        )
    except Exception as e:  # recorded for GET /v1/updates/{id}; the pointer is untouched
        Store(os.path.join(args.state, STORE_FILE)).set_update(
            args.update_id, status="failed", error=f"{type(e).__name__}: {e}"
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
