"""A synthetic evolving model hub: SYNTHETIC data for demos, fast tests and scale tests.

Nothing here describes real models. ``N`` models arrive over ``T`` experiences. Consecutive
models form families (versions ``v1..``, sizes tiny..xl); a family may span two experiences
(a new version of an old family). Later experiences open new task domains from
:data:`~hubroute.data.taxonomy.TAXONOMY`. Each model has two specialties that appear in its card
and its prompts. Every experience also re-queries a share of earlier models (recurring models).

Every card and prompt is a pure function of ``(seed, index)``, so generation is streamed: writing
10^6 models keeps only one record in memory at a time. Records follow the CMRBench layout, so
:func:`~hubroute.data.cmrbench.load_cmrbench` reads a written folder, and mark themselves
``original_dataset = "hubroute-synthetic"``.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubroute.data.cmrbench import STREAM_MANIFEST, build_stream, parse_record, split_path
from hubroute.data.taxonomy import ADJECTIVES, NOUNS, ORGS, SIZES, TAXONOMY, DomainVocab, task_of
from hubroute.data.text import card_text
from hubroute.errors import HubrouteError
from hubroute.hub import ModelCard, Stream

SOURCE = "hubroute-synthetic"
_T0_MS = 1_600_000_000_000  # 2020-09-13, first synthetic release date
_DAY_MS = 86_400_000
_TEMPLATES = (
    "I need to {verb} {obj} for a {s1} project, especially {s2} material.",
    "Can you {verb} these {obj}? They come from {s1} and {s2} sources.",
    "Help me {verb} {obj} in the {s1} domain; the {s2} part matters most.",
    "Which tool would {verb} {obj} about {s1} topics with {s2} details?",
    "Please {verb} our {s1} {obj} ({s2} focus).",
)


@dataclass(frozen=True)
class SynthConfig:
    """Shape of the synthetic hub.

    ``models`` over ``experiences``; ``train_per_model`` / ``eval_per_model`` prompts per
    labelled model and experience; ``recurring``: earlier models re-queried per experience,
    as a share of that experience's new models; ``family_size``: models per family;
    ``seed``: everything derives from it.
    """

    models: int = 400
    experiences: int = 4
    train_per_model: int = 2
    eval_per_model: int = 1
    recurring: float = 0.2
    family_size: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.models < self.experiences or self.experiences < 1:
            raise HubrouteError("synthetic hub needs at least one model per experience and one experience")
        if self.train_per_model < 0 or self.eval_per_model < 1:
            raise HubrouteError("eval_per_model must be >= 1 and train_per_model >= 0")
        if not 0 <= self.recurring <= 1 or self.family_size < 1:
            raise HubrouteError("recurring must lie in [0, 1] and family_size be >= 1")


def _rng(cfg: SynthConfig, *key: object) -> random.Random:
    return random.Random(f"{cfg.seed}|" + "|".join(map(str, key)))


def experience_bounds(cfg: SynthConfig, t: int) -> tuple[int, int]:
    """``[start, stop)`` indices of the models new in experience ``t``."""
    return t * cfg.models // cfg.experiences, (t + 1) * cfg.models // cfg.experiences


def experience_names(cfg: SynthConfig) -> list[str]:
    """``synth-1`` … ``synth-T``."""
    return [f"synth-{t + 1}" for t in range(cfg.experiences)]


def _domain_of_family(cfg: SynthConfig, fam: int) -> DomainVocab:
    first_model = fam * cfg.family_size
    t = min(first_model * cfg.experiences // cfg.models, cfg.experiences - 1)
    open_domains = math.ceil(len(TAXONOMY) * (t + 1) / cfg.experiences)
    return TAXONOMY[_rng(cfg, "family-domain", fam).randrange(open_domains)]


def model_info(cfg: SynthConfig, i: int) -> dict[str, Any]:
    """Everything about model ``i``: id, family, domain vocabulary, size, version, specialties."""
    fam = i // cfg.family_size
    fr = _rng(cfg, "family", fam)
    adj, noun, org = fr.choice(ADJECTIVES), fr.choice(NOUNS), fr.choice(ORGS)
    vocab = _domain_of_family(cfg, fam)
    mr = _rng(cfg, "model", i)
    size = mr.choice(SIZES)
    version = i % cfg.family_size + 1
    s1, s2 = mr.sample(vocab.specialties, 2)
    family = f"{adj}-{noun}{fam}"
    return {
        "model_id": f"{org}/{family}-{size}-v{version}",
        "family": family,
        "vocab": vocab,
        "size": size,
        "version": version,
        "specialties": (s1, s2),
        "created_at": _T0_MS + i * _DAY_MS // max(1, cfg.models // 1000),
    }


def _api_data(info: dict[str, Any]) -> dict[str, Any]:
    v: DomainVocab = info["vocab"]
    s1, s2 = info["specialties"]
    desc = (
        f"A {info['size']} {info['family']} model, version {info['version']}, for "
        f"{v.domain.lower()}. It can {v.verbs[0]} {v.objects[0]} and is specialised in {s1} "
        f"and {s2} {v.objects[-1]}. Synthetic model card generated by hubroute."
    )
    return {
        "domain": v.domain,
        "framework": "synthetic",
        "functionality": task_of(v.domain),
        "api_name": info["model_id"],
        "api_call": "",
        "performance": {"dataset": f"{s1}-{s2}-bench", "accuracy": None},
        "description": desc,
        "model_name": info["model_id"],
    }


def _prompt(cfg: SynthConfig, info: dict[str, Any], i: int, t: int, split: str, k: int) -> str:
    r = _rng(cfg, "prompt", i, t, split, k)
    v: DomainVocab = info["vocab"]
    s1, s2 = info["specialties"]
    if r.random() < 0.5:
        s1, s2 = s2, s1
    return r.choice(_TEMPLATES).format(verb=r.choice(v.verbs), obj=r.choice(v.objects), s1=s1, s2=s2)


def labelled_models(cfg: SynthConfig, t: int) -> Iterator[int]:
    """Indices of the models queried in experience ``t``: its new models, then recurring ones."""
    start, stop = experience_bounds(cfg, t)
    yield from range(start, stop)
    if t > 0 and start > 0:
        n_rec = round(cfg.recurring * (stop - start))
        r = _rng(cfg, "recurring", t)
        seen: set[int] = set()
        while len(seen) < min(n_rec, start):
            j = r.randrange(start)
            if j not in seen:
                seen.add(j)
                yield j


def iter_records(cfg: SynthConfig, t: int, split: str) -> Iterator[dict[str, Any]]:
    """CMRBench-style records of experience ``t``; ``split`` is ``train`` or ``eval``."""
    per = cfg.train_per_model if split == "train" else cfg.eval_per_model
    for i in labelled_models(cfg, t):
        info = model_info(cfg, i)
        api = _api_data(info)
        for k in range(per):
            yield {
                "model_name": info["model_id"],
                "model_family": info["family"],
                "created_at": info["created_at"],
                "instruction": _prompt(cfg, info, i, t, split, k),
                "domain": info["vocab"].domain,
                "original_dataset": SOURCE,
                "model_source": "synthetic",
                "api_data": api,
                "explanation": "",
            }


def synthetic_card(cfg: SynthConfig, i: int) -> ModelCard:
    """The card of model ``i``, as :func:`synth_stream` registers it (without building a stream:
    for hubs of millions of models)."""
    info = model_info(cfg, i)
    api = _api_data(info)
    return ModelCard(
        info["model_id"],
        info["family"],
        info["vocab"].domain,
        card_text(api, info["model_id"]),
        info["created_at"],
        {"framework": "synthetic", "source": "hubroute-synthetic"},
    )


def synthetic_queries(cfg: SynthConfig, n: int, seed: int = 0) -> list[tuple[str, str, str]]:
    """``n`` (prompt, gold model id, domain) triples for models drawn at random from the whole hub."""
    r = random.Random(f"{cfg.seed}|queries|{seed}")
    out = []
    for k in range(n):
        i = r.randrange(cfg.models)
        info = model_info(cfg, i)
        out.append((_prompt(cfg, info, i, 0, "query", k), info["model_id"], info["vocab"].domain))
    return out


def synth_stream(cfg: SynthConfig) -> Stream:
    """The synthetic hub as an in-memory :class:`Stream` (for small ``models``)."""
    parts = []
    for t, name in enumerate(experience_names(cfg)):
        train = [parse_record(r) for r in iter_records(cfg, t, "train")]
        test = [parse_record(r) for r in iter_records(cfg, t, "eval")]
        parts.append((name, train + test, train, test))
    return build_stream("synthetic", parts, notes=[_note(cfg)])


def _note(cfg: SynthConfig) -> str:
    return f"SYNTHETIC hub generated by hubroute (not real models): {json.dumps(asdict(cfg))}"


def write_synthetic(cfg: SynthConfig, out: str | Path, progress: Callable[[str], None] | None = None) -> Path:
    """Write the hub in CMRBench layout under ``out`` (``processed/cleaned-synth-<t>-{val,eval}.json``,
    the training split named ``val`` as in CMRBench-public) plus ``stream.json`` and a README."""
    root = Path(out)
    (root / "processed").mkdir(parents=True, exist_ok=True)
    names = experience_names(cfg)
    for t, name in enumerate(names):
        for split, fname in (("train", "val"), ("eval", "eval")):
            if progress:
                progress(f"{name} {fname}")
            with split_path(root, name, fname).open("w", encoding="utf-8") as f:
                for rec in iter_records(cfg, t, split):
                    f.write(json.dumps(rec) + "\n")
    manifest = {"name": "synthetic", "experiences": names, "config": asdict(cfg), "notes": [_note(cfg)]}
    (root / STREAM_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    (root / "README.md").write_text(
        "# Synthetic model hub (generated by `hubroute data synth`)\n\n"
        "SYNTHETIC DATA: these models and prompts do not exist. They follow the CMRBench file layout "
        "so every hubroute command reads them like the real benchmark.\n\n"
        f"Config: `{json.dumps(asdict(cfg))}`\n",
        encoding="utf-8",
    )
    return root
