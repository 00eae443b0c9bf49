"""CARvE's components: candidate sets and hard mining, anchoring, coreset replay, batching."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from hubroute.continual import CARvEStrategy, TrainItem
from hubroute.continual.anchoring import Anchor
from hubroute.continual.coreset import domain_quotas, farthest_points, select_coreset
from hubroute.continual.negatives import CandidateSampler
from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.data.taxonomy import category_of
from hubroute.errors import HubrouteError
from hubroute.evaluation.runner import run_stream
from hubroute.hub import ModelCard
from hubroute.routers import CARvERouter, load_router
from hubroute.training.batching import domain_batches


@pytest.fixture(scope="module")
def tiny_stream():
    return synth_stream(SynthConfig(models=48, experiences=3, seed=11))


def _carve(**strategy_params) -> CARvERouter:
    return CARvERouter(training={"epochs": 3, "batch_size": 16}, seed=0, strategy_params={"k": 16, **strategy_params})


# -- candidate sets --------------------------------------------------------------------------
def test_hard_mining_finds_the_planted_confuser_and_is_cached(tiny_stream):
    router = CARvERouter(training={"epochs": 0})
    exp = tiny_stream[0]
    router.fit(exp)
    gold = exp.train[0]
    other_domain = "Tabular Tabular Regression"
    assert category_of(other_domain) != category_of(gold.domain)
    router.add_models([ModelCard("planted/confuser", "planted", other_domain, "unrelated card")])
    conf_row = router.registry_.row("planted/confuser")
    with torch.no_grad():  # the confuser's vector sits right next to the prompt
        router.table_[conf_row] = router.embed([gold.prompt])[0]
    sampler = CandidateSampler(k=12, n_hard=3, n_semantic=4, n_far=2, remine_every=5)
    rows = router.registry_.rows([gold.model_id])
    z, table = router.embed([gold.prompt]), router.row_vectors().detach()
    cand, _ = sampler.build(router.registry_, [gold.domain], rows, z, table, 0, np.random.default_rng(0))
    assert cand[0, 0] == rows[0] and cand[0, 1] == conf_row  # gold first, top hard negative next
    assert sampler.n_mined_ == 1
    sampler.build(router.registry_, [gold.domain], rows, z, table, 4, np.random.default_rng(0))
    assert sampler.n_mined_ == 1  # cached until it is remine_every steps old
    sampler.build(router.registry_, [gold.domain], rows, z, table, 5, np.random.default_rng(0))
    assert sampler.n_mined_ == 2


def test_candidate_sets_are_distinct_active_and_stratified(tiny_stream):
    router = CARvERouter(training={"epochs": 0})
    for exp in tiny_stream:
        router.fit(exp)
    reg = router.registry_
    retired = reg.model_ids[3]
    router.retire([retired])
    sampler = CandidateSampler(k=20, n_hard=4, n_semantic=8, n_far=4, gold_mass=0.9)
    examples = [e for exp in tiny_stream for e in exp.train if e.model_id != retired][:40]
    rows = reg.rows(e.model_id for e in examples)
    z = router.embed([e.prompt for e in examples])
    cand, target = sampler.build(
        reg, [e.domain for e in examples], rows, z, router.row_vectors().detach(), 0, np.random.default_rng(1)
    )
    assert cand.shape == (40, 20)
    active = reg.active_mask
    for i, e in enumerate(examples):
        c = cand[i].tolist()
        assert c[0] == rows[i] and len(set(c)) == 20 and all(active[r] for r in c)
        assert reg.row(retired) not in c
        hard = sampler.hard_[(e.domain, int(rows[i]))][1]
        assert c[1 : 1 + len(hard)] == hard
        same_domain = [r for r in c[1:] if reg.cards[r].domain == e.domain]
        n_domain = sum(1 for r in np.flatnonzero(active) if reg.cards[r].domain == e.domain) - 1
        assert len(same_domain) >= min(8, n_domain)  # semantic negatives come from the domain first
        far = [r for r in c[1:] if category_of(reg.cards[r].domain) != category_of(e.domain)]
        assert len(far) >= 1
        assert target[i].sum().item() == pytest.approx(1.0)
        assert target[i, 0].item() == pytest.approx(0.9 if same_domain else 1.0)


# -- anchoring -------------------------------------------------------------------------------
def _old_row_drift(strategy_params: dict, tiny_stream) -> float:
    router = CARvERouter(  # rows not refreshed: only training moves them
        training={"epochs": 4, "batch_size": 16, "lr_rows": 5e-2, "lr_proj": 1e-2},
        seed=0,
        strategy_params={"k": 16, **strategy_params},
        row_refresh=False,
    )
    router.fit(tiny_stream[0])
    before = router.row_vectors().detach().clone()
    router.fit(tiny_stream[1])
    after = router.row_vectors().detach()[: len(before)]
    return float((1 - (before * after).sum(-1)).mean())


def test_anchoring_bounds_the_drift_of_old_rows(tiny_stream):
    free = _old_row_drift({"anchor": "none", "phase1_lr_old_rows": 1.0, "anchor_fraction": 1.0}, tiny_stream)
    anchored = _old_row_drift({"anchor": "emb", "phase1_lr_old_rows": 1.0, "anchor_fraction": 1.0}, tiny_stream)
    assert anchored < 0.25 * free
    assert anchored < 0.01


def test_anchor_terms_cover_old_rows_and_the_projection_only(tiny_stream):
    router = CARvERouter(training={"epochs": 0})
    router.fit(tiny_stream[0])
    anchor = Anchor("both", lam_emb=2.0, lam_proj=3.0)
    assert anchor.penalty(router) is None  # nothing to anchor to yet
    anchor.capture(router)
    assert anchor.penalty(router).item() == pytest.approx(0.0, abs=1e-6)
    n_old = anchor.n_rows
    router.add_models(tiny_stream[1].new_cards)
    with torch.no_grad():
        router.table_[n_old:] = -router.table_[n_old:]  # new rows are free to move
    assert anchor.terms(router)["emb"].item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        router.table_[0] = -router.table_[0]  # one old row flips: 1 - cos = 2
        router.proj_.weight.add_(0.5)
    t = anchor.terms(router)
    assert t["emb"].item() == pytest.approx(2.0 / n_old, rel=1e-4)
    assert t["proj"].item() == pytest.approx(0.25, rel=1e-4)
    assert anchor.penalty(router).item() == pytest.approx(2.0 * t["emb"].item() + 3.0 * 0.25, rel=1e-4)
    assert Anchor("proj", 2.0, 3.0).penalty(router) is None  # no snapshot
    with pytest.raises(HubrouteError, match="anchor mode"):
        Anchor("sideways")


def test_phase_one_scales_learning_rates_old_rows_and_replay_weight(tiny_stream):
    router = _carve()
    router.fit(tiny_stream[0])
    strategy = router.strategy_
    trainer = router.trainer()
    strategy.on_step(trainer, 0, 10)
    assert strategy.anchoring.phase_ == 1 and strategy.lr_scales(trainer)["proj"] == pytest.approx(0.1)
    replayed = TrainItem(tiny_stream[0].train[0], replayed=True)
    assert strategy.weight_factor(replayed) == 5.0
    scale = strategy.row_step_scale(trainer)
    assert scale is not None and float(scale[0]) == pytest.approx(0.1)
    strategy.on_step(trainer, 4, 10)  # 40 % of the steps done: phase 2
    assert strategy.anchoring.phase_ == 2 and strategy.weight_factor(replayed) == 1.0
    assert strategy.row_step_scale(trainer) is None
    assert strategy.lr_scales(trainer)["proj"] == pytest.approx(1.0)


# -- coreset replay --------------------------------------------------------------------------
def test_domain_quotas_are_proportional_with_a_floor_and_meet_the_budget():
    counts = {"a": 500, "b": 300, "c": 20, "d": 3}
    q = domain_quotas(counts, 100, min_per_domain=5)
    assert sum(q.values()) == 100
    assert q["d"] == 3 and q["c"] >= 5 and q["a"] > q["b"] > q["c"]
    # the budget is a hard cap: floors shrink to fit it
    assert domain_quotas({"a": 4, "b": 4}, 3, min_per_domain=5) in ({"a": 2, "b": 1}, {"a": 1, "b": 2})
    many = {f"d{i:02d}": 30 + i for i in range(40)}  # 40 domains, budget 117: floor 2, not 5
    q = domain_quotas(many, 117, min_per_domain=5)
    assert sum(q.values()) == 117 and min(q.values()) >= 2
    assert domain_quotas({"a": 9, "b": 5, "c": 7}, 2, min_per_domain=5) == {"a": 1, "b": 0, "c": 1}
    assert sum(domain_quotas(counts, 10_000).values()) == sum(counts.values())


def test_farthest_points_spread_out_and_respect_the_group_cap():
    x = np.array([[0.0], [0.1], [0.2], [5.0], [10.0], [10.1]])
    assert farthest_points(x, 3) == [3, 5, 0]  # nearest the centroid first, then the extremes
    picks = farthest_points(x, 6, groups=["m", "m", "m", "n", "m", "o"], max_per_group=2)
    assert Counter(["m", "m", "m", "n", "m", "o"][i] for i in picks)["m"] == 2 and len(picks) == 4


def test_coreset_respects_quotas_and_the_per_model_cap(encoder):
    stream = synth_stream(SynthConfig(models=60, experiences=1, train_per_model=6, seed=3))
    train = stream[0].train
    budget = round(0.2 * len(train))
    core = select_coreset(train, budget, encoder.encode, min_per_domain=5, max_per_model=3)
    per_domain = Counter(e.domain for e in core)
    quotas = domain_quotas(Counter(e.domain for e in train), budget, 5)
    assert all(per_domain[d] <= quotas[d] for d in quotas)
    assert sum(per_domain.values()) >= 0.9 * budget
    assert max(Counter(e.model_id for e in core).values()) <= 3
    assert len(set(core)) == len(core)
    assert select_coreset(train, budget, encoder.encode) == core  # deterministic


# -- batching --------------------------------------------------------------------------------
def test_domain_batches_never_repeat_a_gold_model_and_cover_every_example():
    rng = np.random.default_rng(0)
    domains = [f"d{i % 7}" for i in range(400)]
    models = [f"{d}-m{rng.integers(6)}" for d in domains]
    batches = domain_batches(domains, models, 16, 3, np.random.default_rng(1))
    assert sorted(i for b in batches for i in b) == list(range(400))
    for b in batches:
        assert len({models[i] for i in b}) == len(b)
    full = [b for b in batches if len(b) >= 16]
    assert len(full) >= 0.6 * len(batches)
    typical = np.median([len({domains[i] for i in b}) for b in full])
    assert typical <= 4
    again = domain_batches(domains, models, 16, 3, np.random.default_rng(1))
    assert again == batches
    # a few heavy models are what is left at the end: no step on a handful of examples
    models = [f"heavy{i % 3}" if i < 36 else f"m{i}" for i in range(200)]  # 3 models x 12
    domains = [f"d{i % 5}" for i in range(200)]
    batches = domain_batches(domains, models, 16, 2, np.random.default_rng(2))
    assert sorted(i for b in batches for i in b) == list(range(200))
    assert all(len({models[i] for i in b}) == len(b) for b in batches)
    assert min(len(b) for b in batches) >= 4 and len(batches) <= 13  # at most ceil(200 / 16) steps
    assert max(len(b) for b in batches) <= 16 + 3


# -- the whole strategy ----------------------------------------------------------------------
def test_carve_learns_forgets_less_than_naive_and_round_trips(small_stream, tmp_path):
    training = {"epochs": 4, "batch_size": 32, "lr_rows": 5e-3}
    carve = CARvERouter(training=training, seed=0, strategy_params={"k": 32, "ratio": 0.2})
    res = run_stream(carve, small_stream, latency=False)
    naive = CARvERouter(training=training, seed=0, strategy="naive")
    res_naive = run_stream(naive, small_stream, latency=False)
    s, sn = res.summary(), res_naive.summary()
    assert s["M"]["final_average"] > 20 * 100 / 160
    assert s["D"]["forgetting"] < sn["D"]["forgetting"]
    strategy = carve.strategy_
    assert isinstance(strategy, CARvEStrategy) and strategy.replay.buffer_
    assert strategy.anchoring.anchor_.table_ is not None
    carve.save(tmp_path / "r")
    loaded = load_router(tmp_path / "r")
    assert isinstance(loaded, CARvERouter) and loaded.strategy_.get_params() == strategy.get_params()
    prompts = [e.prompt for e in small_stream[0].eval[:20]]
    assert np.allclose(loaded.scores(prompts), carve.scores(prompts), atol=1e-5)
    assert torch.equal(loaded.strategy_.anchoring.anchor_.table_, strategy.anchoring.anchor_.table_)
    assert loaded.strategy_.replay.buffer_ == strategy.replay.buffer_


def test_bad_carve_configuration():
    with pytest.raises(HubrouteError, match="unknown CARvE setting"):
        CARvEStrategy(replay="everything")
    with pytest.raises(HubrouteError, match="anchor_fraction"):
        CARvEStrategy(anchor_fraction=1.5)
    with pytest.raises(HubrouteError, match="k >= 2"):
        CandidateSampler(k=1)
