from __future__ import annotations

import numpy as np
import pytest

from hubroute.errors import HubrouteError, RegistryError
from hubroute.evaluation.metrics import hits, topk_accuracy
from hubroute.hub import ModelCard
from hubroute.routers import BM25Router, DenseCardRouter, HybridRouter, load_router, make_router


def _routers(encoder):
    return [
        BM25Router(),
        DenseCardRouter(encoder),
        DenseCardRouter(encoder, domain_weight=1.0, domain_pool="centroid"),
        HybridRouter(encoder),
        HybridRouter(encoder, fusion="rrf"),
    ]


@pytest.mark.parametrize("idx", range(5))
def test_zero_shot_routers_beat_chance(encoder, small_stream, idx):
    r = _routers(encoder)[idx]
    for e in small_stream:
        r.fit(e)
    ex = [x for e in small_stream for x in e.eval]
    rows, _ = r.rank([x.prompt for x in ex], 5)
    h = hits(rows, ex, r.registry_)
    chance = 100 / len(r.registry_)
    assert topk_accuracy(h["M"], 5) > 20 * 5 * chance
    assert topk_accuracy(h["D"], 1) > 40


def test_retired_models_are_never_routed(encoder, small_stream):
    r = HybridRouter(encoder)
    r.fit(small_stream[0])
    prompts = [x.prompt for x in small_stream[0].eval]
    first = {h[0].model_id for h in r.route(prompts, 1)}
    r.retire(first)
    after = {h.model_id for hs in r.route(prompts, 10) for h in hs}
    assert not first & after
    r.activate(first)
    assert {h[0].model_id for h in r.route(prompts, 1)} == first


def test_cold_start_card_is_routable_at_once(encoder, small_stream):
    r = HybridRouter(encoder)
    r.fit(small_stream[0])
    new = ModelCard(
        "lab/quasar-tide-detector",
        family="quasar",
        domain="Audio Audio Classification",
        text="lab/quasar-tide-detector: detects ocean tide sounds and whale songs in hydrophone recordings.",
    )
    r.add_models([new])
    top = r.route("find whale songs in my hydrophone recordings of the ocean", 3)[0]
    assert top[0].model_id == "lab/quasar-tide-detector"
    assert top[0].domain == "Audio Audio Classification"
    with pytest.raises(RegistryError):
        r.add_models([new])


def test_save_load_routes_identically(encoder, small_stream, tmp_path):
    for r in (BM25Router(), HybridRouter(encoder, w_bm25=0.4)):
        for e in small_stream:
            r.fit(e)
        r.retire([small_stream[0].new_cards[0].model_id])
        prompts = [x.prompt for x in small_stream[3].eval[:20]]
        path = r.save(tmp_path / r.kind)
        back = load_router(path)
        assert type(back) is type(r) and back.get_params() == r.get_params()
        assert np.array_equal(back.registry_.active_mask, r.registry_.active_mask)
        a, b = r.rank(prompts, 5), back.rank(prompts, 5)
        assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], atol=1e-5)
        assert "hubroute router" in (path / "README.md").read_text()
        r.save(path)  # overwriting an existing artifact works


def test_router_errors():
    with pytest.raises(HubrouteError, match="unknown router"):
        make_router("nope")
    with pytest.raises(HubrouteError, match="bad parameters"):
        make_router("bm25", colour="red")
    with pytest.raises(HubrouteError, match="knows no models"):
        BM25Router().route("hello")
    with pytest.raises(HubrouteError, match="fusion"):
        HybridRouter("default", fusion="max")
