"""The router contract shared by every router, and its ``save`` / ``load`` artifact.

A router owns a :class:`~hubroute.hub.Registry` (``registry_``). ``fit(experience)`` learns one
experience on top of what it knew (registering the experience's new cards first);
``route(prompts, k)`` returns the ``k`` best active models per prompt. Subclasses implement
:meth:`Router.scores` (one score a registry row) and, when they keep per-row state,
:meth:`Router._prepare_rows` (compute it, e.g. encode the cards, without changing anything) and
:meth:`Router._commit_rows` (append it): adding models is all or nothing, and the slow half can
run outside a lock that routing holds.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hubroute.constraints import Constraints
from hubroute.errors import DataError, HubrouteError
from hubroute.hub import Experience, ModelCard, Registry, RoutingExample
from hubroute.index.topk import topk

CONFIG_FILE = "config.json"
REGISTRY_FILE = "registry.jsonl"
REGISTRY_DIR = "registry"
PARQUET_ROWS = 50_000  # registries this large are saved as Parquet (bench/results/scale)
REFERENCE_FILE = "reference.jsonl"
REFERENCE_SIZE = 512
ARTIFACT_FORMAT = "hubroute.router"


@dataclass(frozen=True)
class RouteHit:
    """One ranked answer: a model id, its score, and the model's domain and family."""

    model_id: str
    score: float
    domain: str
    family: str


@dataclass(frozen=True)
class PreparedModels:
    """New cards with their per-row state, computed by :meth:`Router.prepare_models` while the
    registry had ``registry_size`` rows."""

    cards: list[ModelCard]
    state: Any
    registry_size: int


@dataclass(frozen=True)
class RouteRequest:
    """One routing request: prompts, how many models each, an optional domain and constraints."""

    prompts: list[str]
    k: int = 5
    domain: str | None = None
    constraints: Constraints | None = None


class Router(ABC):
    """Base class of every router; see the module docstring for the contract."""

    kind: ClassVar[str] = "router"

    def __init__(self, registry: Registry | None = None):
        self.registry_ = registry if registry is not None else Registry()
        self.inference_precision_ = "fp32"  # set by prepare_inference
        self.reference_: list[RoutingExample] = []  # a sample of the labelled examples learned
        self.reference_seen_ = 0

    # -- learning ------------------------------------------------------------------------
    def fit(self, experience: Experience) -> Router:
        """Register the experience's new cards and apply its retirements, then learn from its
        training examples."""
        self.add_models(experience.new_cards, skip_existing=True)
        reg = self.registry_
        if experience.activated:
            self.activate([m for m in experience.activated if m in reg])
        if experience.retired:
            self.retire([m for m in experience.retired if m in reg])
        self._learn(experience)
        self._remember(experience.train)
        return self

    def _remember(self, examples: Sequence[RoutingExample]) -> None:
        """Keep a uniform sample of at most :data:`REFERENCE_SIZE` of every training example
        learned so far (seeded reservoir sampling): the reference set an update of a saved
        router is checked against, so that it cannot unlearn what the router knew."""
        rng = random.Random(f"reference|{self.reference_seen_}|{len(examples)}")
        for x in examples:
            self.reference_seen_ += 1
            if len(self.reference_) < REFERENCE_SIZE:
                self.reference_.append(x)
            else:
                j = rng.randrange(self.reference_seen_)
                if j < REFERENCE_SIZE:
                    self.reference_[j] = x

    def _learn(self, experience: Experience) -> None:
        """Learn from labelled examples; zero-shot routers ignore them."""

    def add_models(self, cards: Iterable[ModelCard], *, skip_existing: bool = False) -> list[int]:
        """Register cards and make them routable at once; returns their rows. All or nothing: when
        a card is rejected or cannot be encoded, the router is left as it was."""
        cards = list(cards)
        prepared = self.prepare_models(cards, skip_existing=skip_existing)
        self.commit_models(prepared)
        return self.registry_.plan(cards, skip_existing=True)[1]

    def prepare_models(self, cards: Iterable[ModelCard], *, skip_existing: bool = False) -> PreparedModels:
        """Validate new cards and compute what adding them needs (card embeddings…) without
        changing the router, so the slow part can run while the router keeps routing. Cards
        already registered are an error, or skipped with ``skip_existing``."""
        new, _ = self.registry_.plan(cards, skip_existing=skip_existing)
        return PreparedModels(new, self._prepare_rows(new) if new else None, len(self.registry_))

    def commit_models(self, prepared: PreparedModels) -> list[int]:
        """Register what :meth:`prepare_models` prepared (cheap: no encoding); returns the new rows.
        Cards registered since the preparation are an error (prepare again)."""
        if not prepared.cards:
            return []
        if len(self.registry_) != prepared.registry_size:
            self.registry_.plan(prepared.cards)  # raises for ids registered in the meantime
        before = len(self.registry_)
        self.registry_.add(prepared.cards)
        rows = np.arange(before, len(self.registry_))
        try:
            self._commit_rows(rows, prepared.state)
        except BaseException:
            self.registry_.truncate(before)
            raise
        return rows.tolist()

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more rows ahead of :meth:`commit_models`, so the commit only
        writes them (a service calls this outside its routing lock); the default needs none."""

    def _prepare_rows(self, cards: list[ModelCard]) -> Any:
        """Per-row state for new ``cards`` (e.g. their embeddings), computed without changing
        the router; the default needs none."""
        return None

    def _commit_rows(self, rows: np.ndarray, state: Any) -> None:
        """Extend per-row state for newly registered ``rows`` with what :meth:`_prepare_rows`
        computed; must not fail for reasons :meth:`_prepare_rows` could have found."""

    def _rebuild_rows(self) -> None:
        """Per-row state for every registry row (after the registry was loaded from disk)."""
        cards = list(self.registry_.cards)
        if cards:
            self._commit_rows(np.arange(len(cards)), self._prepare_rows(cards))

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

    def route(
        self,
        prompts: Sequence[str] | str,
        k: int = 5,
        *,
        domain: str | None = None,
        constraints: Constraints | None = None,
    ) -> list[list[RouteHit]]:
        """Ranked :class:`RouteHit` lists, one per prompt (a single string is one prompt);
        ``domain`` keeps only models of that domain, ``constraints`` only models whose cards meet
        them (:class:`~hubroute.constraints.Constraints`)."""
        if isinstance(prompts, str):
            prompts = [prompts]
        rows, vals = self.rank(list(prompts), k, mask=self.request_mask(domain, constraints))
        return self._hits(rows, vals)

    def request_mask(self, domain: str | None, constraints: Constraints | None) -> np.ndarray | None:
        """The row mask of a request's domain and constraints (None when it has neither)."""
        mask = self.domain_mask(domain)
        extra = constraints.mask(self.registry_) if constraints is not None else None
        if extra is None:
            return mask
        return extra if mask is None else mask & extra

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
            extra = self.request_mask(r.domain, r.constraints)
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

    @classmethod
    def normalize_params(cls, params: dict[str, Any]) -> dict[str, Any]:
        """Constructor arguments from a config's ``params`` (a subclass may accept shorthand or
        older spellings here); the default passes them through."""
        return dict(params)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Router:
        """A new router from configuration ``params`` (checked against the constructor)."""
        from hubroute.plugins import check_params

        params = cls.normalize_params(params)
        check_params(cls, params, f"router {cls.kind!r}")
        try:
            return cls(**params)
        except (TypeError, ValueError) as e:  # a parameter the checks above could not judge
            raise HubrouteError(f"bad parameters for router {cls.kind!r}: {e}") from None

    def _save_state(self, directory: Path) -> None:
        """Write learned state beyond the registry (default: nothing)."""

    def _load_state(self, directory: Path) -> None:
        """Read what :meth:`_save_state` wrote, after the registry is in place."""
        self._rebuild_rows()

    def save(self, directory: str | Path, *, card: str | None = None) -> Path:
        """Write the router to ``directory``: ``config.json``, ``registry.jsonl``, its state, and
        ``README.md`` (``card`` or a generated summary). The folder is replaced atomically."""
        directory = Path(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
        try:
            from hubroute.plugins import class_path

            config = {
                "format": ARTIFACT_FORMAT,
                "router": self.kind,
                "class": class_path(type(self)),
                "hubroute_version": _version(),
                "params": self.get_params(),
            }
            (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
            save_registry(self.registry_, tmp)
            self._save_reference(tmp / REFERENCE_FILE)
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

    def _save_reference(self, path: Path) -> None:
        with path.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"format": "hubroute.reference", "seen": self.reference_seen_}) + "\n")
            for x in self.reference_:
                f.write(json.dumps([x.prompt, x.model_id, x.domain, x.family], ensure_ascii=False) + "\n")

    def _load_reference(self, path: Path) -> None:
        if not path.is_file():  # saved before routers kept a reference sample
            return
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
            head = json.loads(lines[0])
            self.reference_ = [RoutingExample(*json.loads(line)) for line in lines[1:] if line.strip()]
            self.reference_seen_ = int(head["seen"])
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise DataError(f"unreadable reference sample ({e})", path) from None

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
        try:
            router = cls.from_params(params)
        except HubrouteError as e:
            raise DataError(f"saved parameters do not fit {cls.__name__}: {e}", directory / CONFIG_FILE) from None
        router.registry_ = load_registry(directory)
        router._load_reference(directory / REFERENCE_FILE)
        router._load_state(directory)
        return router


def save_registry(registry: Registry, directory: Path) -> None:
    """A router's registry: JSONL below :data:`PARQUET_ROWS` rows (readable), a Parquet folder
    from there on (fast to load; needs the ``hub`` extra, else JSONL)."""
    from hubroute.extras import available

    if len(registry) >= PARQUET_ROWS and available("pyarrow"):
        from hubroute.registry_store import save_parquet

        save_parquet(registry, directory / REGISTRY_DIR)
    else:
        registry.save(directory / REGISTRY_FILE)


def load_registry(directory: Path) -> Registry:
    """Read what :func:`save_registry` wrote (either format)."""
    if (directory / REGISTRY_DIR).is_dir():
        from hubroute.registry_store import load_parquet

        return load_parquet(directory / REGISTRY_DIR)
    return Registry.load(directory / REGISTRY_FILE)


def _version() -> str:
    import hubroute

    return hubroute.__version__


def read_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a saved router; clear errors when it is missing or malformed."""
    path = Path(directory) / CONFIG_FILE
    if not path.is_file():
        raise DataError("not a saved hubroute router (no config.json)", Path(directory))
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", path, e.lineno) from None
    except UnicodeDecodeError:
        raise DataError("not UTF-8 text", path) from None
    if not isinstance(config, dict) or config.get("format") != ARTIFACT_FORMAT or "router" not in config:
        raise DataError("not a hubroute router config", path)
    return config
