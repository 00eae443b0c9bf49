"""The two SQL databases a service store can live in, behind one small interface.

:class:`SQLiteBackend` is one file in the state folder (the default, one host). :class:`PostgresBackend`
is a PostgreSQL database reached by URL, shared by replicas on any number of hosts. The store
writes its SQL once, in the subset both speak (``?`` placeholders, ``INSERT … ON CONFLICT DO
NOTHING``, ``RETURNING``, named result columns, ``{seq}`` for insertion order); a backend
translates it, holds the connections (one per thread for SQLite, a pool for PostgreSQL), runs
write transactions and snapshots, and migrates its schema forward on open, one numbered step at
a time.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from hubroute.errors import HubrouteError
from hubroute.extras import require

# numbered schema steps; step i brings a store from version i to i + 1. SQLite's first three
# steps are history (stores made by earlier releases); PostgreSQL starts at the schema they built.
SQLITE_MIGRATIONS: tuple[str, ...] = (
    """
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
    """,
    """
    ALTER TABLE updates ADD COLUMN pid_started REAL;
    CREATE TABLE IF NOT EXISTS api_keys (
        key_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at REAL NOT NULL,
        revoked_at REAL
    );
    CREATE TABLE IF NOT EXISTS audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE IF NOT EXISTS idempotency (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (owner, key)
    );
    """,
    """
    ALTER TABLE models ADD COLUMN revision INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
    INSERT OR IGNORE INTO meta (k, v) VALUES ('registry_revision', 0);
    CREATE INDEX IF NOT EXISTS models_revision ON models (revision);
    """,
    """
    ALTER TABLE updates ADD COLUMN host TEXT;
    ALTER TABLE updates ADD COLUMN heartbeat_at REAL;
    """,
)

POSTGRES_MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE models (
        seq BIGSERIAL UNIQUE,
        model_id TEXT PRIMARY KEY,
        card TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'active',
        created_at DOUBLE PRECISION NOT NULL,
        revision BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX models_revision ON models (revision);
    CREATE TABLE feedback (
        id BIGSERIAL PRIMARY KEY,
        prompt TEXT NOT NULL,
        model_id TEXT NOT NULL,
        domain TEXT,
        created_at DOUBLE PRECISION NOT NULL,
        update_id BIGINT
    );
    CREATE INDEX feedback_pending ON feedback (id) WHERE update_id IS NULL;
    CREATE TABLE updates (
        id BIGSERIAL PRIMARY KEY,
        status TEXT NOT NULL,
        stage TEXT NOT NULL DEFAULT '',
        progress DOUBLE PRECISION NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        finished_at DOUBLE PRECISION,
        from_version TEXT,
        to_version TEXT,
        max_feedback_id BIGINT,
        pid BIGINT,
        result TEXT,
        error TEXT,
        pid_started DOUBLE PRECISION
    );
    CREATE TABLE api_keys (
        key_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        secret_sha256 TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION
    );
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        at DOUBLE PRECISION NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE TABLE idempotency (
        owner TEXT NOT NULL,
        key TEXT NOT NULL,
        response TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (owner, key)
    );
    CREATE TABLE meta (k TEXT PRIMARY KEY, v BIGINT NOT NULL);
    INSERT INTO meta (k, v) VALUES ('registry_revision', 0);
    """,
    "",  # steps 2 and 3 of SQLite are part of step 1 here; the numbers stay aligned
    "",
    """
    ALTER TABLE updates ADD COLUMN host TEXT;
    ALTER TABLE updates ADD COLUMN heartbeat_at DOUBLE PRECISION;
    """,
)

# pg_advisory_xact_lock keys: one for schema migration, one for starting updates
MIGRATE_LOCK = 0x6875_6272_0001
UPDATE_LOCK = 0x6875_6272_0002


class Backend(Protocol):
    """What :class:`hubroute.service.store.Store` needs of a database."""

    where: str  # the file or the URL without its password, for messages

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Any: ...

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None: ...

    @contextmanager
    def tx(self) -> Iterator[Backend]: ...

    @contextmanager
    def snapshot(self) -> Iterator[Backend]: ...

    def lock_updates(self) -> None: ...

    @property
    def schema_version(self) -> int: ...


class SQLiteBackend:
    """One SQLite file in WAL mode with ``synchronous=FULL`` (a row is on disk once its call
    returns); ``BEGIN IMMEDIATE`` makes every write transaction the only writer."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.where = str(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._migrate()

    def _conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Run one statement; the cursor's rows are read by column name."""
        return self._conn().execute(sql.replace("{seq}", "rowid"), params)

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run one statement once per row."""
        self._conn().executemany(sql.replace("{seq}", "rowid"), rows)

    @contextmanager
    def tx(self) -> Iterator[SQLiteBackend]:
        """A write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on error)."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[SQLiteBackend]:
        """Reads that see one state of the file."""
        db = self._conn()
        db.execute("BEGIN")
        try:
            yield self
        finally:
            db.execute("COMMIT")

    def lock_updates(self) -> None:
        """Nothing to do: a write transaction is the only writer already."""

    @property
    def schema_version(self) -> int:
        """The file's schema step (``PRAGMA user_version``)."""
        return int(self._conn().execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self.tx():
            for step in range(self.schema_version, len(SQLITE_MIGRATIONS)):
                for statement in SQLITE_MIGRATIONS[step].split(";"):
                    if not statement.strip():
                        continue
                    try:
                        self._conn().execute(statement)
                    except sqlite3.OperationalError as e:  # a column added by hand or an older run
                        if "duplicate column" not in str(e):
                            raise
                self._conn().execute(f"PRAGMA user_version = {step + 1}")


class Rows:
    """The rows a statement returned, read before its connection went back to the pool."""

    def __init__(self, cursor: Any):
        self.rowcount = cursor.rowcount
        self._rows = cursor.fetchall() if cursor.description else []

    def fetchone(self) -> Any:
        """The first row, or None."""
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[Any]:
        """Every row."""
        return self._rows

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rows)


class PostgresBackend:
    """A PostgreSQL database (psycopg 3) through a pool of at most ``pool_size`` autocommit
    connections per process (a replica's many request threads share them); a write
    transaction holds one connection from ``BEGIN`` to ``COMMIT`` (READ COMMITTED: the registry
    revision row serialises registry changes, an advisory lock serialises the start of updates),
    a snapshot is REPEATABLE READ. The schema steps run in one transaction under an advisory
    lock, so replicas starting together migrate once."""

    def __init__(self, url: str, pool_size: int = 8, timeout_s: float = 30.0):
        psycopg = require("psycopg", "postgresql")
        pool = require("psycopg_pool", "postgresql")
        from psycopg.rows import dict_row

        self.url = url
        self.where = _redact(url)
        self._local = threading.local()
        try:  # one direct attempt first, for a clear message when the database cannot be reached
            psycopg.connect(url, connect_timeout=10).close()
        except psycopg.Error as e:
            raise HubrouteError(f"cannot connect to the store {self.where}: {' '.join(str(e).split())}") from None
        self._pool = pool.ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout_s,
            kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 10},
            open=False,
        )
        self._pool.open()
        self._migrate()

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        held = getattr(self._local, "tx", None)
        if held is not None:  # inside this thread's transaction
            yield held
            return
        with self._pool.connection() as db:
            yield db

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> Rows:
        """Run one statement; its rows are dicts."""
        with self._connection() as db:
            return Rows(db.execute(_to_pyformat(sql), params))

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run one statement once per row."""
        if rows:
            with self._connection() as db:
                db.cursor().executemany(_to_pyformat(sql), rows)

    @contextmanager
    def tx(self) -> Iterator[PostgresBackend]:
        """A write transaction on one connection, rolled back on error."""
        if getattr(self._local, "tx", None) is not None:
            raise RuntimeError("transactions do not nest")
        with self._pool.connection() as db, db.transaction():
            self._local.tx = db
            try:
                yield self
            finally:
                self._local.tx = None

    @contextmanager
    def snapshot(self) -> Iterator[PostgresBackend]:
        """Reads that see one committed state of the database."""
        with self.tx() as db:
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            yield db

    def lock_updates(self) -> None:
        """Hold the update advisory lock until this transaction ends (one starter at a time)."""
        self.execute("SELECT pg_advisory_xact_lock(?)", (UPDATE_LOCK,))

    @property
    def schema_version(self) -> int:
        """The database's schema step (table ``hubroute_schema``)."""
        if self.execute("SELECT to_regclass('hubroute_schema') AS t").fetchone()["t"] is None:
            return 0
        return int(self.execute("SELECT version FROM hubroute_schema").fetchone()["version"])

    def _migrate(self) -> None:
        with self.tx() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATE_LOCK,))
            db.execute("CREATE TABLE IF NOT EXISTS hubroute_schema (version INTEGER NOT NULL)")
            row = db.execute("SELECT version FROM hubroute_schema").fetchone()
            if row is None:
                db.execute("INSERT INTO hubroute_schema (version) VALUES (0)")
            start = 0 if row is None else int(row["version"])
            if start > len(POSTGRES_MIGRATIONS):
                raise HubrouteError(
                    f"the store {self.where} has schema step {start}, newer than this hubroute "
                    f"({len(POSTGRES_MIGRATIONS)}): upgrade hubroute"
                )
            for step in range(start, len(POSTGRES_MIGRATIONS)):
                for statement in POSTGRES_MIGRATIONS[step].split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("UPDATE hubroute_schema SET version = ?", (step + 1,))


def _to_pyformat(sql: str) -> str:
    """The store's ``?`` placeholders as psycopg's ``%s`` (the store's SQL has no ``%``)."""
    return sql.replace("{seq}", "seq").replace("?", "%s")


def _redact(url: str) -> str:
    """``url`` without its password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def is_url(spec: str | Path) -> bool:
    """Whether ``spec`` names a PostgreSQL database rather than a SQLite file."""
    return str(spec).startswith(("postgresql://", "postgres://"))


def open_backend(spec: str | Path) -> SQLiteBackend | PostgresBackend:
    """The backend ``spec`` names: a ``postgresql://`` URL, or the path of a SQLite file."""
    return PostgresBackend(str(spec)) if is_url(spec) else SQLiteBackend(spec)
