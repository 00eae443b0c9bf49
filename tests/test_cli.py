"""The `hubroute` command: what each command does, and that every error a user can cause is one
line (`error: ...`, exit code 2), never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubroute.cli import app, parse_params

runner = CliRunner()
LONG_ID = "an-organisation-with-a-long-name/a-model-whose-id-is-longer-than-any-terminal-column-budget"


def hubroute(*args: str, input: str | None = None, env: dict | None = None, timeout: int = 300):
    """The real command in a subprocess, stdout a pipe (as in a script)."""
    return subprocess.run(
        [sys.executable, "-m", "hubroute.cli", *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "60", **(env or {})},
    )


def one_line_error(proc, *needles: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("syn") / "hub"
    res = runner.invoke(app, ["data", "synth", "--out", str(path), "--models", "80", "--experiences", "2"])
    assert res.exit_code == 0, res.output
    return path


@pytest.fixture(scope="module")
def long_id_router(tmp_path_factory) -> Path:
    from hubroute.hub import ModelCard
    from hubroute.routers import BM25Router

    r = BM25Router()
    r.add_models([ModelCard(LONG_ID, "fam", "Audio Automatic Speech Recognition", "transcribe speech audio to text")])
    r.add_models([ModelCard("org/other", "fam2", "Computer Vision Image Classification", "label images")])
    return r.save(tmp_path_factory.mktemp("r") / "router")


def test_parse_params():
    assert parse_params(["w=0.5", "fusion=rrf", "flag=true"]) == {"w": 0.5, "fusion": "rrf", "flag": True}
    assert parse_params(["training.epochs=2", "training.lr_proj=1e-3"]) == {"training": {"epochs": 2, "lr_proj": 1e-3}}


def test_version():
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.startswith("hubroute 0.")


def test_data_stats_on_cmrbench(cmrbench_dir):
    res = runner.invoke(app, ["data", "stats", "--data", str(cmrbench_dir), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["total"]["models"] == 2127 and data["total"]["domains"] == 58


def test_max_examples_keeps_every_model(syn):
    full = json.loads(runner.invoke(app, ["data", "stats", "--data", str(syn), "--json"]).stdout)
    from hubroute.data.cmrbench import load_cmrbench

    few = load_cmrbench(syn, max_examples=3)
    assert len(few.all_cards()) == full["total"]["models"]
    assert all(len(e.train) <= 3 and len(e.eval) <= 3 for e in few)


def test_route_prints_whole_model_ids_to_a_pipe_and_a_narrow_terminal(long_id_router):
    proc = hubroute("route", "--router", str(long_id_router), "-k", "2", "transcribe this voicemail")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == "prompt\trank\tmodel_id\tscore\tdomain\tfamily"
    assert lines[1].split("\t")[2] == LONG_ID
    res = runner.invoke(
        app, ["route", "--router", str(long_id_router), "transcribe this voicemail"], env={"COLUMNS": "40"}
    )
    assert res.exit_code == 0 and LONG_ID in res.stdout.replace("\n", "")


def test_route_reads_prompts_from_a_file_and_stdin(long_id_router, tmp_path):
    f = tmp_path / "prompts.txt"
    f.write_text("transcribe this voicemail\n\nlabel these photos\n")
    proc = hubroute("route", "--router", str(long_id_router), "--input", str(f), "--jsonl", "-k", "1")
    assert proc.returncode == 0, proc.stderr
    recs = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["prompt"] for r in recs] == ["transcribe this voicemail", "label these photos"]
    assert recs[0]["models"][0]["model_id"] == LONG_ID and recs[1]["models"][0]["model_id"] == "org/other"
    stdin = '{"prompt": "transcribe this voicemail"}\n{"prompt": "label these photos"}\n'
    proc = hubroute("route", "--router", str(long_id_router), "--input", "-", "--json", "-k", "1", input=stdin)
    assert proc.returncode == 0 and len(json.loads(proc.stdout)) == 2


def test_route_applies_the_service_limits(long_id_router, tmp_path):
    one_line_error(hubroute("route", "--router", str(long_id_router), ""), "prompt 1 is empty")
    one_line_error(hubroute("route", "--router", str(long_id_router), "-k", "100000", "hi"), "-k")
    one_line_error(hubroute("route", "--router", str(long_id_router), "-k", "0", "hi"), "-k")
    one_line_error(hubroute("route", "--router", str(long_id_router)), "no prompt given")
    one_line_error(hubroute("route", "--router", str(long_id_router), "x" * 5000), "limit is 4000")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "fine"}\n{"text": "no prompt key"}\n')
    one_line_error(hubroute("route", "--router", str(long_id_router), "--input", str(bad)), "bad.jsonl:2")
    one_line_error(hubroute("route", "--router", str(long_id_router), "--domain", "Cooking", "hi"), "unknown domain")


def test_every_error_is_one_line(tmp_path, syn):
    one_line_error(hubroute("data", "stats", "--data", str(tmp_path / "missing")), "no CMRBench 'processed/' folder")
    one_line_error(hubroute("route", "--router", str(tmp_path), "hi"), "not a saved hubroute router")
    # no service listening: a one-line error, not a connection traceback
    for args in (
        ["models", "list"],
        ["models", "retire", "a/b"],
        ["models", "activate", "a/b"],
        ["models", "add", "--model-id", "a/b", "--domain", "X"],
    ):
        one_line_error(hubroute(*args, "--url", "http://127.0.0.1:9"), "cannot reach http://127.0.0.1:9")
    one_line_error(hubroute("models", "add", "--file", str(tmp_path / "nope.jsonl")), "nope.jsonl", "not found")
    one_line_error(hubroute("models", "add"), "give --file")
    one_line_error(hubroute("models", "retire"), "give model ids")
    one_line_error(hubroute("models", "activate", "--file", str(tmp_path / "ids.txt")), "ids.txt", "not found")
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(b'{"model_id": "a/b", "domain": "X", "text": "caf\xe9"}\n')
    one_line_error(hubroute("models", "add", "--file", str(latin)), "latin1.jsonl:1", "not UTF-8")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"model_id": "a/b", "domain": "X", "text": "unterminated}\n')
    proc = hubroute("models", "add", "--file", str(broken))
    one_line_error(proc, "broken.jsonl:1", "invalid JSON")
    assert "at at" not in proc.stderr
    # a bad parameter is caught before anything is fitted
    proc = hubroute("bench", "--data", str(syn), "--router", "hybrid", "-p", "w_bm25=abc", "--out", str(tmp_path / "b"))
    one_line_error(proc, "w_bm25")
    assert not (tmp_path / "b").exists()
    one_line_error(
        hubroute("bench", "--data", str(syn), "--router", "nope", "--out", str(tmp_path / "b")), "unknown router"
    )
    one_line_error(hubroute("train", "--data", str(syn), "--strategy", "magic", "--out", str(tmp_path / "t")), "magic")
    one_line_error(hubroute("bench", "--data", str(syn), "-p", "oops", "--out", str(tmp_path / "b")), "KEY=VALUE")


def test_a_data_file_that_is_not_utf8_names_file_and_line(tmp_path, syn):
    import shutil

    copy = tmp_path / "hub"
    shutil.copytree(syn, copy)
    split = next((copy / "processed").glob("*-val.json"))
    lines = split.read_bytes().splitlines(keepends=True)
    lines.insert(2, b'{"instruction": "caf\xe9"}\n')
    split.write_bytes(b"".join(lines))
    one_line_error(hubroute("data", "stats", "--data", str(copy)), f"{split.name}:3", "not UTF-8")


def test_help_reads_as_prose():
    for cmd in (["train"], ["bench"], ["route"], ["models", "add"], ["serve"], ["keys", "create"]):
        res = runner.invoke(app, [*cmd, "--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0
        assert "``" not in res.stdout, cmd
    res = runner.invoke(app, ["models", "add", "--help"], env={"COLUMNS": "200"})
    for option in ("--model-id", "--domain", "--family", "--text", "--file", "--key"):
        line = next(x for x in res.stdout.splitlines() if option in x)
        assert len(line.split(option, 1)[1].strip(" │")) > 20, line  # the option has help text
    res = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    assert "replay+ewc" in res.stdout and "carve" in res.stdout  # the lists come from the tables


def test_synth_bench_and_route(syn, tmp_path):
    out = tmp_path / "bench"
    res = runner.invoke(
        app, ["bench", "--data", str(syn), "--router", "bm25", "--out", str(out), "--no-plots", "-p", "k1=1.5"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["params"]["k1"] == 1.5 and data["experiences"] == ["synth-1", "synth-2"]
    res = runner.invoke(
        app, ["route", "--router", str(out / "router"), "-k", "2", "--json", "translate german subtitles"]
    )
    assert res.exit_code == 0, res.output
    hits = json.loads(res.stdout)[0]["models"]
    assert len(hits) == 2 and {"model_id", "score", "domain", "family"} <= set(hits[0])


def test_bench_centroid_learns_and_routes(syn, tmp_path):
    out = tmp_path / "centroid"
    res = runner.invoke(app, ["bench", "--data", str(syn), "--out", str(out), "--no-plots", "--no-latency"])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["router"] == "centroid" and data["params"]["card_weight"] == 0.5  # the default router
    assert data["summary"]["D"]["final_average"] > 60
    res = runner.invoke(app, ["route", "--router", str(out / "router"), "--json", "translate german subtitles"])
    assert res.exit_code == 0 and json.loads(res.stdout)[0]["models"][0]["model_id"]


def test_route_without_a_router_fits_the_prompt_centroid_router(syn):
    res = runner.invoke(app, ["route", "--data", str(syn), "--json", "-k", "1", "translate german subtitles"])
    assert res.exit_code == 0, res.output
    assert "prompt-centroid router" in res.stderr


def test_demo_runs_end_to_end(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--models", "60"])
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" in res.output
    for kind in ("bm25", "hybrid", "centroid"):
        assert (tmp_path / "demo" / kind / "results.json").is_file()
    assert "centroid (cards + labelled prompts, no training)" in res.stdout  # each block named
    assert (tmp_path / "demo" / "centroid" / "router" / "config.json").is_file()


def test_train_saves_after_each_experience_and_routes(syn, tmp_path):
    out = tmp_path / "train"
    args = ["train", "--router", "embedding", "--data", str(syn), "--strategy", "replay", "-s", "ratio=0.5"]
    res = runner.invoke(app, [*args, "-p", "training.epochs=2", "--out", str(out), "--no-plots"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["1-synth-1", "2-synth-2"]
    data = json.loads((out / "results.json").read_text())
    assert data["params"]["strategy"] == "replay" and data["params"]["strategy_params"]["ratio"] == 0.5
    assert data["params"]["training"]["epochs"] == 2
    res = runner.invoke(app, ["route", "--router", str(out / "router"), "--json", "translate german subtitles"])
    assert res.exit_code == 0 and len(json.loads(res.stdout)[0]["models"]) == 5
    res = runner.invoke(app, ["train", "--router", "bm25", "--data", str(syn), "--out", str(out)])
    assert res.exit_code != 0


def test_train_carve_and_compositions(syn, tmp_path):
    out = tmp_path / "carve"
    res = runner.invoke(
        app, ["train", "--data", str(syn), "-s", "k=16", "-p", "epochs=2", "--out", str(out), "--no-plots"]
    )
    assert res.exit_code == 0, res.output
    config = json.loads((out / "router" / "config.json").read_text())
    assert config["router"] == "carve" and config["params"]["strategy"] == "carve"
    assert config["params"]["strategy_params"]["k"] == 16
    assert config["params"]["row_refresh"] is True and config["params"]["card_weight"] == 0.5
    assert config["class"] == "hubroute.routers.carve:CARvERouter"
    assert json.loads((out / "router" / "state.json").read_text())["row_mass"]
    out2 = tmp_path / "composed"
    args = ["train", "--data", str(syn), "--strategy", "coreset+anchoring+domain_batches", "-s", "ratio=0.5"]
    res = runner.invoke(app, [*args, "-s", "anchoring.phase1_lr_encoder=0.1", "-p", "epochs=1", "--out", str(out2)])
    assert res.exit_code == 0, res.output
    params = json.loads((out2 / "router" / "config.json").read_text())["params"]
    assert params["strategy"] == "compose"
    names = [s["name"] for s in params["strategy_params"]["strategies"]]
    assert names == ["coreset", "anchoring", "domain_batches"]
    assert params["strategy_params"]["strategies"][1]["params"]["phase1_lr_encoder"] == 0.1
    res = runner.invoke(app, ["route", "--router", str(out2 / "router"), "--json", "translate german subtitles"])
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_default_route_on_cmrbench_sends_speech_to_speech_models(cmrbench_dir, cache_dir, monkeypatch):
    monkeypatch.setenv("HUBROUTE_CACHE", str(cache_dir))
    res = runner.invoke(
        app,
        ["route", "--data", str(cmrbench_dir), "--json", "-k", "3", "transcribe this German podcast"],
    )
    assert res.exit_code == 0, res.output
    top = json.loads(res.stdout)[0]["models"]
    assert top[0]["domain"] == "Audio Automatic Speech Recognition", top
