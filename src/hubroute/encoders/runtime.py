"""Inference-only conversions of an encoder for serving.

Torch runtimes: ``fp32``; ``bf16`` casts the weights once (unlike autocast, which casts them on
every call and makes single-prompt CPU inference slower); ``int8`` applies PyTorch's dynamic
quantisation to every ``nn.Linear`` (int8 weights, activations quantised per call). ONNX Runtime
(:mod:`hubroute.encoders.onnx`): ``onnx`` runs the same fp32 graph (the same vectors to rounding);
``onnx-int8`` quantises every ``MatMul`` weight to int8 per output channel. Converted modules are
for routing only: training them is not supported. Speed and agreement with fp32 are measured in
``bench/inference_speed.py`` and ``bench/service_load.py``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hubroute.encoders.base import Encoder
from hubroute.encoders.cache import CachedEncoder
from hubroute.encoders.sentence import SentenceTransformerEncoder
from hubroute.errors import HubrouteError
from hubroute.extras import require

INFERENCE_PRECISIONS = ("fp32", "bf16", "int8", "onnx", "onnx-int8")


def convert_for_inference(module: nn.Module, precision: str, cache_dir: str | Path | None = None) -> Any:
    """``module`` (a SentenceTransformer) set to eval mode and converted to ``precision``: in
    place for fp32/bf16, a quantised copy for int8, an :class:`~hubroute.encoders.onnx.OnnxSentenceModel`
    for the ONNX runtimes, whose exported graph is kept in ``cache_dir`` (when given) as
    ``encoder-<precision>.onnx`` and reused from there."""
    if precision not in INFERENCE_PRECISIONS:
        choices = ", ".join(INFERENCE_PRECISIONS)
        raise HubrouteError(f"unknown inference precision {precision!r}; choose one of {choices}")
    module.eval().requires_grad_(False)
    if precision.startswith("onnx"):
        require("onnxruntime", "onnx")
        from hubroute.encoders.onnx import to_onnx

        path = Path(cache_dir) / f"encoder-{precision}.onnx" if cache_dir is not None else None
        return to_onnx(module, quantize=precision == "onnx-int8", path=path)
    if precision == "bf16":
        return module.to(torch.bfloat16)
    if precision == "int8":
        if any(p.device.type != "cpu" for p in module.parameters()):
            raise HubrouteError("int8 dynamic quantisation runs on the CPU only")
        with warnings.catch_warnings():  # the eager quantisation API warns that it is moving to torchao
            warnings.simplefilter("ignore")
            from torch.ao.quantization import quantize_dynamic

            return quantize_dynamic(module, {nn.Linear}, dtype=torch.qint8)
    return module


def prepare_encoder(encoder: Encoder, precision: str, cache_dir: str | Path | None = None) -> None:
    """Convert a :class:`SentenceTransformerEncoder` (possibly inside a :class:`CachedEncoder`)
    for inference at ``precision`` (ONNX graphs kept in ``cache_dir``, see
    :func:`convert_for_inference`); a cache in front of a converted encoder is keyed to
    the converted encoder's name, so its vectors never mix with full-precision ones. Each part of
    a :class:`~hubroute.encoders.concat.ConcatEncoder` is converted (graphs in ``cache_dir/part-<i>``);
    an encoder that ships as an ONNX graph runs as it is, whatever ``precision`` says."""
    from hubroute.encoders.concat import ConcatEncoder
    from hubroute.encoders.onnx_file import OnnxFileEncoder

    if precision not in INFERENCE_PRECISIONS:
        choices = ", ".join(INFERENCE_PRECISIONS)
        raise HubrouteError(f"unknown inference precision {precision!r}; choose one of {choices}")
    inner = encoder.inner if isinstance(encoder, CachedEncoder) else encoder
    if isinstance(inner, ConcatEncoder):
        for i, part in enumerate(inner.parts):
            prepare_encoder(part, precision, Path(cache_dir) / f"part-{i}" if cache_dir is not None else None)
        inner.name = "+".join(p.name for p in inner.parts)
        return
    if isinstance(inner, OnnxFileEncoder):
        return
    if not isinstance(inner, SentenceTransformerEncoder):
        raise HubrouteError(f"cannot convert encoder {type(inner).__name__} for inference")
    inner.model = convert_for_inference(inner.model, precision, cache_dir)
    if precision != "fp32":
        inner.name = f"{inner.name}|{precision}"
        if isinstance(encoder, CachedEncoder):
            encoder.rekey(inner.name)
