"""The table of strategy names, and building a strategy (or a composition) from a name."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hubroute.errors import HubrouteError
from hubroute.plugins import ComponentTable, accepts

if TYPE_CHECKING:
    from hubroute.continual.base import Strategy

STRATEGIES: ComponentTable[Strategy] = ComponentTable("strategy", "hubroute.continual.base:Strategy")
for _name, _path in (
    ("naive", "hubroute.continual.base:Strategy"),
    ("replay", "hubroute.continual.replay:ReplayStrategy"),
    ("coreset", "hubroute.continual.replay:CoresetReplay"),
    ("cumulative", "hubroute.continual.replay:CumulativeStrategy"),
    ("joint", "hubroute.continual.replay:JointStrategy"),
    ("ewc", "hubroute.continual.regularization:EWCStrategy"),
    ("lwf", "hubroute.continual.regularization:LwFStrategy"),
    ("merge", "hubroute.continual.merging:MergeStrategy"),
    ("anchoring", "hubroute.continual.anchoring:Anchoring"),
    ("hard_negatives", "hubroute.continual.negatives:HardNegatives"),
    ("domain_batches", "hubroute.continual.domain_batches:DomainBatching"),
    ("carve", "hubroute.continual.carve:CARvEStrategy"),
    ("compose", "hubroute.continual.compose:Compose"),
):
    STRATEGIES.register(_name, _path)


def make_strategy(name: str, **params: Any) -> Strategy:
    """A strategy by name (see :data:`STRATEGIES`) or class path, built with ``params``.

    ``"a+b"`` composes strategies (:class:`Compose`): a parameter ``"b.key"`` (or ``"b": {"key":
    ...}``) goes to ``b`` alone; a plain ``"key"`` goes to every component whose constructor takes
    it (an error when none does).
    """
    if "+" not in name:
        return STRATEGIES.build(name, params)
    names = [n.strip() for n in name.split("+")]
    if not all(names):
        raise HubrouteError(f"bad strategy composition {name!r}")
    per: list[dict[str, Any]] = [{} for _ in names]
    for key, value in params.items():
        target, dot, sub = key.partition(".")
        if dot or (key in names and isinstance(value, dict)):
            if target not in names:
                raise HubrouteError(f"strategy parameter {key!r} names no component of {name!r}")
            per[names.index(target)].update({sub: value} if dot else value)
            continue
        takers = [i for i, n in enumerate(names) if accepts(STRATEGIES.resolve(n), key)]
        if not takers:
            raise HubrouteError(f"no component of {name!r} takes the parameter {key!r}")
        for i in takers:
            per[i][key] = value
    from hubroute.continual.compose import Compose

    return Compose([STRATEGIES.build(n, p) for n, p in zip(names, per, strict=True)])
