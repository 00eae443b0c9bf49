"""Text helpers shared by the loaders: prompt clean-up and model-card text."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_INSTRUCTION = re.compile(r"^\s*###\s*Instruction\s*:\s*", re.IGNORECASE)
_INPUT = re.compile(r"\s*###\s*Input\s*:\s*", re.IGNORECASE)
_SPACES = re.compile(r"[ \t]+")


def clean_prompt(text: str, markers: str = "strip") -> str:
    """Normalise a benchmark prompt.

    APIBench and ToolMMBench prompts read ``###Instruction: <request>`` optionally followed by
    ``###Input: <payload>``. With ``markers="strip"`` (the default) the instruction marker is
    removed and the input marker becomes a line break, so the request and its payload stay and
    the markup does not leak into the encoder. ``markers="keep"`` returns the text unchanged
    apart from surrounding whitespace.
    """
    if markers == "keep":
        return text.strip()
    if markers != "strip":
        raise ValueError(f"markers must be 'strip' or 'keep', got {markers!r}")
    text = _INSTRUCTION.sub("", text)
    text = _INPUT.sub("\n", text)
    return _SPACES.sub(" ", text).strip()


def split_model_name(model_id: str) -> str:
    """Readable words of a hub id: ``Helsinki-NLP/opus-mt-es-en`` -> ``Helsinki NLP opus mt es en``."""
    return re.sub(r"[/_\-.:]+", " ", model_id).strip()


def card_text(api_data: Mapping[str, Any], model_id: str) -> str:
    """The text a zero-shot router reads for one model.

    Joins, in this order and skipping empty fields: the model id and its split words, the
    domain, the functionality, the description, and the names of the datasets in
    ``performance``. ``api_call`` and metric values are left out: they are code and numbers
    that match no user request.
    """
    parts = [f"{model_id} ({split_model_name(model_id)})"]
    for key, label in (("domain", "Domain"), ("functionality", "Functionality")):
        value = _as_text(api_data.get(key))
        if value:
            parts.append(f"{label}: {value}.")
    desc = _as_text(api_data.get("description"))
    if desc:
        parts.append(desc)
    datasets = _dataset_names(api_data.get("performance"))
    if datasets:
        parts.append("Evaluated on: " + ", ".join(datasets) + ".")
    return " ".join(parts)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (list, tuple)):
        return ", ".join(_as_text(v) for v in value if _as_text(v))
    return str(value)


def _dataset_names(perf: Any) -> list[str]:
    if not isinstance(perf, Mapping):
        return []
    ds = perf.get("dataset")
    names: list[str] = []
    items = ds if isinstance(ds, list) else [ds]
    for item in items:
        name = item.get("name") if isinstance(item, Mapping) else item
        name = _as_text(name)
        if name and name.lower() not in {"none", "not specified", "n/a", "unknown"}:
            names.append(name)
    return names[:5]
