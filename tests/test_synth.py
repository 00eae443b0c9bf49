from __future__ import annotations

from collections import Counter

import pytest

from hubroute.data.cmrbench import load_cmrbench
from hubroute.data.synth import SynthConfig, experience_bounds, iter_records, synth_stream, write_synthetic
from hubroute.errors import HubrouteError


def test_deterministic_by_seed():
    a = synth_stream(SynthConfig(models=80, seed=3))
    b = synth_stream(SynthConfig(models=80, seed=3))
    c = synth_stream(SynthConfig(models=80, seed=4))
    assert [e.prompt for e in a[2].train] == [e.prompt for e in b[2].train]
    assert [x.model_id for x in a.all_cards()] == [x.model_id for x in b.all_cards()]
    assert [e.prompt for e in a[2].train] != [e.prompt for e in c[2].train]


def test_shape_of_the_hub():
    cfg = SynthConfig(models=200, experiences=4, train_per_model=2, eval_per_model=1, recurring=0.25, family_size=4)
    s = synth_stream(cfg)
    assert [len(e.new_cards) for e in s] == [50, 50, 50, 50]
    assert len({c.model_id for c in s.all_cards()}) == 200
    # recurring models: later experiences query earlier models
    earlier = {c.model_id for c in s[0].new_cards}
    n_rec = round(0.25 * 50)
    assert len(s[1].model_ids & earlier) == n_rec
    assert len(s[1].train) == 2 * (50 + n_rec) and len(s[1].eval) == 50 + n_rec
    # families hold several versions; new domains open over time
    fam_sizes = Counter(c.family for c in s.all_cards())
    assert max(fam_sizes.values()) == 4
    doms = [{c.domain for c in e.new_cards} for e in s]
    assert len(set().union(*doms)) > len(doms[0])
    assert all("SYNTHETIC" in n for n in s.notes)


def test_written_folder_loads_like_cmrbench(tmp_path):
    cfg = SynthConfig(models=60, experiences=3, seed=1)
    write_synthetic(cfg, tmp_path)
    assert "SYNTHETIC" in (tmp_path / "README.md").read_text()
    loaded = load_cmrbench(tmp_path)
    mem = synth_stream(cfg)
    assert loaded.name == "synthetic" and len(loaded) == 3
    assert [e.prompt for e in loaded[1].eval] == [e.prompt for e in mem[1].eval]
    assert [c.model_id for c in loaded.all_cards()] == [c.model_id for c in mem.all_cards()]


def test_generation_is_streamed():
    cfg = SynthConfig(models=1_000_000, experiences=4)
    it = iter_records(cfg, 3, "eval")
    first = next(it)  # no list of a million models is built
    start, _ = experience_bounds(cfg, 3)
    assert first["model_name"].endswith(f"-v{start % cfg.family_size + 1}")
    assert first["original_dataset"] == "hubroute-synthetic"


def test_bad_config():
    with pytest.raises(HubrouteError):
        SynthConfig(models=2, experiences=4)
    with pytest.raises(HubrouteError):
        SynthConfig(recurring=2.0)
