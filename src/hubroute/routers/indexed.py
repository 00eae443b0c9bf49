"""Routing through a model index, for routers that score a prompt by the cosine (or a positive
multiple of it) between its vector and one vector per registry row: dense card retrieval without
the domain prior, prompt centroids, the embedding router and CARvE.

``index="exact"`` (the default) scores every row, as the router's ``scores`` does;
``index="hnsw"`` searches an HNSW graph (:class:`~hubroute.index.hnsw.HNSWIndex`), and ``"auto"``
picks HNSW from :data:`~hubroute.index.base.AUTO_HNSW_ROWS` rows on. The graph follows the
router: rows added are inserted, retired rows are masked at search time, and vectors that change
(a router learning an experience) rebuild it. A saved router keeps its graph (``index/``) so a
restart does not rebuild it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hubroute.index.base import AUTO_HNSW_ROWS, INDEX_KINDS, make_index

INDEX_DIR = "index"


class IndexedRouter:
    """Mixin for :class:`~hubroute.routers.base.Router` subclasses (see the module docstring).
    Subclasses implement :meth:`row_matrix` and :meth:`query_matrix`, may override
    :meth:`index_usable` and :attr:`score_scale`, and call :meth:`_vectors_changed` when row
    vectors change in place."""

    index: str = "exact"
    index_options: dict[str, Any] | None = None

    def _set_index(self, index: str, index_options: dict[str, Any] | None) -> None:
        from hubroute.errors import HubrouteError

        if index not in INDEX_KINDS:
            raise HubrouteError(f"unknown index {index!r}; choose one of {', '.join(INDEX_KINDS)}")
        self.index, self.index_options = index, dict(index_options or {})
        self.index_ = None
        self._index_rows = 0

    # -- what subclasses provide -------------------------------------------------------------
    def row_matrix(self) -> np.ndarray:
        """Unit row vectors ``(rows, dim)``, float32."""
        raise NotImplementedError

    def query_matrix(self, prompts: Sequence[str]) -> np.ndarray:
        """Unit query vectors ``(n, dim)``, float32, in the rows' space."""
        raise NotImplementedError

    @property
    def score_scale(self) -> float:
        """Scores are the cosine times this."""
        return 1.0

    def index_usable(self) -> bool:
        """Whether scores are a positive multiple of the cosine (so a cosine index ranks rightly)."""
        return True

    # -- the index -------------------------------------------------------------------------
    def uses_index(self) -> bool:
        """Whether routing searches the approximate index now."""
        kind = self.index
        if kind == "auto":
            kind = "hnsw" if len(self.registry_) >= AUTO_HNSW_ROWS else "exact"
        return kind == "hnsw" and self.index_usable()

    def _vectors_changed(self) -> None:
        """Row vectors changed in place: the graph is rebuilt before the next search."""
        self.index_ = None
        self._index_rows = 0

    def reserve(self, extra: int) -> None:
        """Make room in the built index for ``extra`` more rows (see :meth:`Router.reserve`)."""
        if self.index_ is not None and hasattr(self.index_, "reserve"):
            self.index_.reserve(extra)

    def model_index(self) -> Any:
        """The approximate index, built or extended to the registry's rows."""
        n = len(self.registry_)
        if self.index_ is None:
            self.index_ = make_index("hnsw", **(self.index_options or {}))
            self.index_.build(self.row_matrix())
            self._index_rows = n
        elif self._index_rows < n:
            rows = np.arange(self._index_rows, n)
            self.index_.add(rows, self.row_matrix()[rows])
            self._index_rows = n
        return self.index_

    def rank(
        self, prompts: Sequence[str], k: int = 10, *, batch_size: int = 256, mask: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` active rows (see :meth:`Router.rank`), through the index when it is in use."""
        if not self.uses_index():
            return super().rank(prompts, k, batch_size=batch_size, mask=mask)  # type: ignore[misc]
        from hubroute.errors import HubrouteError

        if len(self.registry_) == 0:
            raise HubrouteError("the router knows no models yet: fit it or add model cards first")
        index = self.model_index()
        eligible = self.registry_.active_mask
        if mask is not None:
            eligible &= mask
        rows, vals = [], []
        for i in range(0, len(prompts), batch_size):
            r, v = index.search(self.query_matrix(prompts[i : i + batch_size]), k, eligible)
            rows.append(r)
            vals.append(v * self.score_scale)
        if not rows:
            return np.zeros((0, k), dtype=np.int64), np.zeros((0, k), dtype=np.float32)
        return np.concatenate(rows), np.concatenate(vals).astype(np.float32)

    def route_many(self, requests: Sequence[Any]) -> list[Any]:
        """Several requests at once: their prompts encoded in one pass, then one index search a
        request (with its own mask), when the index is in use."""
        if not self.uses_index():
            return super().route_many(requests)  # type: ignore[misc]
        from hubroute.errors import HubrouteError

        if len(self.registry_) == 0:
            raise HubrouteError("the router knows no models yet: fit it or add model cards first")
        index = self.model_index()
        prompts = [p for r in requests for p in r.prompts]
        queries = self.query_matrix(prompts) if prompts else np.zeros((0, 1), np.float32)
        out, start = [], 0
        for r in requests:
            eligible = self.registry_.active_mask
            extra = self.request_mask(r.domain, r.constraints)  # type: ignore[attr-defined]
            if extra is not None:
                eligible &= extra
            rows, vals = index.search(queries[start : start + len(r.prompts)], r.k, eligible)
            out.append(self._hits(rows, vals * self.score_scale))  # type: ignore[attr-defined]
            start += len(r.prompts)
        return out

    # -- artifacts -------------------------------------------------------------------------
    def _save_index(self, directory: Path) -> None:
        if self.index_ is not None and self._index_rows == len(self.registry_):
            (directory / INDEX_DIR).mkdir(exist_ok=True)
            self.index_.save(directory / INDEX_DIR)

    def _load_index(self, directory: Path) -> None:
        path = directory / INDEX_DIR
        if not (path / "index.json").is_file() or self.index == "exact":
            return
        index = make_index("hnsw", **(self.index_options or {}))
        index.load(path)
        if len(index) == len(self.registry_):
            self.index_, self._index_rows = index, len(index)
