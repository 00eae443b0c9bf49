"""Data-parallel training: ``torchrun`` with 2 CPU processes (gloo) against one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hubroute.training import distributed


@pytest.mark.parametrize("n, size", [(7, 2), (8, 2), (9, 4), (3, 4), (64, 3)])
def test_the_shards_of_a_batch_cover_it_once_in_order(monkeypatch, n, size):
    parts = []
    for rank in range(size):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: (rank, size))
        parts.append(distributed.shard(n))
    assert [i for s in parts for i in range(n)[s]] == list(range(n))
    assert max(s.stop - s.start for s in parts) - min(s.stop - s.start for s in parts) <= 1


def test_outside_torchrun_there_is_one_process_that_writes(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with distributed.from_env() as joined:
        assert not joined and distributed.world() == (0, 1) and distributed.is_writer()


def _train(out: Path, data: Path, options: list[str], nproc: int) -> subprocess.CompletedProcess:
    args = ["train", "--out", str(out), "--data", str(data), *options, "--param", "training.epochs=2"]
    args += ["--param", "training.batch_size=16", "--no-plots"]
    launcher = [sys.executable, "-m", "hubroute.cli"]
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "-m", "hubroute.cli"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HUBROUTE_QUIET": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, *args], capture_output=True, text=True, timeout=900, env=env)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return {k: v.float() for k, v in load_file(path).items()} if path.is_file() else {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "options, same_weights",
    [
        # CARvE's own strategy (anchors, row masses): each rank draws its shard's hard negatives, so
        # the weights agree within noise, not to the last digit
        (["--router", "carve"], False),
        (["--router", "carve", "--strategy", "ewc"], True),  # Fisher information
        (["--router", "carve", "--strategy", "replay"], True),  # a replay buffer
        (["--router", "embedding", "--param", "finetune=lora"], False),  # adapters (and dropout)
    ],
    ids=["carve", "ewc", "replay", "lora"],
)
def test_two_torchrun_processes_train_the_artifact_one_process_trains(tmp_path, options, same_weights):
    data = tmp_path / "synth"
    synth = ["data", "synth", "--out", str(data), "--models", "80", "--experiences", "2", "--train-per-model", "3"]
    made = subprocess.run([sys.executable, "-m", "hubroute.cli", *synth], capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    one, two = tmp_path / "one", tmp_path / "two"
    for out, nproc in ((one, 1), (two, 2)):
        done = _train(out, data, options, nproc)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert sorted(p.name for p in two.iterdir()) == sorted(p.name for p in one.iterdir())  # written once
    assert sorted(p.name for p in (one / "router").iterdir()) == sorted(p.name for p in (two / "router").iterdir())
    for name in ("weights.safetensors", "strategy.safetensors"):  # the weights and the strategy's state
        a, b = _tensors(one / "router" / name), _tensors(two / "router" / name)
        assert a.keys() == b.keys(), name
        for k in a:  # the same up to the order of floating-point sums, or within noise
            assert torch.allclose(a[k], b[k], atol=2e-4 if same_weights else 2e-2, rtol=1e-3), (name, k)
    ra = json.loads((one / "results.json").read_text())["accuracy"]
    rb = json.loads((two / "results.json").read_text())["accuracy"]
    for lv in ra:  # top-1 and top-k accuracy after each experience, within 2 points (5 within noise)
        for k in ra[lv]:
            flat_a = [x for row in ra[lv][k] for x in row if x is not None]
            flat_b = [x for row in rb[lv][k] for x in row if x is not None]
            assert flat_a == pytest.approx(flat_b, abs=2.0 if same_weights else 5.0), (lv, k)
