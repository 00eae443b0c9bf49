"""A hub folder: your own model hub as a stream of experiences that grows as the hub changes.

Layout (every file written atomically; changes under an exclusive lock)::

    HUB/
      hub.json                  name, settings (held-out share, seed), sync watermarks, counters
      registry.jsonl            every card with its status (the hubroute registry format)
      pending.json              what changed since the last experience: new cards, retirements
      pending-train.jsonl       examples gathered since the last experience (training)
      pending-eval.jsonl        ... and held out for evaluation
      seen.txt                  a digest of every example ever added (exact duplicates are dropped)
      experiences/0001-<name>/  one closed experience: experience.json, cards.jsonl,
                                train.jsonl, eval.jsonl

Cards come in with :meth:`HubFolder.add_cards` (from :mod:`hubroute.hubs.cards` or
:mod:`hubroute.hubs.sync`), prompts with :meth:`HubFolder.add_examples`; :meth:`HubFolder.close`
turns what changed since the last experience into the next one, and :meth:`HubFolder.stream`
reads the closed experiences as a :class:`~hubroute.hub.Stream`, so a hub folder goes wherever
CMRBench does (``hubroute bench``, ``train``, ``update``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubroute.errors import DataError, HubrouteError
from hubroute.hub import Experience, ModelCard, Registry, RoutingExample, Stream
from hubroute.hubs import families
from hubroute.hubs.cards import Parsed

FORMAT = "hubroute.hub"
MANIFEST = "hub.json"
REGISTRY = "registry.jsonl"
PENDING = "pending.json"
PENDING_TRAIN = "pending-train.jsonl"
PENDING_EVAL = "pending-eval.jsonl"
SEEN = "seen.txt"
EXPERIENCES = "experiences"
POSITIVE = {"", "1", "true", "ok", "success", "good", "accepted", "positive", "yes"}


@dataclass
class Report:
    """What an import did: counts, and each problem with where it was (file:line or model)."""

    added: int = 0
    unchanged: int = 0
    retired: int = 0
    skipped: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts and messages."""
        return {
            "added": self.added,
            "unchanged": self.unchanged,
            "retired": self.retired,
            "skipped": self.skipped,
            "problems": self.problems,
            "notes": self.notes,
        }


def is_hub(path: str | Path) -> bool:
    """Whether ``path`` is a hub folder."""
    return (Path(path) / MANIFEST).is_file()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _example_row(x: RoutingExample) -> str:
    return json.dumps([x.prompt, x.model_id, x.domain, x.family], ensure_ascii=False)


def _read_examples(path: Path) -> list[RoutingExample]:
    from hubroute.data.lines import read_lines

    if not path.is_file():
        return []
    out = []
    for lineno, line in read_lines(path):
        try:
            prompt, model_id, domain, family = json.loads(line)
        except (ValueError, TypeError):
            raise DataError("not an example row [prompt, model_id, domain, family]", path, lineno) from None
        out.append(RoutingExample(prompt, model_id, domain, family))
    return out


class HubFolder:
    """One hub folder (see the module docstring). ``create`` makes a new one when ``path`` holds
    none."""

    def __init__(self, path: str | Path, *, create: bool = False, name: str | None = None, holdout_every: int = 5):
        self.path = Path(path).expanduser()
        if not is_hub(self.path):
            if not create:
                raise DataError("not a hub folder (no hub.json); `hubroute hub import` creates one", self.path)
            if self.path.exists() and any(self.path.iterdir()):
                raise DataError("not empty and not a hub folder", self.path)
            self.path.mkdir(parents=True, exist_ok=True)
            manifest = {
                "format": FORMAT,
                "version": 1,
                "name": name or self.path.name,
                "holdout_every": holdout_every,
                "created_at": time.time(),
                "sources": {},
            }
            _write_atomic(self.path / MANIFEST, json.dumps(manifest, indent=2) + "\n")
            Registry().save(self.path / REGISTRY)
            _write_atomic(self.path / PENDING, json.dumps({"cards": [], "retired": [], "activated": []}) + "\n")
        self.manifest = self._read_json(MANIFEST)
        if self.manifest.get("format") != FORMAT:
            raise DataError("not a hubroute hub manifest", self.path / MANIFEST)

    # -- files -----------------------------------------------------------------------------
    def _read_json(self, name: str) -> dict[str, Any]:
        path = self.path / name
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError("missing file of the hub folder", path) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"damaged ({e})", path) from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the hub's lock (one writer at a time, across processes)."""
        with (self.path / ".lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    @property
    def name(self) -> str:
        """The hub's name."""
        return str(self.manifest.get("name", self.path.name))

    def registry(self) -> Registry:
        """Every card of the hub, with its status."""
        return Registry.load(self.path / REGISTRY)

    def pending(self) -> dict[str, list[str]]:
        """Model ids added, retired and re-activated since the last experience."""
        return self._read_json(PENDING)

    def experience_dirs(self) -> list[Path]:
        """The closed experiences' folders, in order."""
        root = self.path / EXPERIENCES
        return sorted(p for p in root.iterdir() if p.is_dir() and re.match(r"\d{4}-", p.name)) if root.is_dir() else []

    def source_state(self, key: str) -> dict[str, Any]:
        """What a sync source stored (its watermark), by source key."""
        return dict(self.manifest.get("sources", {}).get(key, {}))

    def set_source_state(self, key: str, state: dict[str, Any]) -> None:
        """Store a sync source's state (under the lock)."""
        self.manifest = self._read_json(MANIFEST)
        self.manifest.setdefault("sources", {})[key] = state
        _write_atomic(self.path / MANIFEST, json.dumps(self.manifest, indent=2) + "\n")

    # -- cards -----------------------------------------------------------------------------
    def add_cards(self, items: Iterable[Parsed], report: Report | None = None) -> Report:
        """Register new cards (one call, all or nothing for the valid ones): a problem item is
        reported with where it came from; a known id with the same card is unchanged, with a
        different card it is reported and the stored card kept; the first of two different
        cards with one id wins. Cards without a family get one (:mod:`hubroute.hubs.families`)."""
        report = report or Report()
        with self.locked():
            reg = self.registry()
            new: dict[str, ModelCard] = {}
            for item in items:
                if item.card is None:
                    report.problems.append(f"{item.where}: {item.problem}")
                    continue
                card = item.card
                report.notes += [f"{item.where}: {card.model_id}: {n}" for n in item.notes]
                if card.model_id in reg:
                    if _same(reg.card(card.model_id), card):
                        report.unchanged += 1
                    else:
                        report.problems.append(
                            f"{item.where}: {card.model_id}: already in the hub with another card; kept the stored one"
                        )
                    continue
                if card.model_id in new:
                    if not _same(new[card.model_id], card):
                        report.problems.append(
                            f"{item.where}: {card.model_id}: a second, different card for this id; kept the first"
                        )
                    continue
                new[card.model_id] = card
            if not new:
                return report
            known = {c.model_id: c.family for c in reg}
            given = {m: c.family for m, c in new.items() if c.family}
            assigned = families.assign([m for m, c in new.items() if not c.family], {**known, **given})
            cards = [c if c.family else _with_family(c, assigned[c.model_id]) for c in new.values()]
            reg.add(cards)
            reg.save(self.path / REGISTRY)
            pending = self.pending()
            pending["cards"] += [c.model_id for c in cards]
            _write_atomic(self.path / PENDING, json.dumps(pending) + "\n")
            report.added += len(cards)
        return report

    def retire(self, model_ids: Iterable[str], reason: str, report: Report | None = None) -> Report:
        """Retire models (their rows stay); unknown or already retired ids are skipped."""
        report = report or Report()
        with self.locked():
            reg = self.registry()
            ids = [m for m in dict.fromkeys(model_ids) if m in reg and reg.status(m) == "active"]
            if not ids:
                return report
            reg.retire(ids)
            reg.save(self.path / REGISTRY)
            pending = self.pending()
            pending["retired"] += ids
            _write_atomic(self.path / PENDING, json.dumps(pending) + "\n")
            report.retired += len(ids)
            report.notes += [f"{m}: retired ({reason})" for m in ids]
        return report

    # -- examples --------------------------------------------------------------------------
    def add_examples(self, rows: Iterable[tuple[str, dict[str, Any]]], report: Report | None = None) -> Report:
        """Add labelled prompts (``(where, row)`` with ``prompt``, ``model_id`` and optional
        ``domain``, ``timestamp``, ``outcome``): a row for a model the hub does not know is
        reported, a negative ``outcome`` skipped, an exact duplicate dropped; every
        ``holdout_every``-th example by digest is held out for evaluation."""
        from hubroute.hub import text_problem

        report = report or Report()
        every = int(self.manifest.get("holdout_every", 5))
        with self.locked():
            reg = self.registry()
            seen_path = self.path / SEEN
            seen = set(seen_path.read_text(encoding="utf-8").split()) if seen_path.is_file() else set()
            train, held, digests = [], [], []
            for where, row in rows:
                prompt, model_id = row.get("prompt"), row.get("model_id")
                if not isinstance(prompt, str) or not prompt.strip():
                    report.problems.append(f"{where}: missing prompt")
                    continue
                if str(row.get("outcome", "")).strip().lower() not in POSITIVE:
                    report.skipped += 1  # a prompt the model answered badly is no label
                    continue
                if not isinstance(model_id, str) or model_id not in reg:
                    report.problems.append(f"{where}: unknown model {model_id!r} (import its card first)")
                    continue
                problem = text_problem(prompt)
                if problem:
                    report.problems.append(f"{where}: prompt {problem}")
                    continue
                digest = hashlib.sha256(f"{prompt.strip()}\x00{model_id}".encode()).hexdigest()[:24]
                if digest in seen:
                    report.unchanged += 1
                    continue
                seen.add(digest)
                digests.append(digest)
                card = reg.card(model_id)
                domain = row.get("domain") if isinstance(row.get("domain"), str) and row["domain"] else card.domain
                x = RoutingExample(prompt.strip(), model_id, domain, card.family)
                (held if int(digest, 16) % every == 0 else train).append(x)
            for name, xs in ((PENDING_TRAIN, train), (PENDING_EVAL, held)):
                if xs:
                    with (self.path / name).open("a", encoding="utf-8") as f:
                        f.writelines(_example_row(x) + "\n" for x in xs)
                        f.flush()
                        os.fsync(f.fileno())
            if digests:
                with seen_path.open("a", encoding="utf-8") as f:
                    f.write("\n".join(digests) + "\n")
            report.added += len(train) + len(held)
        return report

    # -- experiences -----------------------------------------------------------------------
    def close(self, name: str | None = None) -> Path:
        """Close the current experience: the cards added, the examples gathered and the models
        retired since the last one. Returns its folder."""
        with self.locked():
            pending = self.pending()
            train = _read_examples(self.path / PENDING_TRAIN)
            held = _read_examples(self.path / PENDING_EVAL)
            if not (pending["cards"] or pending["retired"] or pending.get("activated") or train or held):
                raise HubrouteError(f"{self.path}: nothing changed since the last experience")
            index = len(self.experience_dirs()) + 1
            label = re.sub(r"[^A-Za-z0-9._-]+", "-", name or f"experience-{index}").strip("-") or f"experience-{index}"
            out = self.path / EXPERIENCES / f"{index:04d}-{label}"
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.mkdir(parents=True, exist_ok=True)
            reg = self.registry()
            cards = [reg.card(m) for m in pending["cards"]]
            (tmp / "cards.jsonl").write_text(
                "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in cards), encoding="utf-8"
            )
            (tmp / "train.jsonl").write_text("".join(_example_row(x) + "\n" for x in train), encoding="utf-8")
            (tmp / "eval.jsonl").write_text("".join(_example_row(x) + "\n" for x in held), encoding="utf-8")
            meta = {
                "index": index,
                "name": label,
                "closed_at": time.time(),
                "new_models": len(cards),
                "retired": pending["retired"],
                "activated": pending.get("activated", []),
                "train": len(train),
                "eval": len(held),
            }
            (tmp / "experience.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            os.replace(tmp, out)
            _write_atomic(self.path / PENDING, json.dumps({"cards": [], "retired": [], "activated": []}) + "\n")
            for f in (PENDING_TRAIN, PENDING_EVAL):
                (self.path / f).unlink(missing_ok=True)
            return out

    def experience(self, folder: str | Path) -> Experience:
        """One closed experience, read from its folder."""
        folder = Path(folder)
        meta_path = folder / "experience.json"
        if not meta_path.is_file():
            raise DataError("not an experience folder (no experience.json)", folder)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        from hubroute.data.lines import read_lines

        cards = [ModelCard.from_dict(json.loads(line)) for _, line in read_lines(folder / "cards.jsonl")]
        return Experience(
            index=int(meta["index"]) - 1,
            name=str(meta["name"]),
            new_cards=cards,
            train=_read_examples(folder / "train.jsonl"),
            eval=_read_examples(folder / "eval.jsonl"),
            retired=list(meta.get("retired", [])),
            activated=list(meta.get("activated", [])),
        )

    def stream(self, max_examples: int | None = None) -> Stream:
        """The closed experiences as a :class:`Stream` (``max_examples``: the first N examples of
        each split)."""
        exps = [self.experience(p) for p in self.experience_dirs()]
        if not exps:
            raise DataError("the hub has no closed experience yet: `hubroute hub experience` closes one", self.path)
        if max_examples is not None:
            for e in exps:
                e.train, e.eval = e.train[:max_examples], e.eval[:max_examples]
        return Stream(name=self.name, experiences=exps, protocol="hub")

    def status(self) -> dict[str, Any]:
        """Counts: models (active), closed experiences, what is pending."""
        reg = self.registry()
        pending = self.pending()
        return {
            "name": self.name,
            "models": len(reg),
            "active": reg.n_active(),
            "experiences": len(self.experience_dirs()),
            "pending_cards": len(pending["cards"]),
            "pending_retired": len(pending["retired"]),
            "pending_examples": sum(1 for f in (PENDING_TRAIN, PENDING_EVAL) for _ in _lines(self.path / f)),
            "sources": self.manifest.get("sources", {}),
        }


def _lines(path: Path) -> Iterator[str]:
    if path.is_file():
        with path.open(encoding="utf-8") as f:
            yield from (ln for ln in f if ln.strip())


def _same(a: ModelCard, b: ModelCard) -> bool:
    """Whether two cards say the same (a missing family or creation time matches anything)."""
    return (
        a.domain == b.domain
        and a.text == b.text
        and (not b.family or a.family == b.family)
        and (b.created_at is None or a.created_at == b.created_at)
    )


def _with_family(card: ModelCard, family: str) -> ModelCard:
    d = card.to_dict()
    d["family"] = family
    return ModelCard.from_dict(d)
