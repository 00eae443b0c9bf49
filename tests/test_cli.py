from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from hubroute.cli import app, parse_params

runner = CliRunner()


def test_parse_params():
    assert parse_params(["w=0.5", "fusion=rrf", "flag=true"]) == {"w": 0.5, "fusion": "rrf", "flag": True}


def test_data_stats_on_cmrbench(cmrbench_dir):
    res = runner.invoke(app, ["data", "stats", "--data", str(cmrbench_dir), "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["total"]["models"] == 2127 and data["total"]["domains"] == 58


def test_synth_bench_and_route(tmp_path):
    syn = tmp_path / "syn"
    res = runner.invoke(app, ["data", "synth", "--out", str(syn), "--models", "80", "--experiences", "2"])
    assert res.exit_code == 0, res.output
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


def test_bench_centroid_learns_and_routes(tmp_path):
    syn = tmp_path / "syn"
    res = runner.invoke(app, ["data", "synth", "--out", str(syn), "--models", "60", "--experiences", "2"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "centroid"
    res = runner.invoke(
        app, ["bench", "--data", str(syn), "--router", "centroid", "--out", str(out), "--no-plots", "--no-latency"]
    )
    assert res.exit_code == 0, res.output
    data = json.loads((out / "results.json").read_text())
    assert data["router"] == "centroid" and data["params"]["card_weight"] == 0.5
    assert data["summary"]["D"]["final_average"] > 60
    res = runner.invoke(app, ["route", "--router", str(out / "router"), "--json", "translate german subtitles"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)[0]["models"][0]["model_id"]


def test_errors_are_one_line_with_exit_code_2(tmp_path):
    cmd = [sys.executable, "-m", "hubroute.cli", "data", "stats", "--data", str(tmp_path / "missing")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:") and "Traceback" not in proc.stderr
    assert "no CMRBench 'processed/' folder" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "hubroute.cli", "route", "--router", str(tmp_path), "hi"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "not a saved hubroute router" in proc.stderr


def test_demo_runs_end_to_end(tmp_path):
    res = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--models", "60"])
    assert res.exit_code == 0, res.output
    assert "SYNTHETIC" in res.output
    for kind in ("bm25", "dense", "hybrid"):
        assert (tmp_path / "demo" / kind / "results.json").is_file()
    assert (tmp_path / "demo" / "hybrid" / "router" / "config.json").is_file()


def test_train_saves_after_each_experience_and_routes(tmp_path):
    syn = tmp_path / "syn"
    assert (
        runner.invoke(app, ["data", "synth", "--out", str(syn), "--models", "40", "--experiences", "2"]).exit_code == 0
    )
    out = tmp_path / "train"
    args = ["train", "--data", str(syn), "--strategy", "replay", "-s", "ratio=0.5", "-p", "epochs=2", "--out", str(out)]
    res = runner.invoke(app, [*args, "--no-plots"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["1-synth-1", "2-synth-2"]
    data = json.loads((out / "results.json").read_text())
    assert data["params"]["strategy"] == "replay" and data["params"]["strategy_params"]["ratio"] == 0.5
    res = runner.invoke(app, ["route", "--router", str(out / "router"), "--json", "translate german subtitles"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)[0]["models"]) == 5
    res = runner.invoke(app, ["train", "--router", "bm25", "--data", str(syn), "--out", str(out)])
    assert res.exit_code != 0


def test_train_carve_saves_a_carve_router_that_routes(tmp_path):
    syn = tmp_path / "syn"
    assert (
        runner.invoke(app, ["data", "synth", "--out", str(syn), "--models", "40", "--experiences", "2"]).exit_code == 0
    )
    out = tmp_path / "carve"
    args = ["train", "--router", "carve", "--data", str(syn), "-s", "k=16", "-p", "epochs=2", "--out", str(out)]
    res = runner.invoke(app, [*args, "-p", "row_refresh=true", "-p", "card_weight=0.5", "--no-plots"])
    assert res.exit_code == 0, res.output
    config = json.loads((out / "router" / "config.json").read_text())
    assert config["router"] == "carve" and config["params"]["strategy"] == "carve"
    assert config["params"]["strategy_params"]["k"] == 16
    assert config["params"]["row_refresh"] is True and config["params"]["card_weight"] == 0.5
    assert json.loads((out / "router" / "state.json").read_text())["row_mass"]
    res = runner.invoke(app, ["route", "--router", str(out / "router"), "--json", "translate german subtitles"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)[0]["models"]) == 5
