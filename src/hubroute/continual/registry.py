"""The table of strategy names, and building a strategy (or a composition) from a name."""

from __future__ import annotations

from typing import Any

from hubroute.continual.anchoring import Anchoring
from hubroute.continual.base import Strategy
from hubroute.continual.carve import CARvEStrategy
from hubroute.continual.compose import Compose
from hubroute.continual.domain_batches import DomainBatching
from hubroute.continual.merging import MergeStrategy
from hubroute.continual.negatives import HardNegatives
from hubroute.continual.regularization import EWCStrategy, LwFStrategy
from hubroute.continual.replay import CoresetReplay, CumulativeStrategy, JointStrategy, ReplayStrategy
from hubroute.errors import HubrouteError
from hubroute.plugins import ComponentTable, accepts

STRATEGIES: ComponentTable[Strategy] = ComponentTable("strategy", Strategy)
for _name, _cls in (
    ("naive", Strategy),
    ("replay", ReplayStrategy),
    ("coreset", CoresetReplay),
    ("cumulative", CumulativeStrategy),
    ("joint", JointStrategy),
    ("ewc", EWCStrategy),
    ("lwf", LwFStrategy),
    ("merge", MergeStrategy),
    ("anchoring", Anchoring),
    ("hard_negatives", HardNegatives),
    ("domain_batches", DomainBatching),
    ("carve", CARvEStrategy),
    ("compose", Compose),
):
    STRATEGIES.register(_name, _cls)


def make_strategy(name: str, **params: Any) -> Strategy:
    """A strategy by name (see :data:`STRATEGIES`) or class path, built with ``params``.

    ``"a+b"`` composes strategies (:class:`Compose`): a parameter ``"b.key"`` goes to ``b``
    alone; a plain ``"key"`` goes to every component whose constructor takes it (an error when
    none does).
    """
    if "+" not in name:
        return STRATEGIES.build(name, params)
    names = [n.strip() for n in name.split("+")]
    if not all(names):
        raise HubrouteError(f"bad strategy composition {name!r}")
    per: list[dict[str, Any]] = [{} for _ in names]
    for key, value in params.items():
        target, dot, sub = key.partition(".")
        if dot:
            if target not in names:
                raise HubrouteError(f"strategy parameter {key!r} names no component of {name!r}")
            per[names.index(target)][sub] = value
            continue
        takers = [i for i, n in enumerate(names) if accepts(STRATEGIES.resolve(n), key)]
        if not takers:
            raise HubrouteError(f"no component of {name!r} takes the parameter {key!r}")
        for i in takers:
            per[i][key] = value
    return Compose([STRATEGIES.build(n, p) for n, p in zip(names, per, strict=True)])
