from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hubroute.errors import DataError, HubrouteError
from hubroute.evaluation.metrics import hits, topk_accuracy
from hubroute.hub import Experience, RoutingExample
from hubroute.routers import CentroidRouter, DenseCardRouter, load_router, make_router


def _fit(router, stream):
    for e in stream:
        router.fit(e)
    return router


def _acc(router, examples, key="M"):
    rows, _ = router.rank([x.prompt for x in examples], 1)
    return topk_accuracy(hits(rows, examples, router.registry_)[key], 1)


def test_centroids_learn_beyond_the_cards(encoder, small_stream):
    ex = [x for e in small_stream for x in e.eval]
    cards_only = _acc(_fit(DenseCardRouter(encoder), small_stream), ex)
    r = _fit(CentroidRouter(encoder), small_stream)
    assert _acc(r, ex) > cards_only + 10
    assert _acc(r, ex, "D") > 85
    assert r.counts_.sum() == sum(len(e.train) for e in small_stream)


def test_centroid_is_the_exact_running_mean(encoder, small_stream):
    r = _fit(CentroidRouter(encoder, card_weight=0.0), small_stream)
    model = small_stream[0].train[0].model_id
    prompts = [x.prompt for e in small_stream for x in e.train if x.model_id == model]
    want = encoder.encode(prompts).mean(0)
    got = r.centroids()[r.registry_.row(model)]
    assert np.allclose(got, want / np.linalg.norm(want), atol=1e-5)
    # learning the stream in one experience gives the same router as learning it in four
    whole = Experience(
        index=0,
        name="all",
        new_cards=small_stream.all_cards(),
        train=[x for e in small_stream for x in e.train],
        eval=[],
    )
    one = CentroidRouter(encoder, card_weight=0.0).fit(whole)
    assert np.allclose(one.centroids(), r.centroids(), atol=1e-5)


def test_models_without_prompts_route_by_their_card(encoder, small_stream):
    e = small_stream[0]
    r = CentroidRouter(encoder).fit(dataclasses.replace(e, train=[]))
    assert np.allclose(r.centroids(), r.card_vectors_, atol=1e-6)
    assert _acc(r, e.eval, "D") > 20


def test_centroid_save_load_and_errors(encoder, small_stream, tmp_path):
    r = _fit(CentroidRouter(encoder, card_weight=0.25), small_stream)
    r.retire([small_stream[0].new_cards[0].model_id])
    prompts = [x.prompt for x in small_stream[3].eval[:20]]
    back = load_router(r.save(tmp_path / "c"))
    assert isinstance(back, CentroidRouter) and back.get_params() == r.get_params()
    a, b = r.rank(prompts, 5), back.rank(prompts, 5)
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], atol=1e-6)
    with pytest.raises(HubrouteError, match="card_weight"):
        make_router("centroid", card_weight=-1)
    stray = RoutingExample(prompt="hello", model_id="nobody/none", domain="d", family="f")
    with pytest.raises(HubrouteError, match="not registered: nobody/none"):
        back.fit(Experience(index=9, name="bad", new_cards=[], train=[stray], eval=[]))
    (tmp_path / "c" / "centroids.safetensors").write_bytes(b"")
    with pytest.raises(DataError, match="unreadable"):
        load_router(tmp_path / "c")
    from safetensors.numpy import save_file

    save_file({"sums": np.zeros((1, 3))}, str(tmp_path / "c" / "centroids.safetensors"))
    with pytest.raises(DataError, match="card_vectors"):
        load_router(tmp_path / "c")
