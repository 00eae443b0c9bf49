"""The service's durable store: registered models, feedback and update jobs in one SQLite file.

The file runs in WAL mode with ``synchronous=FULL``: a row is on disk once its call returns, so
a killed server loses nothing it acknowledged. One connection per thread.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hubroute.hub import ModelCard, RoutingExample

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    card TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'active',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt TEXT NOT NULL,
    model_id TEXT NOT NULL,
    domain TEXT,
    created_at REAL NOT NULL,
    update_id INTEGER
);
CREATE TABLE IF NOT EXISTS updates (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    finished_at REAL,
    from_version TEXT,
    to_version TEXT,
    max_feedback_id INTEGER,
    pid INTEGER,
    result TEXT,
    error TEXT
);
"""
RUNNING = ("queued", "running")  # statuses of an update that has not ended


class Store:
    """Models, feedback and updates of one service state folder (``<state>/hub.sqlite``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._conn().executescript(SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on error)."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- models --------------------------------------------------------------------------
    def add_model(self, card: ModelCard) -> bool:
        """Store a new card; False when the id is already stored (nothing changes)."""
        with self.tx() as db:
            try:
                db.execute(
                    "INSERT INTO models (model_id, card, status, created_at) VALUES (?, ?, 'active', ?)",
                    (card.model_id, json.dumps(card.to_dict()), time.time()),
                )
            except sqlite3.IntegrityError:
                return False
        return True

    def set_status(self, model_id: str, status: str, card: ModelCard | None = None) -> None:
        """Record a model's status; ``card`` stores the card too when the model came from the
        router's own registry and is not in the table yet."""
        with self.tx() as db:
            if card is not None:
                db.execute(
                    "INSERT OR IGNORE INTO models (model_id, card, status, created_at) VALUES (?, ?, ?, ?)",
                    (model_id, json.dumps(card.to_dict()), status, time.time()),
                )
            db.execute("UPDATE models SET status = ? WHERE model_id = ?", (status, model_id))

    def models(self) -> list[tuple[ModelCard, str]]:
        """Every stored card and its status, in insertion order."""
        rows = self._conn().execute("SELECT card, status FROM models ORDER BY rowid").fetchall()
        return [(ModelCard.from_dict(json.loads(r["card"])), r["status"]) for r in rows]

    # -- feedback ------------------------------------------------------------------------
    def add_feedback(self, items: list[tuple[str, str, str | None]]) -> list[int]:
        """Store (prompt, model_id, domain) rows; returns their ids."""
        now = time.time()
        ids = []
        with self.tx() as db:
            for prompt, model_id, domain in items:
                cur = db.execute(
                    "INSERT INTO feedback (prompt, model_id, domain, created_at) VALUES (?, ?, ?, ?)",
                    (prompt, model_id, domain, now),
                )
                ids.append(int(cur.lastrowid))
        return ids

    def feedback_count(self, pending_only: bool = False) -> int:
        """Number of feedback rows (only those no update consumed yet, if asked)."""
        q = "SELECT COUNT(*) FROM feedback" + (" WHERE update_id IS NULL" if pending_only else "")
        return int(self._conn().execute(q).fetchone()[0])

    def pending_feedback(self, max_id: int) -> list[tuple[int, RoutingExample]]:
        """Unconsumed feedback up to ``max_id`` as (id, example); family is filled by the caller."""
        rows = (
            self._conn()
            .execute(
                "SELECT id, prompt, model_id, domain FROM feedback WHERE update_id IS NULL AND id <= ? ORDER BY id",
                (max_id,),
            )
            .fetchall()
        )
        return [(r["id"], RoutingExample(r["prompt"], r["model_id"], r["domain"] or "", "")) for r in rows]

    # -- updates -------------------------------------------------------------------------
    def create_update(self, from_version: str) -> int:
        """A queued update over all feedback stored so far; returns its id."""
        with self.tx() as db:
            max_id = int(db.execute("SELECT COALESCE(MAX(id), 0) FROM feedback").fetchone()[0])
            cur = db.execute(
                "INSERT INTO updates (status, created_at, from_version, max_feedback_id) VALUES ('queued', ?, ?, ?)",
                (time.time(), from_version, max_id),
            )
            return int(cur.lastrowid)

    def set_update(self, update_id: int, **fields: Any) -> None:
        """Change columns of an update row (``result`` is stored as JSON)."""
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as db:
            db.execute(f"UPDATE updates SET {cols} WHERE id = ?", (*fields.values(), update_id))

    def finish_update(
        self, update_id: int, status: str, result: dict[str, Any], to_version: str | None, ids: list[int]
    ) -> None:
        """Close an update and mark the feedback it consumed, in one transaction."""
        with self.tx() as db:
            db.execute(
                "UPDATE updates SET status = ?, stage = 'done', progress = 1, finished_at = ?, to_version = ?, "
                "result = ? WHERE id = ?",
                (status, time.time(), to_version, json.dumps(result), update_id),
            )
            db.executemany("UPDATE feedback SET update_id = ? WHERE id = ?", [(update_id, i) for i in ids])

    def update(self, update_id: int) -> dict[str, Any] | None:
        """One update row as a dict (``result`` decoded), or None."""
        r = self._conn().execute("SELECT * FROM updates WHERE id = ?", (update_id,)).fetchone()
        if r is None:
            return None
        d = dict(r)
        d["result"] = json.loads(d["result"]) if d["result"] else None
        return d

    def running_updates(self) -> list[dict[str, Any]]:
        """Updates still marked queued or running."""
        marks = ",".join("?" * len(RUNNING))
        rows = self._conn().execute(f"SELECT id FROM updates WHERE status IN ({marks})", RUNNING).fetchall()
        return [self.update(r["id"]) for r in rows]
