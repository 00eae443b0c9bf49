"""The model index: exact and HNSW agree, honour the active mask and per-query masks, take added
rows without a rebuild, save and reload, and refuse bad input; routers route through it."""

from __future__ import annotations

import numpy as np
import pytest

from hubroute.errors import HubrouteError
from hubroute.index import ExactIndex, make_index
from hubroute.index.hnsw import HNSWIndex


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((40, 32)))
    rows = unit(centres[rng.integers(0, 40, 3000)] + 0.3 * rng.standard_normal((3000, 32)))
    queries = unit(centres[rng.integers(0, 40, 100)] + 0.3 * rng.standard_normal((100, 32)))
    return rows, queries


def both(rows: np.ndarray, **hnsw):
    ex, hn = ExactIndex(), HNSWIndex(prefilter_rows=0, prefilter_share=0.0, **hnsw)
    ex.build(rows)
    hn.build(rows)
    return ex, hn


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a, b, strict=True)]))


def test_exact_and_hnsw_agree(data):
    rows, queries = data
    ex, hn = both(rows)
    er, ev = ex.search(queries, 10)
    hr, hv = hn.search(queries, 10)
    assert np.mean(er[:, 0] == hr[:, 0]) >= 0.97 and overlap(er, hr) >= 0.95
    same = er[:, 0] == hr[:, 0]
    assert np.allclose(ev[same, 0], hv[same, 0], atol=2e-3)  # rescored: close to the exact cosine


def test_one_query_at_a_time_through_the_graph(data):
    rows, queries = data
    ex, hn = both(rows)
    for q in queries[:20]:
        er, _ = ex.search(q[None], 10)
        hr, hv = hn.search(q[None], 10)
        assert hr.shape == (1, 10) and overlap(er, hr) >= 0.8 and np.all(np.diff(hv[0]) <= 0)


def test_masks_retirements_and_additions(data):
    rows, queries = data
    ex, hn = both(rows[:2000])
    retired = np.arange(0, 2000, 3)
    for idx in (ex, hn):
        idx.set_active(retired, False)
    mask = np.zeros(2000, bool)
    mask[500:1700] = True
    for idx in (ex, hn):
        r, _ = idx.search(queries, 10)
        assert not np.isin(r, retired).any()
        r, _ = idx.search(queries, 10, mask)
        assert mask[r].all() and not np.isin(r, retired).any()
    er, _ = ex.search(queries, 10, mask)
    hr, _ = hn.search(queries, 10, mask)
    assert overlap(er, hr) >= 0.95  # over-fetch and filter keeps recall under a mask
    new = np.arange(2000, 3000)
    for idx in (ex, hn):
        idx.add(new, rows[2000:])
        idx.set_active(retired, True)
    er, _ = ex.search(queries, 10)
    hr, _ = hn.search(queries, 10)
    assert overlap(er, hr) >= 0.95 and len(hn) == 3000
    tiny = np.zeros(3000, bool)
    tiny[[5, 17, 2999]] = True  # a small mask is searched exactly
    small = HNSWIndex()
    small.build(rows)
    r, _ = small.search(queries, 10, tiny)
    assert r.shape == (100, 3) and set(r.ravel()) <= {5, 17, 2999}


def test_a_saved_index_reloads_and_searches_identically(data, tmp_path):
    rows, queries = data
    _, hn = both(rows)
    hn.set_active(np.arange(10), False)
    hn.save(tmp_path)
    back = HNSWIndex(prefilter_rows=0, prefilter_share=0.0)
    back.load(tmp_path)
    a, b = hn.search(queries, 10), back.search(queries, 10)
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1])


def test_bad_input_is_a_clear_error(data):
    rows, queries = data
    for idx in both(rows[:100]):
        with pytest.raises(HubrouteError, match="dimension 16; the index has 32"):
            idx.search(queries[:, :16], 5)
        with pytest.raises(HubrouteError, match="unknown index row 100"):
            idx.set_active(np.array([100]), False)
        with pytest.raises(HubrouteError, match="dimension"):
            idx.add(np.arange(100, 101), np.zeros((1, 8), np.float32))
    with pytest.raises(HubrouteError, match="unknown index 'faiss'"):
        make_index("faiss")


def test_routers_route_through_the_index(small_stream, encoder, tmp_path):
    from hubroute.routers import CentroidRouter, DenseCardRouter, load_router

    prompts = [e.prompt for exp in small_stream for e in exp.eval]
    for cls in (CentroidRouter, DenseCardRouter):
        exact = cls(encoder)
        approx = cls(encoder, index="hnsw", index_options={"prefilter_rows": 0, "prefilter_share": 0.0})
        for exp in small_stream:
            exact.fit(exp)
            approx.fit(exp)
        assert approx.uses_index() and not exact.uses_index()
        a, b = exact.rank(prompts, 5), approx.rank(prompts, 5)
        assert np.mean(a[0][:, 0] == b[0][:, 0]) >= 0.97
        gone = [small_stream[0].new_cards[0].model_id]
        approx.retire(gone)
        assert gone[0] not in {h.model_id for hs in approx.route(prompts[:20], 10) for h in hs}
        domain = small_stream[0].new_cards[1].domain
        assert all(h.domain == domain for hs in approx.route(prompts[:10], 5, domain=domain) for h in hs)
        back = load_router(approx.save(tmp_path / cls.kind))
        assert back.index_ is not None  # the saved graph is loaded, not rebuilt
        c, d = approx.rank(prompts, 5), back.rank(prompts, 5)
        assert np.array_equal(c[0], d[0])
    dense = DenseCardRouter(encoder, domain_weight=1.5, index="hnsw")
    assert not dense.uses_index()  # the domain prior needs every card's cosine: exact


def test_row_tables_grow_without_copying_themselves():
    from hubroute.rowtable import append_rows, with_room

    table = with_room(np.arange(12.0, dtype=np.float32).reshape(4, 3))
    grown = append_rows(table, np.ones((2, 3)))
    assert grown.dtype == np.float32 and grown.shape == (6, 3)
    assert np.shares_memory(grown, table)  # written into the spare rows, not copied
    assert np.array_equal(grown[:4], table) and (grown[4:] == 1).all()
    # an older, shorter view grows into a buffer of its own: the newer table's rows stay
    forked = append_rows(table, np.full((2, 3), 7.0))
    assert not np.shares_memory(forked, grown)
    assert (grown[4:] == 1).all() and (forked[4:] == 7).all()
    with pytest.raises(ValueError, match="do not fit"):
        append_rows(table, np.ones((1, 4)))


def test_adding_a_few_models_does_not_copy_the_vector_tables(data):
    from hubroute.hub import ModelCard
    from hubroute.routers import DenseCardRouter
    from hubroute.routers.base import PreparedModels

    rows, _ = data
    cards = [ModelCard(model_id=f"m/{i}", domain="d", family="f", text=f"model {i}") for i in range(len(rows))]
    router = DenseCardRouter(index="hnsw")
    router.commit_models(PreparedModels(cards[:2000], rows[:2000], 0))
    index = router.model_index()
    before, index_before = router.card_vectors_, index.vectors
    router.commit_models(PreparedModels(cards[2000:2010], rows[2000:2010], 2000))
    index = router.model_index()
    assert np.shares_memory(router.card_vectors_, before) and np.shares_memory(index.vectors, index_before)
    assert len(router.card_vectors_) == len(index.vectors) == 2010


def test_a_loaded_index_makes_room_before_an_add(data, tmp_path):
    rows, _ = data
    built = HNSWIndex()
    built.build(rows[:2000])
    built.save(tmp_path)
    index = HNSWIndex()
    index.load(tmp_path)  # the float16 table is memory-mapped
    index.reserve(10)
    reserved = index.vectors
    assert not isinstance(reserved.base, np.memmap) and len(reserved) == 2000
    index.add(np.arange(2000, 2010), rows[2000:2010])
    assert np.shares_memory(index.vectors, reserved) and len(index.vectors) == 2010
    found, _ = index.search(rows[2000:2010], 1)
    assert (found[:, 0] == np.arange(2000, 2010)).all()
