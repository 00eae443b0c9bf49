"""Loader for the CMRBench release layout.

A CMRBench directory holds ``processed/cleaned-<exp>-{train,val,eval}.json`` (one JSON record a
line) and ``model_indices/*.json``. The directory may also be the parent of ``data/`` as in the
authors' repository. Two protocols:

* ``public``: train on each experience's ``val`` split, test on its ``eval`` split (the train
  split of the release is not in the public copy);
* ``full``: train on ``train`` + ``val``, test on ``eval``; needs the train files.

Cards are built from each record's ``api_data`` (see :func:`hubroute.data.text.card_text`).
Label conflicts (one model with several domains or families) are resolved deterministically:
inside an experience, the most frequent label wins, ties going to the alphabetically first;
across experiences, the first experience that registers a model fixes its card. Every
conflict is listed in ``Stream.notes``. Examples always keep the labels of their own record.
"""

from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubroute.data.lines import json_problem, read_lines
from hubroute.data.text import card_text, clean_prompt
from hubroute.errors import DataError
from hubroute.hub import Experience, ModelCard, RoutingExample, Stream

EXPERIENCES: tuple[str, ...] = ("apibench-hf", "mllm", "hugging-bench-1", "hugging-bench-2")
PROTOCOLS: tuple[str, ...] = ("public", "full")
ENV_VAR = "HUBROUTE_CMRBENCH"
INDEX_FILES: tuple[str, ...] = ("e1.json", "e1_e2.json", "e1_e2_e3.json", "e1_e2_e3_e4.json")
_REQUIRED = ("model_name", "instruction", "domain")
STREAM_MANIFEST = "stream.json"


@dataclass(frozen=True)
class _Record:
    prompt: str
    model_id: str
    domain: str
    family: str
    created_at: int | None
    api_data: dict[str, Any]
    source: str


def default_data_dir() -> Path:
    """Where CMRBench is looked for when no path is given: ``$HUBROUTE_CMRBENCH``, else the
    user cache (``~/.cache/hubroute/cmrbench``), where ``hubroute data fetch`` puts it."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "hubroute" / "cmrbench"


def resolve_root(path: str | Path | None = None) -> Path:
    """The directory that holds ``processed/``, from ``path`` or :func:`default_data_dir`."""
    root = Path(path).expanduser() if path is not None else default_data_dir()
    for cand in (root, root / "data"):
        if (cand / "processed").is_dir():
            return cand
    hint = "" if path is not None else f" (set --data or ${ENV_VAR}, or run `hubroute data fetch cmrbench`)"
    raise DataError(f"no CMRBench 'processed/' folder under {root}{hint}")


def split_path(root: Path, exp: str, split: str) -> Path:
    """Path of one split file of one experience."""
    return root / "processed" / f"cleaned-{exp}-{split}.json"


def expected_files(protocol: str = "public", experiences: tuple[str, ...] = EXPERIENCES) -> list[str]:
    """Relative paths a protocol needs, in load order."""
    splits = ("val", "eval") if protocol == "public" else ("train", "val", "eval")
    return [f"processed/cleaned-{e}-{s}.json" for e in experiences for s in splits]


def parse_record(rec: object, markers: str = "strip", path: Path | None = None, lineno: int | None = None) -> _Record:
    """Validate one decoded record; problems raise :class:`DataError` at ``path:lineno``."""
    if not isinstance(rec, dict):
        raise DataError("expected a JSON object", path, lineno)
    missing = [k for k in _REQUIRED if not isinstance(rec.get(k), str) or not rec[k].strip()]
    if missing:
        raise DataError(f"missing or empty field(s): {', '.join(missing)}", path, lineno)
    api = rec.get("api_data") or {}
    if not isinstance(api, dict):
        raise DataError("field 'api_data' must be an object", path, lineno)
    created = rec.get("created_at")
    if created is not None and (isinstance(created, bool) or not isinstance(created, (int, float))):
        raise DataError("field 'created_at' must be a number (ms since epoch)", path, lineno)
    prompt = clean_prompt(rec["instruction"], markers)
    if not prompt:
        raise DataError("prompt is empty after removing markers", path, lineno)
    model_id = rec["model_name"].strip()
    return _Record(
        prompt=prompt,
        model_id=model_id,
        domain=rec["domain"].strip(),
        family=(rec.get("model_family") or model_id).strip(),
        created_at=None if created is None else int(created),
        api_data=api,
        source=str(rec.get("original_dataset") or ""),
    )


def read_records(path: Path, markers: str = "strip") -> Iterator[_Record]:
    """Parse one split file; a malformed line raises :class:`DataError` naming file and line."""
    for lineno, line in read_lines(path):
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(json_problem(e), path, lineno) from None
        yield parse_record(rec, markers, path, lineno)


def stream_manifest(root: Path) -> dict[str, Any] | None:
    """The optional ``stream.json`` of a CMRBench-layout folder (written by ``hubroute data
    synth``): its name, experience list and notes."""
    path = root / STREAM_MANIFEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(json_problem(e), path, e.lineno) from None
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", path) from None
    if not isinstance(data, dict) or not isinstance(data.get("experiences"), list):
        raise DataError("expected an object with an 'experiences' list", path)
    return data


def _majority(values: list[str]) -> str:
    counts = Counter(values)
    best = max(counts.values())
    return min(v for v, n in counts.items() if n == best)


def load_cmrbench(
    path: str | Path | None = None,
    protocol: str = "public",
    *,
    experiences: tuple[str, ...] | None = None,
    markers: str = "strip",
    max_examples: int | None = None,
) -> Stream:
    """Load CMRBench as a :class:`Stream` of experiences.

    ``path``: the release folder (default :func:`default_data_dir`). ``protocol``: ``public`` or
    ``full``. ``experiences``: names in stream order (default: the folder's ``stream.json``
    when present, else the four CMRBench experiences). ``max_examples`` keeps the first N
    examples of each split (for quick runs); every model of the full splits is still
    registered. Missing files raise :class:`DataError` listing every expected file.
    """
    if protocol not in PROTOCOLS:
        raise DataError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    root = resolve_root(path)
    manifest = stream_manifest(root)
    name = "cmrbench"
    notes: list[str] = []
    if manifest is not None:
        name = str(manifest.get("name", root.name))
        notes += [str(n) for n in manifest.get("notes", [])]
        experiences = experiences or tuple(str(e) for e in manifest["experiences"])
    experiences = experiences or EXPERIENCES
    missing = [p for p in expected_files(protocol, experiences) if not (root / p).is_file()]
    if missing:
        raise DataError(
            f"CMRBench folder {root} lacks {len(missing)} file(s) needed by protocol '{protocol}': {', '.join(missing)}"
        )
    train_splits = ("val",) if protocol == "public" else ("train", "val")
    parts = []
    for exp in experiences:
        train: list[_Record] = []
        kept_train: list[_Record] = []
        for split in train_splits:
            records = list(read_records(split_path(root, exp, split), markers))
            train += records
            kept_train += records[:max_examples] if max_examples is not None else records
        test = list(read_records(split_path(root, exp, "eval"), markers))
        kept_test = test[:max_examples] if max_examples is not None else test
        parts.append((exp, train + test, kept_train, kept_test))
    return build_stream(name, parts, protocol=protocol, notes=notes)


def build_stream(
    name: str,
    parts: list[tuple[str, list[_Record], list[_Record], list[_Record]]],
    *,
    protocol: str = "public",
    notes: list[str] | None = None,
) -> Stream:
    """A :class:`Stream` from each experience's (name, records that define its cards, train
    records, eval records)."""
    notes = list(notes or [])
    registered: dict[str, ModelCard] = {}
    exps: list[Experience] = []
    for i, (exp, card_records, train, test) in enumerate(parts):
        cards = _cards_for(exp, card_records, registered, notes)
        for c in cards:
            registered[c.model_id] = c
        exps.append(
            Experience(
                index=i,
                name=exp,
                new_cards=cards,
                train=[_example(r) for r in train],
                eval=[_example(r) for r in test],
            )
        )
    return Stream(name=name, experiences=exps, protocol=protocol, notes=notes)


def _example(r: _Record) -> RoutingExample:
    return RoutingExample(prompt=r.prompt, model_id=r.model_id, domain=r.domain, family=r.family)


def _cards_for(exp: str, records: list[_Record], registered: dict[str, ModelCard], notes: list[str]) -> list[ModelCard]:
    """Cards of the models first seen in this experience, in order of first appearance."""
    by_model: dict[str, list[_Record]] = defaultdict(list)
    for r in records:
        by_model[r.model_id].append(r)
    cards: list[ModelCard] = []
    for model_id, recs in by_model.items():
        domains = [r.domain for r in recs]
        families = [r.family for r in recs]
        domain, family = _majority(domains), _majority(families)
        for label, values, chosen in (("domain", domains, domain), ("family", families, family)):
            if len(set(values)) > 1:
                notes.append(
                    f"{exp}: model {model_id!r} has {len(set(values))} {label} labels "
                    f"{sorted(set(values))}; card uses {chosen!r}"
                )
        if model_id in registered:
            old = registered[model_id]
            if old.domain != domain:
                notes.append(
                    f"{exp}: recurring model {model_id!r} labelled {domain!r}, registered as "
                    f"{old.domain!r}; card keeps {old.domain!r}"
                )
            continue
        first = recs[0]
        api = dict(first.api_data)
        api.setdefault("domain", domain)
        extra = {k: v for k, v in api.items() if k in ("framework", "api_call", "api_name", "performance")}
        extra["source"] = first.source
        cards.append(
            ModelCard(
                model_id=model_id,
                family=family,
                domain=domain,
                text=card_text(api, model_id),
                created_at=first.created_at,
                extra=extra,
            )
        )
    return cards
