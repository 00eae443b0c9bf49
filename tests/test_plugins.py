"""A router and a strategy defined here, outside hubroute, found by class path: trained, saved,
loaded and benchmarked through the real CLI, and the component tables that find them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hubroute.continual import Strategy, TrainItem
from hubroute.errors import HubrouteError
from hubroute.plugins import ComponentTable, check_params
from hubroute.routers import ROUTERS, Router, load_router

HERE = Path(__file__).resolve().parent


class KeywordRouter(Router):
    """Scores a model by the words (of at least ``min_length`` letters) its card shares with the
    prompt, and learns each model's words from its training prompts."""

    kind = "keyword"

    def __init__(self, min_length: int = 3, registry=None):
        super().__init__(registry)
        self.min_length = min_length
        self.words_: dict[str, set[str]] = {}

    def get_params(self) -> dict[str, Any]:
        return {"min_length": self.min_length}

    def _words(self, text: str) -> set[str]:
        return {w for w in text.lower().split() if len(w) >= self.min_length}

    def _learn(self, experience) -> None:
        for x in experience.train:
            self.words_.setdefault(x.model_id, set()).update(self._words(x.prompt))

    def scores(self, prompts):
        cards = [self._words(c.text) | self.words_.get(c.model_id, set()) for c in self.registry_]
        return np.array([[len(self._words(p) & c) for c in cards] for p in prompts], dtype=np.float32)

    def _save_state(self, directory: Path) -> None:
        (directory / "words.json").write_text(json.dumps({k: sorted(v) for k, v in self.words_.items()}))

    def _load_state(self, directory: Path) -> None:
        self.words_ = {k: set(v) for k, v in json.loads((directory / "words.json").read_text()).items()}


class UpweightNewModels(Strategy):
    """Weighs the examples of models first seen in this experience more."""

    def __init__(self, weight: float = 2.0):
        self.weight = weight
        self.seen_: set[str] = set()

    def get_params(self) -> dict[str, Any]:
        return {"weight": self.weight}

    def weight_factor(self, item: TrainItem) -> float:
        return 1.0 if item.example.model_id in self.seen_ else self.weight

    def after_experience(self, trainer, experience) -> None:
        self.seen_ |= {e.model_id for e in experience.train}

    def state_json(self) -> dict[str, Any]:
        return {"seen": sorted(self.seen_)}

    def load_state(self, tensors, state) -> None:
        self.seen_ = set(state.get("seen", []))


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(
        [sys.executable, "-m", "hubroute.cli", *args], capture_output=True, text=True, timeout=600, env=env
    )


@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> Path:
    from hubroute.data.synth import SynthConfig, write_synthetic

    return write_synthetic(SynthConfig(models=40, experiences=2, seed=4), tmp_path_factory.mktemp("syn") / "hub")


def test_an_outside_router_benchmarks_saves_loads_and_routes_through_the_cli(syn, tmp_path):
    out = tmp_path / "kw"
    proc = cli(
        "bench",
        "--router",
        "test_plugins:KeywordRouter",
        "-p",
        "min_length=4",
        "--data",
        str(syn),
        "--out",
        str(out),
        "--no-plots",
    )
    assert proc.returncode == 0, proc.stderr
    config = json.loads((out / "router" / "config.json").read_text())
    assert config["class"] == "test_plugins:KeywordRouter" and config["params"] == {"min_length": 4}
    assert json.loads((out / "results.json").read_text())["summary"]["D"]["final_average"] > 20
    proc = cli("route", "--router", str(out / "router"), "--json", "-k", "2", "translate german subtitles")
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)[0]["models"]) == 2
    back = load_router(out / "router")  # in this process too
    assert isinstance(back, KeywordRouter) and back.words_
    proc = cli(
        "bench",
        "--router",
        "test_plugins:KeywordRouter",
        "-p",
        "min_length=short",
        "--data",
        str(syn),
        "--out",
        str(tmp_path / "x"),
    )
    assert proc.returncode == 2 and "min_length" in proc.stderr


def test_an_outside_strategy_trains_alone_and_composed_through_the_cli(syn, tmp_path):
    for name, strategy in (
        ("alone", "test_plugins:UpweightNewModels"),
        ("composed", "replay+test_plugins:UpweightNewModels"),
    ):
        out = tmp_path / name
        proc = cli(
            "train", "--router", "embedding", "--strategy", strategy, "-s", "weight=3", "-p", "epochs=1",
            "--data", str(syn), "--out", str(out), "--no-plots",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        router = load_router(out / "router")
        parts = router.strategy_.components()
        upweight = next(s for s in parts if isinstance(s, UpweightNewModels))
        assert upweight.weight == 3 and upweight.seen_  # its state travelled with the router
        proc = cli("route", "--router", str(out / "router"), "--json", "translate german subtitles")
        assert proc.returncode == 0, proc.stderr


def test_component_tables_list_names_without_importing_and_check_parameters():
    assert {"bm25", "carve", "centroid"} <= set(ROUTERS.names())
    table: ComponentTable[Router] = ComponentTable("router", Router)
    table.register("keyword", "test_plugins:KeywordRouter")
    assert table.resolve("keyword") is KeywordRouter and table.name_of(KeywordRouter) == "keyword"
    with pytest.raises(HubrouteError, match="already taken"):
        table.register("keyword", "hubroute.routers.bm25:BM25Router")
    with pytest.raises(HubrouteError, match="unknown router 'nope'"):
        table.resolve("nope")
    with pytest.raises(HubrouteError, match="not a router"):
        table.resolve("test_plugins:UpweightNewModels")
    with pytest.raises(HubrouteError, match="cannot import"):
        table.resolve("no_such_module:Thing")
    with pytest.raises(HubrouteError, match="unknown 'colour'"):
        check_params(KeywordRouter, {"colour": 1}, "router 'keyword'")
