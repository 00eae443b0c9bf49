"""Inference-only conversions of an encoder for serving: fp32, bf16 weights, int8 linears.

``bf16`` casts the weights once (unlike autocast, which casts them on every call and makes
single-prompt CPU inference slower); ``int8`` applies PyTorch's dynamic quantisation to every
``nn.Linear`` (int8 weights, activations quantised per call), the usual CPU speed-up for
BERT-sized encoders. Converted modules are for routing only: training them is not supported.
Whether a conversion keeps accuracy is measured in ``bench/service_load.py``.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from hubroute.errors import HubrouteError

INFERENCE_PRECISIONS = ("fp32", "bf16", "int8")


def convert_for_inference(module: nn.Module, precision: str) -> nn.Module:
    """``module`` set to eval mode and converted to ``precision`` (in place for fp32/bf16; a
    quantised copy for int8)."""
    if precision not in INFERENCE_PRECISIONS:
        choices = ", ".join(INFERENCE_PRECISIONS)
        raise HubrouteError(f"unknown inference precision {precision!r}; choose one of {choices}")
    module.eval().requires_grad_(False)
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
