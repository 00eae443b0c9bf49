"""The router contract shared by every router, and its ``save`` / ``load`` artifact.

A router owns a :class:`~hubroute.hub.Registry` (``registry_``). ``fit(experience)`` learns one
experience on top of what it knew (registering the experience's new cards first);
``route(prompts, k)`` returns the ``k`` best active models per prompt. Subclasses implement
:meth:`Router.scores` (one score a registry row) and, when they keep per-row state,
:meth:`Router._on_add`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hubroute.errors import DataError, HubrouteError
from hubroute.hub import Experience, ModelCard, Registry
from hubroute.index import topk

CONFIG_FILE = "config.json"
REGISTRY_FILE = "registry.jsonl"
ARTIFACT_FORMAT = "hubroute.router"


@dataclass(frozen=True)
class RouteHit:
    """One ranked answer: a model id, its score, and the model's domain and family."""

    model_id: str
    score: float
    domain: str
    family: str


@dataclass(frozen=True)
class RouteRequest:
    """One routing request: prompts, how many models each, optional domain filter."""

    prompts: list[str]
    k: int = 5
    domain: str | None = None


class Router(ABC):
    """Base class of every router; see the module docstring for the contract."""

    kind: ClassVar[str] = "router"

    def __init__(self, registry: Registry | None = None):
        self.registry_ = registry if registry is not None else Registry()
        self.inference_precision_ = "fp32"  # set by prepare_inference

    # -- learning ------------------------------------------------------------------------
    def fit(self, experience: Experience) -> Router:
        """Register the experience's new cards, then learn from its training examples."""
        self.add_models(experience.new_cards, skip_existing=True)
        self._learn(experience)
        return self

    def _learn(self, experience: Experience) -> None:
        """Learn from labelled examples; zero-shot routers ignore them."""

    def add_models(self, cards: Iterable[ModelCard], *, skip_existing: bool = False) -> list[int]:
        """Register cards and make them routable at once; returns their rows."""
        before = len(self.registry_)
        rows = self.registry_.add(cards, skip_existing=skip_existing)
        if len(self.registry_) > before:
            self._on_add(np.arange(before, len(self.registry_)))
        return rows

    def _on_add(self, rows: np.ndarray) -> None:
        """Extend per-row state for newly registered ``rows``."""

    def retire(self, model_ids: Iterable[str]) -> None:
        """Stop routing to these models; their rows and learned state stay."""
        self.registry_.retire(model_ids)

    def activate(self, model_ids: Iterable[str]) -> None:
        """Route to these retired models again."""
        self.registry_.activate(model_ids)

    def encoders(self) -> list[Any]:
        """The text encoders this router calls (none for lexical routers)."""
        return []

    def prepare_inference(self, precision: str = "fp32", cache_dir: str | Path | None = None) -> Router:
        """Convert the router's encoders for routing only (``fp32``, ``bf16``, ``int8``, ``onnx`` or
        ``onnx-int8``; see :mod:`hubroute.inference`); a converted router can route but no longer
        learn. ``cache_dir``: where exported ONNX graphs are kept and reused (one subfolder per
        encoder); key it to this router's weights, e.g. its saved folder."""
        from hubroute.encoders import prepare_encoder

        for i, enc in enumerate(self.encoders()):
            prepare_encoder(enc, precision, Path(cache_dir) / f"encoder-{i}" if cache_dir is not None else None)
        self.inference_precision_ = precision
        return self

    # -- routing -------------------------------------------------------------------------
    @abstractmethod
    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        """``(len(prompts), len(registry_))`` float32 scores, higher is better (all rows)."""

    def rank(
        self, prompts: Sequence[str], k: int = 10, *, batch_size: int = 256, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` active rows and their scores for each prompt, as two ``(n, k)`` arrays.

        ``mask`` (boolean, one entry a row) narrows the candidates further, e.g. to one domain.
        """
        if len(self.registry_) == 0:
            raise HubrouteError("the router knows no models yet: fit it or add model cards first")
        active = self.registry_.active_mask
        if mask is not None:
            active &= mask
        rows, vals = [], []
        for i in range(0, len(prompts), batch_size):
            r, v = topk(self.scores(prompts[i : i + batch_size]), k, active)
            rows.append(r)
            vals.append(v)
        if not rows:
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        return np.concatenate(rows), np.concatenate(vals)

    def route(self, prompts: Sequence[str] | str, k: int = 5, *, domain: str | None = None) -> list[list[RouteHit]]:
        """Ranked :class:`RouteHit` lists, one per prompt (a single string is one prompt);
        ``domain`` keeps only models of that domain."""
        if isinstance(prompts, str):
            prompts = [prompts]
        rows, vals = self.rank(list(prompts), k, mask=self.domain_mask(domain))
        return self._hits(rows, vals)

    def route_many(self, requests: Sequence[RouteRequest]) -> list[list[list[RouteHit]]]:
        """Answer several routing requests with one scoring pass over all their prompts (what a
        server does with requests that arrive together); one :meth:`route` result per request."""
        if len(self.registry_) == 0:
            raise HubrouteError("the router knows no models yet: fit it or add model cards first")
        prompts = [p for r in requests for p in r.prompts]
        scores = self.scores(prompts) if prompts else np.zeros((0, len(self.registry_)), dtype=np.float32)
        out, start = [], 0
        for r in requests:
            mask = self.registry_.active_mask
            extra = self.domain_mask(r.domain)
            if extra is not None:
                mask &= extra
            rows, vals = topk(scores[start : start + len(r.prompts)], r.k, mask)
            out.append(self._hits(rows, vals))
            start += len(r.prompts)
        return out

    def domain_mask(self, domain: str | None) -> np.ndarray | None:
        """Boolean row mask of the models of ``domain`` (``None`` for no domain)."""
        if domain is None:
            return None
        return np.array([d == domain for d in self.registry_.domains()], dtype=bool)

    def _hits(self, rows: np.ndarray, vals: np.ndarray) -> list[list[RouteHit]]:
        card = self.registry_.card
        return [
            [
                RouteHit(c.model_id, float(s), c.domain, c.family)
                for c, s in ((card(r), s) for r, s in zip(rr, vv, strict=True))
            ]
            for rr, vv in zip(rows, vals, strict=True)
        ]

    # -- configuration and artifacts ----------------------------------------------------
    @abstractmethod
    def get_params(self) -> dict[str, Any]:
        """JSON-ready constructor arguments that rebuild an untrained twin of this router."""

    def _save_state(self, directory: Path) -> None:
        """Write learned state beyond the registry (default: nothing)."""

    def _load_state(self, directory: Path) -> None:
        """Read what :meth:`_save_state` wrote, after the registry is in place."""
        self._on_add(np.arange(len(self.registry_)))

    def save(self, directory: str | Path, *, card: str | None = None) -> Path:
        """Write the router to ``directory``: ``config.json``, ``registry.jsonl``, its state, and
        ``README.md`` (``card`` or a generated summary). The folder is replaced atomically."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        try:
            config = {"format": ARTIFACT_FORMAT, "router": self.kind, "params": self.get_params()}
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            self.registry_.save(tmp / REGISTRY_FILE)
            self._save_state(tmp)
            (tmp / "README.md").write_text(card or self._default_card(), encoding="utf-8")
            if directory.exists():
                old = directory.with_name(f".{directory.name}.old")
                shutil.rmtree(old, ignore_errors=True)
                os.replace(directory, old)
                os.replace(tmp, directory)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return directory

    def _default_card(self) -> str:
        reg = self.registry_
        lines = [
            f"# hubroute router: {self.kind}",
            "",
            f"- models: {len(reg)} ({reg.n_active()} active)",
            f"- domains: {len(set(reg.domains()))}",
            f"- params: `{json.dumps(self.get_params(), sort_keys=True)}`",
            "",
            "Load with `hubroute.routers.load_router(path)` or `hubroute route --router PATH`.",
        ]
        return "\n".join(lines) + "\n"

    @classmethod
    def _from_artifact(cls, directory: Path, params: dict[str, Any]) -> Router:
        router = cls(**params)
        router.registry_ = Registry.load(directory / REGISTRY_FILE)
        router._load_state(directory)
        return router


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a saved router; clear errors when it is missing or malformed."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise DataError("not a saved hubroute router (no config.json)", Path(directory))
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", path, e.lineno) from None
    if config.get("format") != ARTIFACT_FORMAT or "router" not in config:
        raise DataError("not a hubroute router config", path)
    return config
