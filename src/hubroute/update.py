"""Learn one more experience on a router, and decide whether the result may replace it.

The one code path behind the service's feedback updates and ``hubroute update``: the router is
scored on the experience's held-out examples and on its own reference sample (a sample of the
labelled examples it learned before, see :meth:`~hubroute.routers.base.Router.fit`), learns the
experience, and is scored again. The result may replace the router only when

- there are at least ``min_held_out`` held-out examples,
- held-out M-Acc fell by at most ``margin`` points, and
- reference M-Acc fell by at most ``reference_margin`` points (so feedback that contradicts what
  the router knew, garbage or an attack, cannot replace a good router).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hubroute.evaluation.metrics import top1
from hubroute.hub import Experience, RoutingExample
from hubroute.routers.base import Router


@dataclass(frozen=True)
class GatePolicy:
    """When an updated router may replace the one it came from (see the module docstring)."""

    margin: float = 1.0
    reference_margin: float = 5.0
    min_held_out: int = 10


@dataclass
class UpdateReport:
    """What one update measured and decided; ``to_dict`` is what the service stores."""

    train: int
    held_out: int
    reference: int
    policy: GatePolicy
    before: dict[str, dict[str, float]] = field(default_factory=dict)
    after: dict[str, dict[str, float]] = field(default_factory=dict)
    accepted: bool = False
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record."""
        return {
            "train": self.train,
            "held_out": self.held_out,
            "reference": self.reference,
            "margin": self.policy.margin,
            "reference_margin": self.policy.reference_margin,
            "min_held_out": self.policy.min_held_out,
            "before": self.before,
            "after": self.after,
            "accepted": self.accepted,
            "reason": self.reason,
        }


def routable(router: Router, examples: list[RoutingExample]) -> list[RoutingExample]:
    """The examples whose gold model the router knows and routes to."""
    reg = router.registry_
    return [x for x in examples if x.model_id in reg and reg.status(x.model_id) == "active"]


def learn_and_check(
    router: Router,
    experience: Experience,
    policy: GatePolicy,
    *,
    progress: Any = None,
    also: dict[str, list[RoutingExample]] | None = None,
) -> UpdateReport:
    """Score, learn ``experience`` (its ``eval`` examples are the held-out ones), score again and
    decide (see the module docstring). ``router`` is changed in place whatever the decision;
    the caller keeps or discards it. ``progress(stage, fraction)`` is told each stage; ``also``
    names more example sets to score before and after (reported, not checked)."""
    say = progress or (lambda stage, fraction: None)
    held = routable(router, list(experience.eval))
    reference = routable(router, list(router.reference_))
    report = UpdateReport(len(experience.train), len(held), len(reference), policy)
    if not experience.train:
        report.reason = "no new examples to learn from"
        return report
    say("evaluating", 0.1)
    extra = {name: routable(router, xs) for name, xs in (also or {}).items()}
    report.before = {"held_out": top1(router, held), "reference": top1(router, reference)}
    report.before |= {name: top1(router, xs) for name, xs in extra.items()}
    say("training", 0.2)
    router.fit(experience)
    say("evaluating", 0.85)
    report.after = {"held_out": top1(router, held), "reference": top1(router, reference)}
    report.after |= {name: top1(router, xs) for name, xs in extra.items()}
    report.accepted, report.reason = _decide(report, policy)
    return report


def _decide(report: UpdateReport, policy: GatePolicy) -> tuple[bool, str]:
    if report.held_out < policy.min_held_out:
        return False, (
            f"only {report.held_out} held-out example(s); an update needs at least {policy.min_held_out} to be promoted"
        )
    checks = (("held_out", "held-out", policy.margin), ("reference", "reference", policy.reference_margin))
    for key, label, margin in checks:
        before = report.before[key].get("M")
        after = report.after[key].get("M")
        if before is not None and after is not None and after < before - margin:
            return False, f"{label} M-Acc fell from {before:.1f} to {after:.1f} (margin {margin})"
    return True, "held-out and reference accuracy within their margins"
