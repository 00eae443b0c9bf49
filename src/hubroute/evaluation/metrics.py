"""Routing accuracy at three levels and the continual-learning summaries of an accuracy matrix.

Levels: ``M`` (the exact gold model), ``F`` (a model of the gold family) and ``D`` (a model of the
gold domain). Picking the gold model is always right at every level; otherwise a prediction is
right at F (D) when the predicted model's registered family (domain) equals the example's.
Top-k accuracy counts a hit anywhere in the first ``k`` answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from hubroute.hub import Registry, RoutingExample

if TYPE_CHECKING:
    from hubroute.routers.base import Router

LEVELS: tuple[str, ...] = ("M", "F", "D")


def hits(ranked_rows: np.ndarray, examples: Sequence[RoutingExample], registry: Registry) -> dict[str, np.ndarray]:
    """Per-level boolean ``(n, k)`` arrays: is the answer at rank ``i`` right for example ``n``.

    ``ranked_rows``: ``(n, k)`` registry rows from :meth:`Router.rank`.
    """
    gold = registry.rows(e.model_id for e in examples)
    fam = np.array(registry.families(), dtype=object)
    dom = np.array(registry.domains(), dtype=object)
    exact = ranked_rows == gold[:, None]
    ex_fam = np.array([e.family for e in examples], dtype=object)[:, None]
    ex_dom = np.array([e.domain for e in examples], dtype=object)[:, None]
    return {
        "M": exact,
        "F": exact | (fam[ranked_rows] == ex_fam),
        "D": exact | (dom[ranked_rows] == ex_dom),
    }


def topk_accuracy(hit: np.ndarray, k: int) -> float:
    """Share of rows with a hit in the first ``k`` columns, in percent."""
    if hit.shape[0] == 0:
        return float("nan")
    return float(100.0 * hit[:, :k].any(axis=1).mean())


def top1(router: Router, examples: Sequence[RoutingExample]) -> dict[str, float]:
    """Top-1 M/F/D accuracy (%) of ``router`` on ``examples`` over its active models (empty dict
    when there are no examples)."""
    if not examples:
        return {}
    rows, _ = router.rank([e.prompt for e in examples], 1)
    h = hits(rows, examples, router.registry_)
    return {lv: topk_accuracy(h[lv], 1) for lv in LEVELS}


def final_average(acc: np.ndarray) -> float:
    """Mean of the last row of the accuracy matrix (every experience after the last one)."""
    return float(np.nanmean(acc[-1]))


def stream_average(acc: np.ndarray) -> float:
    """Mean of the diagonal: each experience right after it was learned."""
    return float(np.mean(np.diag(acc)))


def forgetting(acc: np.ndarray) -> float:
    """Average forgetting: for each experience ``j`` before the last, the best accuracy it had
    before the end (``max_{j<=t<T-1} A[t, j]``) minus its final accuracy ``A[T-1, j]``."""
    t = acc.shape[0]
    if t < 2:
        return 0.0
    drops = [np.max(acc[j : t - 1, j]) - acc[t - 1, j] for j in range(t - 1)]
    return float(np.mean(drops))


def backward_transfer(acc: np.ndarray) -> float:
    """BWT: mean over ``j < T-1`` of ``A[T-1, j] - A[j, j]`` (negative means forgetting)."""
    t = acc.shape[0]
    if t < 2:
        return 0.0
    return float(np.mean([acc[t - 1, j] - acc[j, j] for j in range(t - 1)]))


def summarise(acc: np.ndarray) -> dict[str, float]:
    """Every summary of one lower-triangular accuracy matrix (NaN above the diagonal)."""
    return {
        "final_average": final_average(acc),
        "stream_average": stream_average(acc),
        "forgetting": forgetting(acc),
        "bwt": backward_transfer(acc),
    }
