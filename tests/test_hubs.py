"""Your own hub: Hugging Face card folders, card tables (JSONL, CSV, real Parquet files), the Hub
API through the real huggingface_hub client against a loopback server, prompt logs, experiences,
constraints, `hubroute update`, and the whole loop end to end through the CLI."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hubroute.cli import app
from hubroute.constraints import Constraints
from hubroute.data.synth import SynthConfig, synth_stream
from hubroute.errors import DataError, HubrouteError
from hubroute.hub import ModelCard
from hubroute.hubs.cards import card_body_text, card_folder, card_table
from hubroute.hubs.fake_hub import FakeHub, FakeModel, Faults
from hubroute.hubs.families import assign, normalise
from hubroute.hubs.folder import HubFolder
from hubroute.hubs.sync import Query, sync_huggingface
from hubroute.hubs.tasks import PIPELINE_DOMAINS, domain_of

runner = CliRunner()
TAG_OF = {v: k for k, v in PIPELINE_DOMAINS.items()}
T0 = dt.datetime(2025, 3, 1, tzinfo=dt.UTC)


def readme(card: ModelCard, *, license: str = "apache-2.0", language: str = "en", params: int | None = None) -> str:
    """A Hugging Face card for a synthetic model: YAML front matter and a Markdown body."""
    meta = {"license": license, "language": [language], "library_name": "transformers", "tags": ["synthetic"]}
    if card.domain in TAG_OF:
        meta["pipeline_tag"] = TAG_OF[card.domain]
    if params:
        meta["num_parameters"] = params
    front = "\n".join(f"{k}: {json.dumps(v)}" for k, v in meta.items())
    return (
        f"---\n{front}\n---\n# {card.model_id}\n\n[![CI](https://img.shields.io/badge/ci-ok-green)](https://x)\n\n"
        f"{card.text}\n\n```python\nfrom transformers import pipeline\n```\n\n"
        "| metric | value |\n|---|---|\n| acc | 0.9 |\n"
    )


def write_cards(root: Path, cards: list[ModelCard], **kw) -> Path:
    for c in cards:
        d = root / c.model_id
        d.mkdir(parents=True, exist_ok=True)
        (d / "README.md").write_text(readme(c, **kw), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def stream():
    return synth_stream(SynthConfig(models=60, experiences=2, seed=3))


# -- parsing ----------------------------------------------------------------------------------
def test_card_text_keeps_prose_and_drops_code_badges_html_and_tables():
    body = (
        "# Title\n\n[![badge](https://img.shields.io/x)](https://x) <img src='a.png'>\n\n"
        "This model transcribes Spanish voicemails into text, with punctuation restored.\n\n"
        "```python\nprint('code should go')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
        "See [the paper](https://arxiv.org/abs/1) for how it was trained on call-centre audio.\n"
    )
    text = card_body_text(body)
    assert "transcribes Spanish voicemails" in text and "the paper for how it was trained" in text
    assert "print" not in text and "badge" not in text and "img" not in text and "| a |" not in text
    assert domain_of("automatic-speech-recognition") == "Audio Automatic Speech Recognition"
    assert domain_of("zero-shot-image-classification") == "Computer Vision Zero-Shot Image Classification"
    assert domain_of("brand-new-task") == "Other Brand New Task"


def test_a_folder_of_hugging_face_cards(tmp_path, stream):
    cards = stream[0].new_cards[:4]
    write_cards(tmp_path / "cards", cards, params=350_000_000)
    broken = tmp_path / "cards" / "org" / "broken"
    broken.mkdir(parents=True)
    (broken / "README.md").write_text("---\npipeline_tag: [unclosed\n---\nbody\n")
    untagged = tmp_path / "cards" / "org" / "untagged"
    untagged.mkdir()
    (untagged / "README.md").write_text(
        "# A model\n\nIt does something useful for customers with their documents daily.\n"
    )
    items = list(card_folder(tmp_path / "cards"))
    by_id = {i.card.model_id: i for i in items if i.card}
    assert set(by_id) == {c.model_id for c in cards} | {"org/untagged"}
    first = by_id[cards[0].model_id].card
    assert first.domain == cards[0].domain or first.domain == "Unknown"
    assert first.extra["license"] == "apache-2.0" and first.extra["params"] == 350_000_000
    assert first.extra["library_name"] == "transformers" and "```" not in first.text
    bad = [i for i in items if i.card is None]
    assert len(bad) == 1 and "broken YAML front matter" in bad[0].problem and "org/broken/README.md" in bad[0].where
    assert by_id["org/untagged"].card.domain == "Unknown" and by_id["org/untagged"].notes


def test_card_tables_jsonl_csv_parquet(tmp_path):
    asr, mt = "Audio Automatic Speech Recognition", "Natural Language Processing Translation"
    rows = [
        {"model_id": "a/one", "domain": asr, "text": "speech to text", "license": "mit", "params": 1e9},
        {"model_id": "a/two", "domain": mt, "family": "two", "owner": "lab"},
    ]
    rows[0]["created_at"] = "2025-01-02"
    keys = sorted({k for r in rows for k in r})
    pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), tmp_path / "cards.parquet")
    (tmp_path / "cards.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"model_id": "a/three"}\n')
    (tmp_path / "cards.csv").write_text("model_id,domain,text\na/one,X Y,hello\n")
    (tmp_path / "nodomain.csv").write_text("model_id,text\na/one,hello\n")
    got = {i.card.model_id: i.card for i in card_table(tmp_path / "cards.parquet")}
    assert got["a/one"].extra == {"license": "mit", "params": 1_000_000_000}
    assert got["a/one"].created_at == int(dt.datetime(2025, 1, 2, tzinfo=dt.UTC).timestamp() * 1000)
    assert got["a/two"].family == "two" and got["a/two"].extra == {"owner": "lab"}
    items = list(card_table(tmp_path / "cards.jsonl"))
    assert [i.problem for i in items if i.card is None] == ["a/three: missing domain"]
    assert items[2].where.endswith("cards.jsonl:3")
    assert [i.card.model_id for i in card_table(tmp_path / "cards.csv")] == ["a/one"]
    with pytest.raises(DataError, match=r"nodomain\.csv:1: missing column\(s\) domain"):
        list(card_table(tmp_path / "nodomain.csv"))


def test_families_follow_the_paper_and_stay_stable():
    assert normalise("meta-llama/Llama-2-7b-chat-hf") == "llama" and normalise("openai/whisper-large-v3") == "whisper"
    first = assign(["a/whisper-small", "b/whisper-large-v2", "c/bart-large-cnn", "d/bart-base"], {})
    assert first["a/whisper-small"] == first["b/whisper-large-v2"] != first["c/bart-large-cnn"]
    later = assign(["e/whisper-medium-es", "f/zephyr-7b"], {**first, "a/whisper-small": "my-whisper"})
    assert later["e/whisper-medium-es"] in ("my-whisper", first["b/whisper-large-v2"])
    assert later["f/zephyr-7b"] not in first.values()
    assert assign(["a/whisper-small"], {"a/whisper-small": "kept"}) == {}


# -- the hub folder ---------------------------------------------------------------------------
def test_hub_folder_imports_dedupes_and_closes_experiences(tmp_path, stream):
    hub = HubFolder(tmp_path / "hub", create=True, name="lab")
    cards = stream[0].new_cards
    report = hub.add_cards(card_folder(write_cards(tmp_path / "cards", cards)))
    assert report.added == len(cards) and not report.problems
    assert hub.add_cards(card_folder(tmp_path / "cards")).unchanged == len(cards)  # importing again changes nothing
    other = write_cards(tmp_path / "other", [cards[0]], license="mit")
    (other / cards[0].model_id / "README.md").write_text(readme(cards[0]).replace(cards[0].text, "a different text"))
    report = hub.add_cards(card_folder(other))
    assert report.added == 0 and "already in the hub with another card" in report.problems[0]
    log = tmp_path / "log.csv"
    lines = ["prompt,model_id,outcome"] + [f'"{e.prompt}",{e.model_id},ok' for e in stream[0].train]
    lines += [
        f'"{stream[0].train[0].prompt}",{stream[0].train[0].model_id},ok',
        "hello there,nobody/unknown,ok",
        "a bad answer,x,fail",
    ]
    log.write_text("\n".join(lines) + "\n")
    from hubroute.hubs.cards import table_rows

    report = hub.add_examples(table_rows(log, required=("prompt", "model_id")))
    assert report.added == len(stream[0].train) and report.unchanged == 1 and report.skipped == 1
    assert len(report.problems) == 1 and "log.csv:" in report.problems[0] and "nobody/unknown" in report.problems[0]
    folder = hub.close("first week")
    assert folder.name == "0001-first-week"
    with pytest.raises(HubrouteError, match="nothing changed"):
        hub.close()
    hub.retire([cards[0].model_id], "test")
    hub.close()
    s = hub.stream()
    assert [e.name for e in s] == ["first-week", "experience-2"] and s[1].retired == [cards[0].model_id]
    assert len(s[0].train) + len(s[0].eval) == len(stream[0].train) and 0 < len(s[0].eval) < len(s[0].train)
    assert {c.model_id for c in s[0].new_cards} == {c.model_id for c in cards}


# -- the Hub API ------------------------------------------------------------------------------
def fake_models(cards: list[ModelCard], start: dt.datetime = T0) -> list[FakeModel]:
    return [
        FakeModel(
            c.model_id,
            start + dt.timedelta(minutes=i),
            TAG_OF.get(c.domain),
            {"license": "apache-2.0", "language": ["en"], "tags": ["synthetic"]},
            readme=readme(c),
            tags=["synthetic"],
        )
        for i, c in enumerate(cards)
    ]


def test_sync_pages_retries_reconciles_and_resumes(tmp_path, stream):
    models = fake_models(stream[0].new_cards + stream[1].new_cards)
    models[3].card_data = {"model-index": "not a list", "pipeline_tag": 42, "license": {"odd": True}}  # malformed
    models[4].gated = "manual"
    hub = HubFolder(tmp_path / "hub", create=True)
    faults = Faults(pages={2: 429, 3: 503}, retry_after=1)
    with FakeHub(models, page_size=10, faults=faults) as fake:
        calls = []

        def stop_after_two_chunks(stored: int, total: int) -> None:
            calls.append(stored)
            if len(calls) == 2:
                raise KeyboardInterrupt("interrupted")

        import hubroute.hubs.sync as sync

        sync.CHUNK, old = 20, sync.CHUNK
        try:
            with pytest.raises(KeyboardInterrupt):
                sync_huggingface(hub, Query(), endpoint=fake.url, on_chunk=stop_after_two_chunks)
            assert len(hub.registry()) == 40 and faults.seen == {2: 1, 3: 1}  # 429 and 503 retried
            report = sync_huggingface(hub, Query(), endpoint=fake.url)  # resumes from the watermark
        finally:
            sync.CHUNK = old
        reg = hub.registry()
        assert len(reg) == len(models) - 1 == len(set(reg.model_ids))  # all but the gated one, no duplicates
        assert models[4].id not in reg and not report.problems  # the gated one was never imported
        assert reg.card(models[3].id).domain == "Unknown"  # the malformed card came in text-only
        gone = models.pop(7).id
        models[8].gated = "auto"
        again = sync_huggingface(hub, Query(), endpoint=fake.url)
        assert again.added == 0 and again.retired == 2 and any("gated on the Hub" in n for n in again.notes)
        assert reg.status(gone) == "active" and hub.registry().status(gone) == "retired"
        assert hub.registry().status(models[8].id) == "retired"


def test_sync_through_the_cli_with_hf_endpoint(tmp_path, stream):
    models = fake_models(stream[0].new_cards[:15])
    with FakeHub(models, page_size=4) as fake:
        env = {**os.environ, "HF_ENDPOINT": fake.url, "HF_HUB_OFFLINE": "0"}
        cmd = [sys.executable, "-m", "hubroute.cli", "hub", "sync", "--into", str(tmp_path / "hub"), "--json"]
        proc = subprocess.run(
            [*cmd, "--filter", "synthetic", "--readme"], capture_output=True, text=True, timeout=300, env=env
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["added"] == 15
        card = HubFolder(tmp_path / "hub").registry().card(models[0].id)
        assert stream[0].new_cards[0].text[:40] in card.text  # the README's body, downloaded
    with FakeHub(models, faults=Faults(pages={1: 404}, times=99)) as down:  # a Hub that refuses the listing
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**env, "HF_ENDPOINT": down.url})
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.startswith("error: the Hub API answered") and len(proc.stderr.strip().splitlines()) == 1


# -- constraints ------------------------------------------------------------------------------
def test_constraints_mask_before_top_k(stream):
    from hubroute.routers import BM25Router

    cards = stream[0].new_cards[:12]
    r = BM25Router()

    def meta(i: int) -> dict:
        return {
            "license": "mit" if i % 2 else "gpl-3.0",
            "params": 10**8 * (i + 1),
            "language": ["en", "es"] if i % 3 else ["de"],
        }

    r.add_models([ModelCard(c.model_id, c.family, c.domain, c.text, None, meta(i)) for i, c in enumerate(cards)])
    k = Constraints.parse(["license=MIT", "params<=6e8", "language=es"])
    hits = r.route([e.prompt for e in stream[0].eval[:10]], 12, constraints=k)
    allowed = {c.model_id for i, c in enumerate(cards) if i % 2 and 10**8 * (i + 1) <= 6e8 and i % 3}
    assert allowed and all({h.model_id for h in hs} <= allowed for hs in hits)
    assert all(len(hs) == len(allowed) for hs in hits)
    with pytest.raises(HubrouteError, match="unknown constraint 'colour'"):
        Constraints.parse(["colour=red"])
    with pytest.raises(HubrouteError, match="unknown constraint"):
        Constraints.from_dict({"size": 3})


# -- the loop end to end ----------------------------------------------------------------------
def test_route_your_own_hub_end_to_end(tmp_path, stream):
    """The tutorial in docs/own-hub.md: cards and a prompt log in, a served router that routes
    under a constraint, new cards synced from the Hub, an update, the new models routed."""
    hub = tmp_path / "hub"
    cards = write_cards(tmp_path / "cards", stream[0].new_cards)
    log = tmp_path / "prompts.jsonl"
    log.write_text("".join(json.dumps({"prompt": e.prompt, "model_id": e.model_id}) + "\n" for e in stream[0].train))
    run = lambda *args: runner.invoke(app, [str(a) for a in args])  # noqa: E731
    for args in (
        ("hub", "import", cards, "--into", hub),
        ("hub", "examples", "add", log, "--into", hub),
        ("hub", "experience", "--into", hub, "--name", "week-1"),
        ("train", "--data", hub, "-p", "epochs=2", "--out", tmp_path / "run", "--no-plots"),
    ):
        res = run(*args)
        assert res.exit_code == 0, (args, res.output)
    from hubroute.service.app import create_app
    from hubroute.service.config import ServiceConfig

    config = ServiceConfig(inference="fp32", access_log=False)
    with TestClient(create_app(tmp_path / "state", tmp_path / "run" / "router", config)) as c:
        prompt = stream[0].eval[0].prompt
        body = {"prompts": prompt, "k": 3, "constraints": {"license": ["apache-2.0"], "language": ["en"]}}
        r = c.post("/v1/route", json=body)
        assert r.status_code == 200 and len(r.json()["results"][0]["models"]) == 3
        none = c.post("/v1/route", json={"prompts": prompt, "constraints": {"license": ["proprietary"]}})
        assert none.status_code == 200 and none.json()["results"][0]["models"] == []
        assert c.post("/v1/route", json={"prompts": prompt, "constraints": {"colour": ["red"]}}).status_code == 422
    new = stream[1].new_cards
    with FakeHub(fake_models(new, T0 + dt.timedelta(days=7)), page_size=20) as fake:
        res = runner.invoke(
            app, ["hub", "sync", "--into", str(hub), "--endpoint", fake.url, "--readme"], env={"HF_HUB_OFFLINE": "0"}
        )
        assert res.exit_code == 0, res.output
    log2 = tmp_path / "week2.jsonl"
    log2.write_text("".join(json.dumps({"prompt": e.prompt, "model_id": e.model_id}) + "\n" for e in stream[1].train))
    assert run("hub", "examples", "add", log2, "--into", hub).exit_code == 0
    assert run("hub", "experience", "--into", hub).exit_code == 0
    res = run(
        "update",
        "--router",
        tmp_path / "run" / "router",
        "--data",
        hub,
        "--out",
        tmp_path / "run2",
        "--min-held-out",
        "1",
    )
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "run2" / "update.json").read_text())
    assert report["accepted"] and report["after"]["held_out"]["M"] > report["before"]["held_out"]["M"]
    assert "earlier_held_out" in report["after"]
    targets = [e for e in stream[1].eval if e.model_id in {c.model_id for c in new}]
    res = run("route", "--router", tmp_path / "run2" / "router", "--json", "-k", "1", *[e.prompt for e in targets])
    top = [r["models"][0]["model_id"] for r in json.loads(res.stdout)]
    assert sum(t == e.model_id for t, e in zip(top, targets, strict=True)) >= 0.5 * len(targets)
    assert (tmp_path / "run" / "router" / "config.json").is_file()  # the router it started from is untouched
