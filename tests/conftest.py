"""Shared fixtures: the CMRBench copy, a small synthetic stream, the real default encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

SHARED_CMRBENCH = Path(__file__).resolve().parents[2] / "shared" / "cmrbench"


@pytest.fixture(scope="session")
def cmrbench_dir() -> Path:
    """The read-only CMRBench copy beside the checkout (``../shared/cmrbench``)."""
    path = Path(os.environ.get("HUBROUTE_TEST_CMRBENCH", SHARED_CMRBENCH))
    if not (path / "processed").is_dir():
        pytest.skip(f"CMRBench copy not found at {path} (set HUBROUTE_TEST_CMRBENCH)")
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedding cache for the whole session."""
    return tmp_path_factory.mktemp("emb-cache")


@pytest.fixture(scope="session")
def encoder(cache_dir: Path):
    """The real default encoder (all-MiniLM-L6-v2 from its PyPI package), cached on disk."""
    from hubroute.encoders import load_encoder

    return load_encoder("default", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def small_stream():
    """A 160-model SYNTHETIC stream of 4 experiences."""
    from hubroute.data.synth import SynthConfig, synth_stream

    return synth_stream(SynthConfig(models=160, experiences=4, seed=7))


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):
    """A real PostgreSQL 16 server (from the ``pgserver`` wheel) on a Unix socket, for the session."""
    pgserver = pytest.importorskip("pgserver", reason="pgserver is installed by the dev extra")
    server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    yield server
    server.cleanup()


@pytest.fixture
def postgres_url(postgres_server, request: pytest.FixtureRequest) -> str:
    """The URL of a new, empty database on :func:`postgres_server` (one per test)."""
    import re

    import psycopg

    name = "t_" + re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:50] + f"_{os.getpid()}"
    base = postgres_server.get_uri()
    with psycopg.connect(base, autocommit=True) as db:
        db.execute(f"DROP DATABASE IF EXISTS {name}")
        db.execute(f"CREATE DATABASE {name}")
    return base.replace("/postgres?", f"/{name}?", 1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.slow)])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a test's store lives: a SQLite file (fast tier) or a PostgreSQL database (slow tier)."""
    if request.param == "sqlite":
        return str(tmp_path / "hub.sqlite")
    return request.getfixturevalue("postgres_url")
