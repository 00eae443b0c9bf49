from __future__ import annotations

import numpy as np
import pytest
import torch

from hubroute.continual import TrainItem, make_strategy
from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.errors import HubrouteError
from hubroute.evaluation.runner import run_stream
from hubroute.routers import EmbeddingRouter, load_router
from hubroute.training.losses import SampledSoftmax


@pytest.fixture(scope="module")
def tiny_stream():
    return synth_stream(SynthConfig(models=48, experiences=3, seed=11))


def _router(**kw) -> EmbeddingRouter:
    base = {"epochs": 3, "batch_size": 16, "seed": 0}
    return EmbeddingRouter.from_params({**base, **kw})


@pytest.mark.parametrize("strategy", ["naive", "replay", "ewc", "lwf", "cumulative", "joint"])
def test_every_strategy_learns_and_forgetting_is_measured(small_stream, strategy):
    res = run_stream(_router(strategy=strategy, epochs=4), small_stream, latency=False)
    s = res.summary()
    chance = 100 / 160
    assert s["M"]["final_average"] > 20 * chance
    assert s["D"]["final_average"] > 50
    assert np.isfinite(s["D"]["forgetting"]) and not np.isnan(res.matrix("D")[3]).any()


def test_naive_forgets_more_than_replay_and_joint(small_stream):
    forg = {}
    for name, params in (("naive", {}), ("replay", {"ratio": 0.2}), ("joint", {})):
        r = _router(strategy=name, strategy_params=params, epochs=4, batch_size=64, lr_rows=5e-3)
        forg[name] = run_stream(r, small_stream, latency=False).summary()["D"]["forgetting"]
    assert forg["naive"] > forg["replay"] + 3
    assert forg["naive"] > forg["joint"] + 3


def test_prompt_mean_card_and_random_rows(tiny_stream):
    exp = tiny_stream[0]
    tables = {}
    for init in ("random", "card", "prompt_mean"):
        r = _router(row_init=init, epochs=0)
        r.fit(exp)
        tables[init] = r.row_vectors().detach().clone()
        if init == "prompt_mean":
            m = exp.train[0].model_id
            prompts = [e.prompt for e in exp.train if e.model_id == m]
            want = torch.nn.functional.normalize(r.embed(prompts).mean(0), dim=-1)
            assert torch.allclose(tables[init][r.registry_.row(m)], want, atol=1e-5)
            assert not r.pending_rows_
    mixed = _router(row_init="prompt_mean", card_weight=2.0, epochs=0)
    mixed.fit(exp)
    m = exp.train[0].model_id
    prompts = [e.prompt for e in exp.train if e.model_id == m]
    card = tables["card"][mixed.registry_.row(m)]
    want = torch.nn.functional.normalize(mixed.embed(prompts).sum(0) + 2.0 * card, dim=-1)
    assert torch.allclose(mixed.row_vectors()[mixed.registry_.row(m)], want, atol=1e-5)
    with pytest.raises(HubrouteError, match="card_weight"):
        _router(card_weight=-0.5)
    assert not torch.allclose(tables["random"], tables["card"])
    assert not torch.allclose(tables["card"], tables["prompt_mean"])
    assert torch.allclose(tables["card"].norm(dim=1), torch.ones(len(tables["card"])), atol=1e-5)


def test_row_refresh_keeps_untrained_rows_the_running_prompt_mean(tiny_stream, tmp_path):
    exp1, exp2 = tiny_stream[0], tiny_stream[1]
    recurring = sorted({e.model_id for e in exp1.train} & {e.model_id for e in exp2.train})
    assert recurring
    r = _router(epochs=0, row_refresh=True)
    r.fit(exp1)
    r.save(tmp_path / "r")
    r = load_router(tmp_path / "r")  # the masses travel with the router
    assert r.row_mass_ and r.row_refresh
    r.fit(exp2)
    for m in recurring:  # exactly the mean of every prompt seen so far
        prompts = [e.prompt for e in [*exp1.train, *exp2.train] if e.model_id == m]
        want = torch.nn.functional.normalize(r.embed(prompts).sum(0), dim=-1)
        assert torch.allclose(r.row_vectors()[r.registry_.row(m)], want, atol=1e-5)
        assert r.row_mass_[r.registry_.row(m)] == pytest.approx(float(r.embed(prompts).sum(0).norm()), rel=1e-4)
    plain = _router(epochs=0)
    plain.fit(exp1)
    plain.fit(exp2)
    rows = r.registry_.rows(recurring)
    assert not torch.allclose(plain.row_vectors()[rows], r.row_vectors()[rows], atol=1e-3)
    others = [i for i in range(len(exp1.new_cards)) if i not in rows]
    assert torch.allclose(plain.row_vectors()[others], r.row_vectors()[others], atol=1e-6)
    # retired rows stay; CARvE anchors a refreshed row where the refresh put it
    c = _router(epochs=1, row_refresh=True, strategy="carve", strategy_params={"k": 8, "n_hard": 2})
    c.fit(exp1)
    c.retire([recurring[0]])
    gone = c.registry_.row(recurring[0])
    kept = c.row_vectors()[gone].detach().clone()
    c.add_models(exp2.new_cards, skip_existing=True)  # new rows are pending: not refreshed
    trainer = c.trainer()
    c.strategy_.before_experience(trainer, exp2)
    changed = c.refresh_rows(exp2.train)
    c.strategy_.on_rows_set(trainer, changed)
    assert gone not in changed and set(c.registry_.rows(recurring[1:])) <= set(changed)
    assert torch.equal(c.row_vectors()[gone], kept)
    anchor = c.strategy_.anchoring.anchor_
    assert torch.allclose(anchor.table_[changed], c.row_vectors()[changed].detach(), atol=1e-6)
    assert float(anchor.terms(c)["emb"].detach()) < 1e-6


def test_retired_rows_get_no_update_and_no_traffic(tiny_stream):
    r = _router(row_init="card")
    r.fit(tiny_stream[0])
    gone = [c.model_id for c in tiny_stream[0].new_cards[:5]]
    r.retire(gone)
    rows = r.registry_.rows(gone)
    before = r.table_.detach()[rows].clone()
    r.fit(tiny_stream[1])  # the recurring examples of retired models are skipped
    assert torch.equal(r.table_.detach()[rows], before)
    routed = {h.model_id for hs in r.route([e.prompt for e in tiny_stream[0].eval], 10) for h in hs}
    assert not routed & set(gone)


def test_sampled_candidates_and_loss(tiny_stream):
    r = _router(loss="sampled", n_candidates=8)
    r.fit(tiny_stream[0])
    r.retire([tiny_stream[0].new_cards[1].model_id])
    active = torch.from_numpy(r.registry_.active_mask)
    gold = torch.as_tensor(r.registry_.rows([tiny_stream[0].new_cards[0].model_id] * 50))
    cand = SampledSoftmax(8).sample(gold, active, torch.Generator().manual_seed(0))
    assert cand.shape == (50, 8)
    assert (cand[:, 0] == gold).all() and not (cand[:, 1:] == gold[:, None]).any()
    assert active[cand].all()
    res = run_stream(_router(loss="sampled", n_candidates=8), tiny_stream, latency=False)
    assert res.summary()["M"]["final_average"] > 25


def test_ewc_and_lwf_penalties_start_after_the_first_experience(tiny_stream):
    for name in ("ewc", "lwf"):
        r = _router(strategy=name)
        items = [TrainItem(e) for e in tiny_stream[0].train[:8]]
        r.add_models(tiny_stream[0].new_cards)
        trainer = r.trainer()
        _, batch = trainer.batch_loss(items)
        assert r.strategy_.penalty(trainer, batch) is None
        r.fit(tiny_stream[0])
        r.add_models(tiny_stream[1].new_cards)
        trainer = r.trainer()
        r.strategy_.before_experience(trainer, tiny_stream[1])
        trainer.train([TrainItem(e) for e in tiny_stream[1].train[:16]])  # move away from the anchor
        _, batch = trainer.batch_loss(items)
        pen = r.strategy_.penalty(trainer, batch)
        assert pen is not None and float(pen.detach()) > 0


def test_save_load_routes_identically_and_keeps_strategy_state(tiny_stream, tmp_path):
    r = _router(strategy="replay", strategy_params={"ratio": 0.2})
    for e in tiny_stream:
        r.fit(e)
    r.retire([tiny_stream[0].new_cards[0].model_id])
    back = load_router(r.save(tmp_path / "emb"))
    prompts = [e.prompt for e in tiny_stream[2].eval]
    a, b = r.rank(prompts, 5), back.rank(prompts, 5)
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], atol=1e-5)
    assert back.strategy_.buffer_ == r.strategy_.buffer_ and back.n_trained_ == 3
    card = (tmp_path / "emb" / "README.md").read_text()
    assert "strategy: `replay`" in card and "experiences learned: 3" in card


def test_lora_merge_trains_merges_and_round_trips(tiny_stream, tmp_path):
    r = _router(finetune="lora", strategy="merge", epochs=1, lr_encoder=5e-4, lora_r=4)
    res = run_stream(r, tiny_stream, latency=False)
    assert r.strategy_.adapters_ == ["exp0", "exp1", "exp2"]
    assert r.adapter_model().active_adapter == "merged"
    assert res.summary()["D"]["final_average"] > 40
    back = load_router(r.save(tmp_path / "lora"))
    prompts = [e.prompt for e in tiny_stream[1].eval]
    assert np.allclose(r.scores(prompts), back.scores(prompts), atol=1e-4)


def test_full_finetune_changes_the_encoder_and_reset_restores_it(tiny_stream):
    r = _router(finetune="full", epochs=1, batch_size=32, lr_encoder=1e-4)
    r.fit(tiny_stream[0])
    name = next(k for k in r._initial if k.endswith("word_embeddings.weight"))
    initial = r._initial[name]
    assert not torch.equal(r.encoder_.model.state_dict()[name[4:]], initial)
    r.reset_weights()
    assert torch.equal(r.encoder_.model.state_dict()[name[4:]], initial)
    assert r.pending_rows_ == set(range(len(r.registry_)))


def test_training_forward_in_length_sorted_chunks_keeps_order_and_gradients(tiny_stream):
    from hubroute.routers.prompt_encoder import TRAIN_CHUNK

    r = _router(finetune="full")
    r._build()
    for m in r.encoder_.model.modules():  # no dropout, so the training pass is deterministic
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    texts = [x.prompt + " extra words" * (i % 7) for i, x in enumerate(tiny_stream[0].train[: 3 * TRAIN_CHUNK + 5])]
    with_grad = r.encoder_.features(texts, grad=True)
    routed = r.encoder_.features(texts, grad=False)  # other chunks: INFERENCE_CHUNK
    assert torch.allclose(with_grad.detach(), routed, atol=1e-4)
    one = r.encoder_.features(texts[5:6], grad=False)
    assert torch.allclose(with_grad[5].detach(), one[0], atol=1e-4)
    with_grad[5].sum().backward()  # the gradient reaches the encoder through the gather
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in r.encoder_.model.parameters())


def test_bad_configuration():
    with pytest.raises(HubrouteError, match="finetune"):
        EmbeddingRouter(finetune="half")
    with pytest.raises(HubrouteError, match="unknown strategy"):
        EmbeddingRouter(strategy="magic")
    with pytest.raises(HubrouteError, match="bad parameters"):
        make_strategy("replay", ratio=0.1, colour=1)
    with pytest.raises(HubrouteError, match="ratio"):
        make_strategy("replay", ratio=1.5)
    with pytest.raises(HubrouteError, match="lora"):
        EmbeddingRouter(strategy="merge").fit(synth_stream(SynthConfig(models=8, experiences=2))[0])


def test_lora_adapts_the_linear_layers_of_any_architecture():
    from torch import nn

    from hubroute.routers.prompt_encoder import linear_module_names

    class Attention(nn.Module):  # MPNet names its projections q, k, v, o
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v, self.o = (nn.Linear(4, 4) for _ in range(4))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.dense, self.norm = Attention(), nn.Linear(4, 4), nn.LayerNorm(4)

    assert linear_module_names(nn.Sequential(Block(), Block())) == ["dense", "k", "o", "q", "v"]
    r = _router(finetune="lora", lora={"r": 2})
    r._build()
    adapted = {n.rsplit(".", 2)[-2] for n, _ in r.adapter_model().named_modules() if n.endswith("lora_A")}
    assert adapted == {"query", "key", "value", "dense"}  # every linear layer of the BERT encoder
