from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hubroute.data.cmrbench import EXPERIENCES, expected_files, load_cmrbench, resolve_root
from hubroute.errors import DataError


def test_public_stream_matches_the_release(cmrbench_dir):
    s = load_cmrbench(cmrbench_dir)
    assert [e.name for e in s] == list(EXPERIENCES)
    assert [len(e.train) for e in s] == [1174, 688, 1328, 1395]
    assert [len(e.eval) for e in s] == [867, 809, 984, 1033]
    assert [len(e.new_cards) for e in s] == [852, 361, 450, 464]
    cards = s.all_cards()
    assert len(cards) == len({c.model_id for c in cards}) == 2127
    assert len({c.domain for c in cards}) == 58
    # every eval model is registered by its own experience or an earlier one
    seen: set[str] = set()
    for e in s:
        seen |= {c.model_id for c in e.new_cards}
        assert {x.model_id for x in e.eval} <= seen
    assert not any(x.prompt.startswith("###") or "###Input" in x.prompt for e in s for x in e.train)
    assert all(c.text and c.family for c in cards)


def test_conflicting_labels_are_reported_and_deterministic(cmrbench_dir):
    a, b = load_cmrbench(cmrbench_dir), load_cmrbench(cmrbench_dir)
    assert a.notes == b.notes and a.notes
    assert any("pyannote/speaker-diarization" in n for n in a.notes)
    assert [c.domain for c in a.all_cards()] == [c.domain for c in b.all_cards()]


def _copy(cmrbench_dir: Path, dest: Path, n: int = 30) -> Path:
    """First ``n`` lines of each public split, in the release layout."""
    (dest / "processed").mkdir(parents=True)
    for rel in expected_files("public"):
        with (cmrbench_dir / rel).open() as f:
            lines = [next(f) for _ in range(n)]
        (dest / rel).write_text("".join(lines))
    return dest


def test_malformed_line_names_file_and_line(cmrbench_dir, tmp_path):
    root = _copy(cmrbench_dir, tmp_path / "c")
    path = root / "processed" / "cleaned-mllm-val.json"
    lines = path.read_text().splitlines()
    lines[6] = lines[6][:40]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"cleaned-mllm-val\.json:7: invalid JSON"):
        load_cmrbench(root)
    rec = json.loads(lines[0])
    del rec["domain"]
    lines[6] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"cleaned-mllm-val\.json:7: missing or empty field\(s\): domain"):
        load_cmrbench(root)
    rec["domain"], rec["created_at"] = "X", "yesterday"
    lines[6] = json.dumps(rec)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r":7: field 'created_at' must be a number"):
        load_cmrbench(root)


def test_missing_files_are_listed(cmrbench_dir, tmp_path):
    root = _copy(cmrbench_dir, tmp_path / "c", n=5)
    (root / "processed" / "cleaned-mllm-eval.json").unlink()
    with pytest.raises(DataError, match=r"lacks 1 file\(s\).*cleaned-mllm-eval\.json"):
        load_cmrbench(root)
    with pytest.raises(DataError, match=r"protocol 'full'.*cleaned-apibench-hf-train\.json"):
        load_cmrbench(cmrbench_dir, "full")
    with pytest.raises(DataError, match="no CMRBench 'processed/' folder"):
        load_cmrbench(tmp_path / "nowhere")
    with pytest.raises(DataError, match="unknown protocol"):
        load_cmrbench(root, "other")


def test_full_protocol_trains_on_train_and_val(cmrbench_dir, tmp_path):
    root = _copy(cmrbench_dir, tmp_path / "c", n=10)
    for exp in EXPERIENCES:
        shutil.copy(root / f"processed/cleaned-{exp}-val.json", root / f"processed/cleaned-{exp}-train.json")
    s = load_cmrbench(root, "full")
    assert [len(e.train) for e in s] == [20] * 4 and [len(e.eval) for e in s] == [10] * 4


def test_root_may_be_the_repository_parent(cmrbench_dir, tmp_path):
    _copy(cmrbench_dir, tmp_path / "repo" / "data", n=3)
    assert resolve_root(tmp_path / "repo") == tmp_path / "repo" / "data"
    s = load_cmrbench(tmp_path / "repo", max_examples=2)
    assert [len(e.train) for e in s] == [2] * 4


def test_env_var_sets_default(cmrbench_dir, monkeypatch):
    monkeypatch.setenv("HUBROUTE_CMRBENCH", str(cmrbench_dir))
    assert resolve_root() == cmrbench_dir
