"""Importing and syncing a hub at scale (kind ``hub_scale``): synthetic Hugging Face card folders
imported into a hub folder, and models synced from the loopback Hub API server
(:mod:`hubroute.hubs.fake_hub`), with cards per second and peak memory."""

from __future__ import annotations

import datetime as dt
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from hubroute.data.taxonomy import TAXONOMY
from hubroute.evaluation import tables
from hubroute.hubs.cards import card_folder
from hubroute.hubs.fake_hub import FakeHub, FakeModel
from hubroute.hubs.folder import HubFolder
from hubroute.hubs.sync import Query, sync_huggingface
from hubroute.hubs.tasks import PIPELINE_DOMAINS
from suite.common import Machine, PeakRSS, command_line, header, write

TAGS = {d: t for t, d in PIPELINE_DOMAINS.items()}


def synthetic_model(i: int, rng: random.Random) -> tuple[str, str | None, str]:
    """(id, pipeline tag, README) of one synthetic Hugging Face model."""
    vocab = TAXONOMY[i % len(TAXONOMY)]
    tag = TAGS.get(vocab.domain)
    org = f"org{rng.randrange(500)}"
    model_id = (
        f"{org}/{rng.choice(vocab.objects).replace(' ', '-')}-{rng.choice(vocab.specialties).replace(' ', '-')}-{i}"
    )
    body = (
        f"# {model_id}\n\nThis model can {rng.choice(vocab.verbs)} {rng.choice(vocab.objects)} for "
        f"{rng.choice(vocab.specialties)} work, trained on public data and evaluated on held-out sets.\n\n"
        "```python\nfrom transformers import pipeline\n```\n"
    )
    front = "---\nlicense: apache-2.0\nlanguage: [en]\n" + (f"pipeline_tag: {tag}\n" if tag else "") + "---\n"
    return model_id, tag, front + body


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment (see the module docstring)."""
    n_import = int(config.get("import_models", 100_000))
    n_sync = int(config.get("sync_models", 10_000))
    if args.max_examples:
        n_import, n_sync = min(n_import, args.max_examples), min(n_sync, args.max_examples)
    work = Path(tempfile.mkdtemp(prefix="hubroute-hubscale-"))
    rng = random.Random(0)
    machine = Machine()
    results: dict[str, Any] = {}
    try:
        cards = work / "cards"
        t0 = time.perf_counter()
        for i in range(n_import):
            model_id, _, text = synthetic_model(i, rng)
            d = cards / model_id
            d.mkdir(parents=True, exist_ok=True)
            (d / "README.md").write_text(text, encoding="utf-8")
        results["write_folders_s"] = time.perf_counter() - t0
        hub = HubFolder(work / "hub-import", create=True)
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            report = hub.add_cards(card_folder(cards))
            seconds = time.perf_counter() - t0
        results["import"] = {
            "cards": n_import,
            "added": report.added,
            "problems": len(report.problems),
            "seconds": seconds,
            "cards_per_s": report.added / seconds,
            "peak_rss_mib": mem.peak / 2**20,
        }
        print("import", results["import"], flush=True)
        t0_date = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
        models = []
        for i in range(n_sync):
            model_id, tag, text = synthetic_model(n_import + i, rng)
            models.append(
                FakeModel(
                    model_id, t0_date + dt.timedelta(minutes=i), tag, {"license": "apache-2.0", "language": ["en"]}
                )
            )
        hub2 = HubFolder(work / "hub-sync", create=True)
        with FakeHub(models, page_size=1000) as fake, PeakRSS() as mem:
            t0 = time.perf_counter()
            report = sync_huggingface(hub2, Query(), endpoint=fake.url)
            seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            again = sync_huggingface(hub2, Query(), endpoint=fake.url)
            second_s = time.perf_counter() - t0
            requests = fake.requests
        results["sync"] = {
            "models": n_sync,
            "added": report.added,
            "seconds": seconds,
            "cards_per_s": report.added / seconds,
            "peak_rss_mib": mem.peak / 2**20,
            "second_sync_added": again.added,
            "second_sync_s": second_s,
            "requests": requests,
        }
        print("sync", results["sync"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {"command": command_line(), "config": config, **results, "machine": machine.record()}
    write(out, payload, markdown(config, payload))


def markdown(config: dict, payload: dict) -> str:
    """``results.md``: import and sync throughput and memory."""
    imp, syn = payload["import"], payload["sync"]
    lines = header(config["title"], payload)
    lines += [
        tables.markdown(
            ["step", "cards", "seconds", "cards/s", "peak RSS MiB"],
            [
                [
                    "import Hugging Face card folders",
                    imp["added"],
                    imp["seconds"],
                    f"{imp['cards_per_s']:.0f}",
                    imp["peak_rss_mib"],
                ],
                [
                    "sync from the loopback Hub API",
                    syn["added"],
                    syn["seconds"],
                    f"{syn['cards_per_s']:.0f}",
                    syn["peak_rss_mib"],
                ],
            ],
        ),
        "",
        f"Import: {imp['problems']} problem(s) among {imp['cards']} folders (families computed for every card). "
        f"Sync: pages of 1,000, card data only; a second sync found {syn['second_sync_added']} new model(s) in "
        f"{syn['second_sync_s']:.1f} s (it stops at the watermark, then reconciles the listing); "
        f"{syn['requests']} requests in all.",
    ]
    return "\n".join(lines)
