"""The service's durable store: registered models, feedback, update jobs, API keys, the audit log
and idempotency keys.

It lives in one SQLite file of the state folder (the default: WAL mode, ``synchronous=FULL``) or
in a PostgreSQL database that replicas on several hosts share (``--store postgresql://…``); see
:mod:`hubroute.service.backends`. Either way a row is durable once its call returns, so a killed
server loses nothing it acknowledged, and the schema is versioned and migrated forward on open.

Every change of the registry (a card stored, a status set) takes the next *registry revision*
in its transaction and stamps the rows it touched with it, so a server that shares the store
finds what changed since the revision it last applied (:meth:`Store.models_since`).
"""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from hubroute.errors import HubrouteError
from hubroute.hub import ModelCard, RoutingExample
from hubroute.service.backends import Backend, open_backend

RUNNING = ("queued", "running")  # statuses of an update that has not ended
STALE_S = 60.0  # an update whose worker has not stamped it for this long is taken for dead


class IdempotencyConflict(HubrouteError):
    """An idempotency key was reused for a different request."""


class UpdateRunning(HubrouteError):
    """An update is queued or running already (by any server sharing the store)."""


class Store:
    """Models, feedback, updates, keys and audit log of one service: ``path`` is a SQLite file
    (``<state>/hub.sqlite``) or a ``postgresql://`` URL."""

    def __init__(self, path: str | Path):
        self.backend = open_backend(path)

    @property
    def schema_version(self) -> int:
        """The store's schema step (the number of migration steps once migrated)."""
        return self.backend.schema_version

    def tx(self) -> AbstractContextManager[Backend]:
        """A write transaction (rolled back on error)."""
        return self.backend.tx()

    def _q(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        return self.backend.execute(sql, params)

    # -- models --------------------------------------------------------------------------
    def add_model(self, card: ModelCard) -> bool:
        """Store a new card; False when the id is already stored (nothing changes)."""
        return self.add_models([card]) == []

    def add_models(self, cards: Sequence[ModelCard]) -> list[str]:
        """Store new cards in one transaction; returns the ids already stored (then nothing is
        stored)."""
        now = time.time()
        with self.tx() as db:
            taken = [
                c.model_id
                for c in cards
                if db.execute("SELECT 1 FROM models WHERE model_id = ?", (c.model_id,)).fetchone()
            ]
            if taken:
                return taken
            rev = self._next_revision(db)
            db.executemany(
                "INSERT INTO models (model_id, card, status, created_at, revision) VALUES (?, ?, 'active', ?, ?)",
                [(c.model_id, json.dumps(c.to_dict()), now, rev) for c in cards],
            )
        return []

    def delete_models(self, model_ids: Sequence[str]) -> None:
        """Remove cards that were stored but could not be registered (undo of :meth:`add_models`)."""
        with self.tx() as db:
            db.executemany("DELETE FROM models WHERE model_id = ?", [(m,) for m in model_ids])
            self._next_revision(db)

    def set_status(self, model_id: str, status: str, card: ModelCard | None = None) -> None:
        """Record a model's status; ``card`` stores the card too when the model came from the
        router's own registry and is not in the table yet."""
        with self.tx() as db:
            rev = self._next_revision(db)
            if card is not None:
                db.execute(
                    "INSERT INTO models (model_id, card, status, created_at) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT DO NOTHING",
                    (model_id, json.dumps(card.to_dict()), status, time.time()),
                )
            db.execute("UPDATE models SET status = ?, revision = ? WHERE model_id = ?", (status, rev, model_id))

    def set_statuses(self, model_ids: Sequence[str], status: str, cards: Sequence[ModelCard]) -> None:
        """Record the status of many models in one transaction (cards stored when missing)."""
        now = time.time()
        with self.tx() as db:
            rev = self._next_revision(db)
            db.executemany(
                "INSERT INTO models (model_id, card, status, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(c.model_id, json.dumps(c.to_dict()), status, now) for c in cards],
            )
            db.executemany(
                "UPDATE models SET status = ?, revision = ? WHERE model_id = ?", [(status, rev, m) for m in model_ids]
            )

    @staticmethod
    def _next_revision(db: Backend) -> int:
        """Take the next registry revision (inside a write transaction)."""
        db.execute("UPDATE meta SET v = v + 1 WHERE k = 'registry_revision'")
        return int(db.execute("SELECT v FROM meta WHERE k = 'registry_revision'").fetchone()["v"])

    def registry_revision(self) -> int:
        """The revision of the newest registry change."""
        return int(self._q("SELECT v FROM meta WHERE k = 'registry_revision'").fetchone()["v"])

    def models_since(self, revision: int) -> tuple[int, list[tuple[ModelCard, str]]]:
        """The registry revision now, and the cards and statuses changed after ``revision`` (in
        insertion order; rows that no longer parse are skipped), read in one snapshot."""
        with self.backend.snapshot() as db:
            now = int(db.execute("SELECT v FROM meta WHERE k = 'registry_revision'").fetchone()["v"])
            rows = db.execute(
                "SELECT card, status FROM models WHERE revision > ? ORDER BY {seq}", (revision,)
            ).fetchall()
        out = []
        for r in rows:
            try:
                out.append((ModelCard.from_dict(json.loads(r["card"])), r["status"]))
            except (ValueError, TypeError):
                continue
        return now, out

    def models(self) -> list[tuple[ModelCard, str]]:
        """Every stored card and its status, in insertion order; rows that no longer parse as a
        card are skipped (see :meth:`unreadable_models`)."""
        out = []
        for r in self._q("SELECT card, status FROM models ORDER BY {seq}"):
            try:
                out.append((ModelCard.from_dict(json.loads(r["card"])), r["status"]))
            except (ValueError, TypeError):
                continue
        return out

    def unreadable_models(self) -> list[str]:
        """Ids of stored rows whose card does not parse."""
        bad = []
        for r in self._q("SELECT model_id, card FROM models ORDER BY {seq}"):
            try:
                ModelCard.from_dict(json.loads(r["card"]))
            except (ValueError, TypeError):
                bad.append(r["model_id"])
        return bad

    # -- feedback ------------------------------------------------------------------------
    def add_feedback(
        self, items: Sequence[tuple[str, str, str | None]], *, idempotency: tuple[str, str] | None = None
    ) -> tuple[list[int], bool]:
        """Store (prompt, model_id, domain) rows; returns their ids, and whether this was a
        replay: with ``idempotency = (owner, key)``, a key seen before with the same items
        returns the ids stored the first time and stores nothing (the same key with other items
        raises :class:`IdempotencyConflict`)."""
        now = time.time()
        digest = hashlib.sha256(json.dumps(list(items)).encode("utf-8")).hexdigest()
        with self.tx() as db:
            if idempotency is not None:
                row = db.execute("SELECT response FROM idempotency WHERE owner = ? AND key = ?", idempotency).fetchone()
                if row is not None:
                    saved = json.loads(row["response"])
                    if saved.get("request_sha256", digest) != digest:
                        raise IdempotencyConflict("this Idempotency-Key was used before with other feedback items")
                    return list(saved["ids"]), True
            ids = []
            for prompt, model_id, domain in items:
                cur = db.execute(
                    "INSERT INTO feedback (prompt, model_id, domain, created_at) VALUES (?, ?, ?, ?) RETURNING id",
                    (prompt, model_id, domain, now),
                )
                ids.append(int(cur.fetchone()["id"]))
            if idempotency is not None:
                db.execute(
                    "INSERT INTO idempotency (owner, key, response, created_at) VALUES (?, ?, ?, ?)",
                    (*idempotency, json.dumps({"ids": ids, "request_sha256": digest}), now),
                )
        return ids, False

    def feedback_count(self, pending_only: bool = False) -> int:
        """Number of feedback rows (only those no update consumed yet, if asked)."""
        q = "SELECT COUNT(*) AS n FROM feedback" + (" WHERE update_id IS NULL" if pending_only else "")
        return int(self._q(q).fetchone()["n"])

    def pending_feedback(self, max_id: int) -> list[tuple[int, RoutingExample]]:
        """Unconsumed feedback up to ``max_id`` as (id, example); family is filled by the caller."""
        rows = self._q(
            "SELECT id, prompt, model_id, domain FROM feedback WHERE update_id IS NULL AND id <= ? ORDER BY id",
            (max_id,),
        ).fetchall()
        return [(r["id"], RoutingExample(r["prompt"], r["model_id"], r["domain"] or "", "")) for r in rows]

    # -- updates -------------------------------------------------------------------------
    def create_update(self, from_version: str, stale_s: float = STALE_S) -> int:
        """A queued update over all feedback stored so far; returns its id. :class:`UpdateRunning`
        when one is queued or running already: the check and the insert are one write
        transaction, so of servers sharing the store exactly one starts an update. An update
        not stamped for ``stale_s`` seconds (its worker, on whatever host, is gone) is marked
        interrupted first."""
        now = time.time()
        with self.tx() as db:
            db.lock_updates()
            db.execute(
                "UPDATE updates SET status = 'interrupted', finished_at = ?, "
                "error = 'its worker stopped stamping it (host or server gone)' "
                "WHERE status IN (?, ?) AND COALESCE(heartbeat_at, created_at) < ?",
                (now, *RUNNING, now - stale_s),
            )
            running = db.execute(
                "SELECT id FROM updates WHERE status IN (?, ?) ORDER BY id LIMIT 1", RUNNING
            ).fetchone()
            if running is not None:
                raise UpdateRunning(f"update {running['id']} is already queued or running")
            max_id = int(db.execute("SELECT COALESCE(MAX(id), 0) AS n FROM feedback").fetchone()["n"])
            cur = db.execute(
                "INSERT INTO updates (status, created_at, from_version, max_feedback_id) VALUES ('queued', ?, ?, ?) "
                "RETURNING id",
                (time.time(), from_version, max_id),
            )
            return int(cur.fetchone()["id"])

    def set_update(self, update_id: int, **fields: Any) -> None:
        """Change columns of an update row (``result`` is stored as JSON)."""
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self.tx() as db:
            db.execute(f"UPDATE updates SET {cols} WHERE id = ?", (*fields.values(), update_id))

    def claim_update(self, update_id: int, pid: int, pid_started: float) -> bool:
        """Mark a queued update running in process ``pid`` (started at ``pid_started``) on this
        host; False when it is no longer queued (cancelled meanwhile)."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE updates SET status = 'running', pid = ?, pid_started = ?, host = ?, heartbeat_at = ?, "
                "stage = 'loading', progress = 0.05 WHERE id = ? AND status = 'queued'",
                (pid, pid_started, socket.gethostname(), time.time(), update_id),
            )
            return cur.rowcount == 1

    def heartbeat(self, update_id: int) -> None:
        """Stamp a running update: its worker is alive."""
        with self.tx() as db:
            db.execute("UPDATE updates SET heartbeat_at = ? WHERE id = ?", (time.time(), update_id))

    def finish_update(
        self, update_id: int, status: str, result: dict[str, Any], to_version: str | None, ids: list[int]
    ) -> bool:
        """Close a running update and mark the feedback it consumed, in one transaction; False
        (and nothing changes) when the update is no longer running (it was cancelled)."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE updates SET status = ?, stage = 'done', progress = 1, finished_at = ?, to_version = ?, "
                "result = ? WHERE id = ? AND status IN ('queued', 'running')",
                (status, time.time(), to_version, json.dumps(result), update_id),
            )
            if cur.rowcount != 1:
                return False
            db.executemany("UPDATE feedback SET update_id = ? WHERE id = ?", [(update_id, i) for i in ids])
        return True

    def cancel_updates(self, reason: str, status: str = "cancelled") -> list[dict[str, Any]]:
        """Mark every queued or running update ``status`` with ``reason``; returns them as they
        were (their workers are the caller's to stop)."""
        running = self.running_updates()
        with self.tx() as db:
            for u in running:
                db.execute(
                    "UPDATE updates SET status = ?, error = ?, finished_at = ? WHERE id = ? AND status IN (?, ?)",
                    (status, reason, time.time(), u["id"], *RUNNING),
                )
        return running

    def update(self, update_id: int) -> dict[str, Any] | None:
        """One update row as a dict (``result`` decoded), or None."""
        r = self._q("SELECT * FROM updates WHERE id = ?", (update_id,)).fetchone()
        if r is None:
            return None
        d = dict(r)
        d["result"] = json.loads(d["result"]) if d["result"] else None
        return d

    def running_updates(self) -> list[dict[str, Any]]:
        """Updates still marked queued or running."""
        marks = ",".join("?" * len(RUNNING))
        rows = self._q(f"SELECT id FROM updates WHERE status IN ({marks})", RUNNING).fetchall()
        return [u for u in (self.update(r["id"]) for r in rows) if u is not None]

    # -- API keys --------------------------------------------------------------------------
    def add_key(self, key_id: str, name: str, secret_sha256: str, scopes: Sequence[str]) -> None:
        """Store a key's id, name, the SHA-256 of its secret and its scopes."""
        with self.tx() as db:
            db.execute(
                "INSERT INTO api_keys (key_id, name, secret_sha256, scopes, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, name, secret_sha256, ",".join(scopes), time.time()),
            )

    def api_keys(self, include_revoked: bool = True) -> list[dict[str, Any]]:
        """Every stored key (without anything secret beyond the hash)."""
        q = "SELECT * FROM api_keys" + ("" if include_revoked else " WHERE revoked_at IS NULL") + " ORDER BY created_at"
        return [dict(r) | {"scopes": r["scopes"].split(",") if r["scopes"] else []} for r in self._q(q)]

    def revoke_key(self, key_or_name: str) -> bool:
        """Revoke a key by id or name; False when no live key matches."""
        with self.tx() as db:
            cur = db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE (key_id = ? OR name = ?) AND revoked_at IS NULL",
                (time.time(), key_or_name, key_or_name),
            )
            return cur.rowcount > 0

    # -- audit log -------------------------------------------------------------------------
    def audit(self, actor: str, action: str, target: str = "", detail: dict[str, Any] | None = None) -> None:
        """Record one admin action: who, what, on what, when."""
        with self.tx() as db:
            db.execute(
                "INSERT INTO audit (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
                (time.time(), actor, action, target, json.dumps(detail or {})),
            )

    def audit_log(self, limit: int = 100, offset: int = 0) -> list[dict[str, Any]]:
        """The newest audit entries first."""
        rows = self._q("SELECT * FROM audit ORDER BY id DESC LIMIT ? OFFSET ?", (limit, offset))
        return [dict(r) | {"detail": json.loads(r["detail"])} for r in rows]
