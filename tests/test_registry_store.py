"""Large-hub storage: the Parquet registry folder (append-only parts, status, round trip, damage
named) and resumable encoding of a hub's cards (to a vector file, through the embedding cache)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hubroute.data.synth import SynthConfig, synthetic_card
from hubroute.encoders.bulk import encode_to_file
from hubroute.errors import DataError
from hubroute.hub import Registry
from hubroute.registry_store import load_parquet, save_parquet

CFG = SynthConfig(models=300, seed=3)


def registry(n: int) -> Registry:
    reg = Registry()
    reg.add_unchecked([synthetic_card(CFG, i) for i in range(n)])
    return reg


def test_parquet_round_trip_keeps_cards_and_status(tmp_path):
    reg = registry(200)
    reg.cards[5].extra["license"] = "mit"
    reg.set_active_rows(np.array([3, 7]), False)
    back = load_parquet(save_parquet(reg, tmp_path / "reg"))
    assert [c.model_id for c in back.cards] == [c.model_id for c in reg.cards]
    assert back.cards == reg.cards and back.cards[5].extra["license"] == "mit"
    assert np.array_equal(back.active_mask, reg.active_mask)


def test_a_save_appends_only_the_new_rows(tmp_path):
    reg = registry(100)
    save_parquet(reg, tmp_path / "reg")
    first = (tmp_path / "reg" / "part-000001.parquet").stat().st_mtime_ns
    reg.add_unchecked([synthetic_card(CFG, i) for i in range(100, 150)])
    reg.set_active_rows(np.array([120]), False)
    save_parquet(reg, tmp_path / "reg")
    manifest = json.loads((tmp_path / "reg" / "manifest.json").read_text())
    assert [p["rows"] for p in manifest["parts"]] == [100, 50]
    assert (tmp_path / "reg" / "part-000001.parquet").stat().st_mtime_ns == first
    back = load_parquet(tmp_path / "reg")
    assert len(back) == 150 and not back.active_mask[120] and back.active_mask[119]


def test_another_registry_or_damage_is_named(tmp_path):
    save_parquet(registry(100), tmp_path / "reg")
    other = Registry()
    other.add_unchecked([synthetic_card(SynthConfig(models=300, seed=4), i) for i in range(120)])
    with pytest.raises(DataError, match="another registry"):
        save_parquet(other, tmp_path / "reg")
    (tmp_path / "reg" / "part-000001.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="unreadable part") as e:
        load_parquet(tmp_path / "reg")
    assert "part-000001.parquet" in str(e.value)
    (tmp_path / "reg" / "manifest.json").write_text("{")
    with pytest.raises(DataError, match="unreadable manifest"):
        load_parquet(tmp_path / "reg")


def test_large_routers_save_their_registry_as_parquet(encoder, tmp_path, monkeypatch):
    from hubroute.routers import DenseCardRouter, base, load_router
    from hubroute.routers.base import PreparedModels

    monkeypatch.setattr(base, "PARQUET_ROWS", 100)
    cards = registry(150).cards
    router = DenseCardRouter(encoder)
    router.commit_models(PreparedModels(cards, encoder.encode([c.text for c in cards]), 0))
    router.retire([cards[0].model_id])
    path = router.save(tmp_path / "dense")
    assert (path / "registry" / "manifest.json").is_file() and not (path / "registry.jsonl").exists()
    back = load_router(path)
    prompts = [c.text for c in cards[:20]]
    assert np.array_equal(router.rank(prompts, 5)[0], back.rank(prompts, 5)[0])
    assert not back.registry_.active_mask[0]


class Interrupted(Exception):
    pass


class StopsAfter:
    """The real encoder, interrupted after ``calls`` chunks (a killed pass)."""

    def __init__(self, encoder, calls: int):
        self.encoder, self.calls, self.dim, self.name = encoder, calls, encoder.dim, encoder.name

    def encode(self, texts, *, show_progress: bool = False):
        if self.calls == 0:
            raise Interrupted
        self.calls -= 1
        return self.encoder.encode(texts)


def test_bulk_encoding_resumes_where_it_stopped(encoder, tmp_path):
    texts = [c.text for c in registry(90).cards]
    get = lambda a, b: texts[a:b]  # noqa: E731
    with pytest.raises(Interrupted):
        encode_to_file(get, 90, StopsAfter(encoder, 2), tmp_path / "v.npy", chunk=20)
    assert (tmp_path / "v.npy.done").read_text() == "40"
    counting = StopsAfter(encoder, 10**6)
    resumed = encode_to_file(get, 90, counting, tmp_path / "v.npy", chunk=20)
    assert 10**6 - counting.calls == 3  # rows 40..89 only
    whole = encode_to_file(get, 90, encoder, tmp_path / "w.npy", chunk=90)
    assert resumed.dtype == np.float16 and np.array_equal(np.asarray(resumed), np.asarray(whole))
    with pytest.raises(DataError, match="delete it to start over"):
        encode_to_file(get, 80, encoder, tmp_path / "v.npy")


def test_an_interrupted_cached_encoding_keeps_its_finished_chunks(encoder, tmp_path, monkeypatch):
    from hubroute.encoders import cache

    monkeypatch.setattr(cache, "CHUNK", 10)
    texts = [c.text for c in registry(35).cards]
    cached = cache.CachedEncoder(StopsAfter(encoder, 2), tmp_path / "emb")
    with pytest.raises(Interrupted):
        cached.encode(texts)
    assert len(cached.cache) == 20
    cached.inner = StopsAfter(encoder, 2)  # the rest: 15 texts, two chunks
    assert np.allclose(cached.encode(texts), encoder.encode(texts), atol=1e-6)
    assert cached.inner.calls == 0 and len(cached.cache) == 35
