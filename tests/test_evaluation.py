from __future__ import annotations

import json

import numpy as np

from hubroute.evaluation.report import write_report
from hubroute.evaluation.runner import run_stream
from hubroute.routers import BM25Router


def test_run_stream_fills_lower_triangle_and_reports(small_stream, tmp_path):
    res = run_stream(BM25Router(), small_stream, ks=(1, 3), seed=5, latency=True)
    m = res.matrix("M")
    assert np.isnan(m[0, 1]) and not np.isnan(m[3]).any()
    assert (res.matrix("D") >= res.matrix("M") - 1e-9)[~np.isnan(m)].all()
    assert (res.matrix("M", 3) >= m - 1e-9)[~np.isnan(m)].all()
    assert [f.registry_size for f in res.fits] == [40, 80, 120, 160]
    assert all(f.wall_s >= 0 and f.peak_rss_mib > 0 for f in res.fits)
    assert res.latency["single_p50_ms"] > 0 and res.latency["batch_prompts_per_s"] > 0
    paths = write_report(res, tmp_path, command="hubroute bench --test")
    names = {p.name for p in paths}
    assert names == {"results.json", "results.md", "accuracy_heatmap.png", "accuracy_curves.png"}
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["seed"] == 5 and data["command"] == "hubroute bench --test"
    assert data["accuracy"]["M"]["top1"][0][1] is None
    assert data["summary"]["D"]["final_average"] == res.summary()["D"]["final_average"]
    assert "torch" in data["environment"]
    md = (tmp_path / "results.md").read_text()
    assert "D-Acc (same domain)" in md and "synth-4" in md and "SYNTHETIC" in md
    assert (tmp_path / "accuracy_heatmap.png").read_bytes()[:4] == b"\x89PNG"


def test_a_model_registered_later_is_not_routable_earlier(small_stream):
    r = BM25Router()
    r.fit(small_stream[0])
    rows, _ = r.rank([x.prompt for x in small_stream[0].eval], 10)
    assert rows.max() < len(small_stream[0].new_cards)
