"""Inference runtimes: torch conversions and ONNX Runtime against the fp32 router they came from."""

from __future__ import annotations

import numpy as np
import pytest

from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.encoders import CachedEncoder, convert_for_inference
from hubroute.encoders.onnx import OnnxSentenceModel
from hubroute.errors import HubrouteError
from hubroute.routers import EmbeddingRouter, load_router


@pytest.fixture(scope="module")
def stream():
    return synth_stream(SynthConfig(models=40, experiences=2, seed=5))


@pytest.fixture(scope="module")
def trained(stream, tmp_path_factory):
    """A full fine-tuned router (encoder, projection and rows all moved), saved."""
    r = EmbeddingRouter.from_params(
        {"finetune": "full", "dim": 256, "epochs": 1, "batch_size": 16, "lr_encoder": 1e-4, "seed": 0}
    )
    r.fit(stream[0])
    return r.save(tmp_path_factory.mktemp("routers") / "full")


def _prompts(stream) -> list[str]:
    # mixed lengths, so length-sorted chunks and padding are exercised
    return [*[e.prompt for exp in stream for e in exp.eval][:40], "x", "a much longer prompt " * 20]


def test_onnx_routes_like_torch_fp32(stream, trained):
    prompts = _prompts(stream)
    ref = load_router(trained)
    onnx = load_router(trained).prepare_inference("onnx")
    assert isinstance(onnx.encoder_.model, OnnxSentenceModel) and not onnx.encoder_.model.quantized
    a, b = ref.scores(prompts), onnx.scores(prompts)
    assert np.abs(a - b).max() < 1e-3
    assert np.array_equal(a.argmax(1), b.argmax(1))
    assert onnx.scores(prompts[:1]) == pytest.approx(b[:1], abs=1e-3)  # one prompt, no padding


def test_onnx_int8_agrees_and_converted_routers_refuse_training(stream, trained):
    prompts = _prompts(stream)
    ref = load_router(trained).scores(prompts).argmax(1)
    q = load_router(trained).prepare_inference("onnx-int8")
    assert q.encoder_.model.quantized and q.inference_precision_ == "onnx-int8"
    agree = float(np.mean(q.scores(prompts).argmax(1) == ref))
    assert agree >= 0.8, agree
    with pytest.raises(HubrouteError, match="onnx-int8 inference"):
        q.fit(stream[1])
    with pytest.raises(HubrouteError, match="routing only"):
        q.encoder_.model.train(True)


def test_onnx_lora_and_frozen_routers(stream):
    prompts = _prompts(stream)[:12]
    lora = EmbeddingRouter(
        finetune="lora", lora={"r": 4}, training={"epochs": 1, "batch_size": 16, "lr_encoder": 5e-4}, seed=0
    )
    lora.fit(stream[0])
    before = lora.scores(prompts)
    assert np.abs(lora.prepare_inference("onnx").scores(prompts) - before).max() < 1e-3

    frozen = EmbeddingRouter(finetune="frozen", row_init="card", seed=0)
    frozen.add_models(stream[0].new_cards)
    before = frozen.scores(prompts)
    (enc,) = frozen.encoders()
    full_precision_cache = enc.cache.path if isinstance(enc, CachedEncoder) else None
    frozen.prepare_inference("onnx")
    inner = enc.inner if isinstance(enc, CachedEncoder) else enc
    assert inner.name.endswith("|onnx")
    if isinstance(enc, CachedEncoder):  # converted vectors are cached apart from full-precision ones
        assert enc.name == inner.name and enc.cache.path != full_precision_cache
    assert np.abs(frozen.scores(prompts) - before).max() < 1e-3


def test_onnx_encode_keeps_input_order(stream, trained):
    model = load_router(trained).encoder_.model
    texts = _prompts(stream)[::-1]
    onnx = convert_for_inference(load_router(trained).encoder_.model, "onnx")
    a = model.encode(texts, batch_size=5, convert_to_numpy=True)
    b = onnx.encode(texts, batch_size=5, normalize_embeddings=True)
    assert b.shape == a.shape
    assert np.allclose(b, a / np.linalg.norm(a, axis=1, keepdims=True), atol=1e-4)
    assert onnx.encode([]).shape[0] == 0


def test_unknown_runtime_is_an_error(trained):
    with pytest.raises(HubrouteError, match="onnx-int8"):
        load_router(trained).prepare_inference("onnx-fp8")


def test_exported_graph_is_kept_and_reused(stream, trained, tmp_path, monkeypatch):
    import hubroute.encoders.onnx as onnx_runtime

    prompts = _prompts(stream)[:8]
    first = load_router(trained).prepare_inference("onnx-int8", tmp_path / "inference")
    assert (tmp_path / "inference" / "encoder-onnx-int8.onnx").is_file()
    assert not list((tmp_path / "inference").glob(".*tmp"))  # written atomically

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_runtime, "_export", no_export)
    again = load_router(trained).prepare_inference("onnx-int8", tmp_path / "inference")
    assert np.array_equal(first.scores(prompts), again.scores(prompts))
    with pytest.raises(AssertionError, match="exported again"):  # another runtime has its own file
        load_router(trained).prepare_inference("onnx", tmp_path / "inference")
    monkeypatch.undo()
    graph = tmp_path / "inference" / "encoder-onnx-int8.onnx"
    graph.write_bytes(graph.read_bytes()[:1000])  # truncated: exported again, not a crash
    healed = load_router(trained).prepare_inference("onnx-int8", tmp_path / "inference")
    assert np.allclose(first.scores(prompts), healed.scores(prompts), atol=1e-3)
    assert graph.stat().st_size > 100_000
