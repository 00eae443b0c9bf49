"""The benchmark suite runs (on a small synthetic hub) and the generated reports are current."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), *args], capture_output=True, text=True, timeout=timeout
    )


def test_every_config_is_known_and_lists():
    proc = run("list")
    assert proc.returncode == 0, proc.stderr
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert {"zero_shot", "centroid", "carve_frozen", "baselines_full", "service_load", "service_attack"} <= set(names)


def test_a_stream_experiment_runs_and_resumes(tmp_path):
    from hubroute.data.synth import SynthConfig, write_synthetic

    hub = write_synthetic(SynthConfig(models=40, experiences=2, seed=1), tmp_path / "hub")
    out = tmp_path / "out"
    only = ["--only", "carve 10%", "replay 10%"]
    proc = run("run", "carve_frozen", "--data", str(hub), "--out", str(out), *only)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    assert set(data["runs"]) == {"carve 10%", "replay 10%"}
    assert data["runs"]["carve 10%"]["params"]["card_weight"] == 0.5  # the config's defaults
    md = (out / "results.md").read_text()
    assert "carve 10% vs replay 10%" in md and "## carve 10%: D-Acc matrix" in md
    proc = run("run", "carve_frozen", "--data", str(hub), "--out", str(out), "--resume", "--only", "joint")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((out / "results.json").read_text())
    assert set(data["runs"]) == {"carve 10%", "replay 10%", "joint"} and data["resumed_by"]
    assert run("run", "carve_frozen", "--data", str(hub), "--only", "nope").returncode != 0


def test_the_generated_results_are_up_to_date():
    proc = run("report", "--check")
    assert proc.returncode == 0, proc.stderr + proc.stdout


def test_the_generated_reference_pages_are_up_to_date():
    proc = subprocess.run(
        [sys.executable, str(REPO / "docs" / "gen_reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
