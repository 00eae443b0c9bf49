"""Model families for cards that come without one, computed as the paper does (DESIGN.md §3).

Names are normalised (lowercase, the part after ``/``, ``_`` as ``-``, version, size and
parameter-count tokens dropped), bucketed by their root token, and clustered within a bucket:
character n-gram TF-IDF vectors, average linkage, cosine distance threshold 0.7 (scikit-learn).

Families are stable: a model that has a family keeps it. New models are clustered together with
the known models of their bucket; a cluster that holds known models takes their (most common)
family, a cluster of new models only gets a new family named after its most common normalised
name.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

THRESHOLD = 0.7
MAX_BUCKET = 3000  # larger buckets are split by their second token (average linkage is quadratic)

_DROP = re.compile(
    r"^(v?\d+(\.\d+)*[a-z]?|\d+(\.\d+)?[kmbt]|[kmbt]\d+|\d+x\d+[a-z]?|"
    r"tiny|mini|small|base|medium|large|xl|xxl|xxxl|huge|giant|nano|micro|lite|"
    r"uncased|cased|v\d+|fp16|fp32|bf16|int8|int4|gguf|awq|gptq|\d+bit|instruct|chat|it|hf)$"
)


def normalise(model_id: str) -> str:
    """``"Org/Llama_2-7B-chat-v1.1"`` -> ``"llama"``: lowercase, after the ``/``, ``_`` as ``-``,
    version, size, precision and variant tokens dropped (the name itself when nothing is left)."""
    name = model_id.lower().rsplit("/", 1)[-1].replace("_", "-")
    tokens = [t for t in re.split(r"[-.\s]+", name) if t]
    kept = [t for t in tokens if not _DROP.match(t)]
    return "-".join(kept) or name


def root_token(normalised: str) -> str:
    """The bucket of a normalised name: its first token."""
    return normalised.split("-", 1)[0]


def assign(new_ids: Iterable[str], known: dict[str, str]) -> dict[str, str]:
    """Families for ``new_ids`` given the ``known`` model -> family map (known models keep theirs)."""
    new_ids = [m for m in dict.fromkeys(new_ids) if m not in known]
    if not new_ids:
        return {}
    buckets: dict[str, list[str]] = defaultdict(list)
    names = {m: normalise(m) for m in [*known, *new_ids]}
    for m in new_ids:
        buckets[root_token(names[m])].append(m)
    known_by_root: dict[str, list[str]] = defaultdict(list)
    for m in known:
        known_by_root[root_token(names[m])].append(m)
    out: dict[str, str] = {}
    taken = set(known.values())
    for root in sorted(buckets):
        fresh = buckets[root]
        old = known_by_root.get(root, [])
        for group in _split(old + fresh, names):
            out.update(
                _cluster_bucket(
                    [m for m in group if m in known], [m for m in group if m not in known], names, known, taken
                )
            )
    return out


def _split(ids: list[str], names: dict[str, str]) -> list[list[str]]:
    """Buckets of at most :data:`MAX_BUCKET` names (a large bucket is split by the second token,
    then cut)."""
    if len(ids) <= MAX_BUCKET:
        return [ids]
    by_second: dict[str, list[str]] = defaultdict(list)
    for m in ids:
        parts = names[m].split("-")
        by_second[parts[1] if len(parts) > 1 else ""].append(m)
    out = []
    for key in sorted(by_second):
        group = by_second[key]
        out += [group[i : i + MAX_BUCKET] for i in range(0, len(group), MAX_BUCKET)]
    return out


def _cluster_bucket(
    old: list[str], fresh: list[str], names: dict[str, str], known: dict[str, str], taken: set[str]
) -> dict[str, str]:
    if not fresh:
        return {}
    ids = old + fresh
    labels = _labels([names[m] for m in ids])
    out: dict[str, str] = {}
    for label in sorted(set(labels)):
        members = [m for m, lab in zip(ids, labels, strict=True) if lab == label]
        families = Counter(known[m] for m in members if m in known)
        if families:
            family = families.most_common(1)[0][0]
        else:
            family = _fresh_name(Counter(names[m] for m in members).most_common(1)[0][0], taken)
            taken.add(family)
        out.update({m: family for m in members if m not in known})
    return out


def _labels(names: list[str]) -> list[int]:
    """Cluster labels of normalised names (character n-gram TF-IDF, average linkage, cosine
    distance threshold :data:`THRESHOLD`)."""
    if len(names) == 1:
        return [0]
    if len(set(names)) == 1:
        return [0] * len(names)
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.feature_extraction.text import TfidfVectorizer

    x = TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4)).fit_transform(names).toarray()
    model = AgglomerativeClustering(n_clusters=None, metric="cosine", linkage="average", distance_threshold=THRESHOLD)
    return model.fit_predict(x).tolist()


def _fresh_name(base: str, taken: set[str]) -> str:
    name, i = base, 2
    while name in taken:
        name, i = f"{base}-{i}", i + 1
    return name
