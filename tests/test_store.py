"""The service store behaves the same on SQLite and on a real PostgreSQL server (slow tier)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from hubroute.errors import HubrouteError
from hubroute.hub import ModelCard
from hubroute.service.backends import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS
from hubroute.service.store import IdempotencyConflict, Store, UpdateRunning


def _card(i: int) -> ModelCard:
    return ModelCard(f"org/model-{i}", "fam", "Text", f"model {i} does things", 0)


def test_both_backends_have_the_same_number_of_schema_steps():
    assert len(POSTGRES_MIGRATIONS) == len(SQLITE_MIGRATIONS)


def test_registry_changes_take_revisions_in_order(store_spec):
    store = Store(store_spec)
    assert store.schema_version == len(SQLITE_MIGRATIONS) and store.registry_revision() == 0
    assert store.add_models([_card(i) for i in range(3)]) == []
    assert store.add_models([_card(2), _card(9)]) == ["org/model-2"]  # nothing of this call is stored
    assert [c.model_id for c, _ in store.models()] == [f"org/model-{i}" for i in range(3)]
    store.set_status("org/model-1", "retired")
    store.set_statuses(["org/model-0", "org/model-7"], "retired", [_card(7)])
    revision, changed = store.models_since(1)
    assert revision == store.registry_revision() == 3
    assert [(c.model_id, s) for c, s in changed] == [
        ("org/model-0", "retired"),
        ("org/model-1", "retired"),
        ("org/model-7", "retired"),
    ]
    assert store.models_since(3) == (3, [])
    store.delete_models(["org/model-7"])
    assert "org/model-7" not in {c.model_id for c, _ in store.models()} and store.registry_revision() == 4


def test_feedback_ids_idempotency_and_updates(store_spec):
    store = Store(store_spec)
    ids, replay = store.add_feedback(
        [("p1", "org/model-0", None), ("p2", "org/model-1", "Text")], idempotency=("k", "1")
    )
    assert not replay and ids[1] == ids[0] + 1
    assert store.add_feedback([("p1", "org/model-0", None), ("p2", "org/model-1", "Text")], idempotency=("k", "1")) == (
        ids,
        True,
    )
    with pytest.raises(IdempotencyConflict):
        store.add_feedback([("other", "org/model-0", None)], idempotency=("k", "1"))
    assert store.feedback_count() == 2 == store.feedback_count(pending_only=True)
    uid = store.create_update("v0001")
    with pytest.raises(UpdateRunning, match=f"update {uid} is already"):
        store.create_update("v0001")
    assert store.claim_update(uid, 123, 1.5) and not store.claim_update(uid, 123, 1.5)
    u = store.update(uid)
    assert (u["status"], u["pid"], u["max_feedback_id"], u["host"]) == ("running", 123, ids[1], u["host"])
    assert store.finish_update(uid, "promoted", {"m": 1.0}, "v0002", ids)
    assert store.update(uid)["result"] == {"m": 1.0} and store.feedback_count(pending_only=True) == 0
    assert not store.finish_update(uid, "promoted", {}, "v0003", [])  # closed once
    assert [i for i, _ in store.pending_feedback(10**9)] == []


def test_keys_and_audit(store_spec):
    store = Store(store_spec)
    store.add_key("k1", "ops", "ab" * 32, ["admin", "route"])
    assert [(k["name"], k["scopes"]) for k in store.api_keys()] == [("ops", ["admin", "route"])]
    assert store.revoke_key("ops") and not store.revoke_key("ops")
    assert store.api_keys(include_revoked=False) == []
    for i in range(3):
        store.audit("ops", "models.add", f"m{i}", {"n": i})
    assert [a["target"] for a in store.audit_log(limit=2)] == ["m2", "m1"]
    assert store.audit_log(limit=1, offset=2)[0]["detail"] == {"n": 0}


def test_of_many_concurrent_starters_exactly_one_update_starts(store_spec):
    """Each thread has its own connection, as replicas do: the check and the insert are atomic."""
    Store(store_spec)
    barrier, started, refused = threading.Barrier(8), [], []

    def start() -> None:
        store = Store(store_spec)
        barrier.wait(timeout=30)
        try:
            started.append(store.create_update("v0001"))
        except UpdateRunning:
            refused.append(1)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(started) == 1 and len(refused) == 7


def test_an_update_nobody_stamps_is_taken_for_dead_and_a_new_one_starts(store_spec):
    store = Store(store_spec)
    gone = store.create_update("v0001")
    assert store.claim_update(gone, 4242, 1.0)
    with pytest.raises(UpdateRunning):
        store.create_update("v0001", stale_s=60)
    time.sleep(0.05)
    store.heartbeat(gone)
    with pytest.raises(UpdateRunning):
        store.create_update("v0001", stale_s=5)  # stamped just now: alive
    time.sleep(0.3)
    fresh = store.create_update("v0001", stale_s=0.2)
    assert fresh != gone and store.update(gone)["status"] == "interrupted"
    assert "stopped stamping" in store.update(gone)["error"]


def test_an_older_sqlite_store_is_migrated_forward(tmp_path):
    import sqlite3

    path = tmp_path / "hub.sqlite"
    with sqlite3.connect(path) as db:  # a store made before revisions and heartbeats existed
        db.executescript(SQLITE_MIGRATIONS[0] + SQLITE_MIGRATIONS[1])
        db.execute("INSERT INTO models VALUES ('org/old', ?, 'active', 1.0)", (_card(0).to_dict().__repr__(),))
        db.execute("PRAGMA user_version = 2")
    store = Store(path)
    assert store.schema_version == len(SQLITE_MIGRATIONS) and store.registry_revision() == 0
    assert store.create_update("v0001") == 1 and store.update(1)["host"] is None


@pytest.mark.slow
def test_replicas_starting_together_migrate_a_postgresql_store_once(postgres_url):
    code = f"from hubroute.service.store import Store; print(Store({postgres_url!r}).schema_version)"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0] * 4 and outs == [str(len(POSTGRES_MIGRATIONS))] * 4


@pytest.mark.slow
def test_an_unreachable_postgresql_store_is_one_clear_line_without_the_password(tmp_path):
    url = f"postgresql://ops:s3cret@/hub?host={tmp_path}&connect_timeout=2"
    with pytest.raises(HubrouteError) as e:
        Store(url)
    message = str(e.value)
    assert message.startswith("cannot connect to the store postgresql://ops:***@/hub")
    assert "s3cret" not in message and "\n" not in message
