"""Offline batch routing: prompt logs (text, JSON lines, Parquet) streamed into a Parquet file."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hubroute.batch import route_file
from hubroute.errors import DataError
from hubroute.routers import CentroidRouter
from test_cli import hubroute, one_line_error


@pytest.fixture(scope="module")
def router(encoder, small_stream):
    r = CentroidRouter(encoder)
    for exp in small_stream:
        r.fit(exp)
    return r


@pytest.fixture(scope="module")
def saved(router, tmp_path_factory):
    return router.save(tmp_path_factory.mktemp("batch") / "router")


def _log(path, prompts):
    path.write_text("\n".join(json.dumps({"prompt": p}) for p in prompts) + "\n", encoding="utf-8")
    return path


def test_a_log_is_routed_in_batches_and_bad_prompts_do_not_stop_their_neighbours(router, small_stream, tmp_path):
    good = [x.prompt for x in small_stream[0].eval[:7]]
    prompts = [good[0], "", good[1], "x" * 5000, good[2], 5, "bad\x00byte", *good[3:]]
    report = route_file(router, _log(tmp_path / "log.jsonl", prompts), tmp_path / "out.parquet", k=3, batch_size=2)
    assert (report.routed, report.rejected) == (7, 4)
    assert report.problems[0] == "2: the prompt is empty"
    t = pq.read_table(tmp_path / "out.parquet").to_pylist()
    routed = [r for r in t if r["error"] is None]
    assert len(routed) == 7 * 3 and [r["rank"] for r in routed[:3]] == [1, 2, 3]
    assert [r["line"] for r in t if r["error"]] == [2, 4, 6, 7]
    assert "5000 characters" in next(r["error"] for r in t if r["line"] == 4)
    assert next(r["error"] for r in t if r["line"] == 6) == "the prompt is int, not text"
    # the same routes as routing the prompts directly
    direct = router.route(good[:3], 3)
    assert [r["model_id"] for r in routed[:9]] == [h.model_id for hits in direct for h in hits]
    assert [r["line"] for r in t] == sorted(r["line"] for r in t)


def test_parquet_in_and_the_output_appears_only_when_complete(router, small_stream, tmp_path):
    prompts = [x.prompt for x in small_stream[1].eval[:5]] + [None]
    pq.write_table(pa.table({"prompt": prompts, "user": list(range(6))}), tmp_path / "log.parquet")
    report = route_file(router, tmp_path / "log.parquet", tmp_path / "out.parquet", k=1, batch_size=4)
    assert (report.routed, report.rejected) == (5, 1)
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 6
    # a broken input line stops the job and leaves the earlier output untouched, with no stray file
    _log(tmp_path / "bad.jsonl", ["fine"]).open("a").write('{"text": "no prompt field"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl:2.*'prompt'"):
        route_file(router, tmp_path / "bad.jsonl", tmp_path / "out.parquet")
    assert pq.read_table(tmp_path / "out.parquet").num_rows == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "log.parquet", "out.parquet"]
    pq.write_table(pa.table({"text": ["a"]}), tmp_path / "nocol.parquet")
    with pytest.raises(DataError, match="no 'prompt' column"):
        route_file(router, tmp_path / "nocol.parquet", tmp_path / "x.parquet")


def test_route_output_from_the_cli(saved, small_stream, tmp_path):
    log = _log(tmp_path / "log.jsonl", [x.prompt for x in small_stream[0].eval[:4]] + [""])
    proc = hubroute("route", "--router", str(saved), "--input", str(log), "--output", str(tmp_path / "o.parquet"))
    assert proc.returncode == 0, proc.stderr
    assert (
        "4 prompts routed" in proc.stderr
        and "1 rejected" in proc.stderr
        and "line 5: the prompt is empty" in proc.stderr
    )
    assert pq.read_table(tmp_path / "o.parquet").num_rows == 4 * 5 + 1
    one_line_error(
        hubroute("route", "--router", str(saved), "--input", str(log), "--output", str(tmp_path / "o.csv")),
        "--output writes Parquet",
    )
    one_line_error(
        hubroute("route", "hello", "--router", str(saved), "--output", str(tmp_path / "o.parquet")), "--input"
    )
    one_line_error(
        hubroute(
            "route", "--router", str(saved), "--input", str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o.pq")
        ),
        "nope.jsonl",
        "file not found",
    )


def test_pieces_of_a_text_log_cover_every_line_once(tmp_path):
    from hubroute.batch_ray import pieces, read_piece

    lines = ["first", "", "  ", '{"prompt": "json prompt"}', "fourth\r", "last without newline"]
    log = tmp_path / "log.txt"
    log.write_bytes("\n".join(lines).encode())
    for size in (1, 2, 4, 100):
        got = [item for piece in pieces(log, size) for item in read_piece(log, piece)]
        assert got == [(1, "first"), (4, "json prompt"), (5, "fourth"), (6, "last without newline")]
    log.write_bytes(b"\n\n")
    assert list(pieces(log, 4)) == [{"group": -1, "start": 0, "stop": 2, "line": 1}]
    assert read_piece(log, next(pieces(log, 4))) == []
    log.write_bytes(b"ok\n\xff bad\n")
    with pytest.raises(DataError, match=r"log.txt:2: not UTF-8"):
        [read_piece(log, p) for p in pieces(log, 1)]


@pytest.mark.slow
def test_ray_data_routes_a_log_into_the_same_file_as_one_process(saved, router, small_stream, tmp_path):
    pytest.importorskip("ray.data", reason="Ray is installed by the ray extra")
    from hubroute.batch_ray import route_file_ray

    good = [x.prompt for x in small_stream[0].eval[:40]]
    prompts = [*good[:10], "", *good[10:25], "x" * 5000, 7, *good[25:]]
    _log(tmp_path / "log.jsonl", prompts)
    pq.write_table(
        pa.table({"prompt": [p if isinstance(p, str) else None for p in prompts]}),
        tmp_path / "log.parquet",
        row_group_size=5,
    )
    for name in ("log.jsonl", "log.parquet"):
        local = route_file(router, tmp_path / name, tmp_path / f"{name}.local.parquet", k=3, batch_size=4)
        spread = route_file_ray(
            saved, tmp_path / name, tmp_path / f"{name}.ray.parquet", k=3, batch_size=4, workers=2, lines_per_task=7
        )
        assert (spread.routed, spread.rejected) == (local.routed, local.rejected) and local.rejected >= 3
        a = pq.read_table(tmp_path / f"{name}.local.parquet").to_pylist()
        b = pq.read_table(tmp_path / f"{name}.ray.parquet").to_pylist()
        assert [{k: v for k, v in r.items() if k != "score"} for r in a] == [
            {k: v for k, v in r.items() if k != "score"} for r in b
        ]
        assert [r["score"] for r in a] == pytest.approx([r["score"] for r in b], abs=1e-5)
    _log(tmp_path / "bad.jsonl", good[:9]).open("a").write('{"text": "no prompt field"}\n')
    proc = hubroute(
        "route",
        "--router",
        str(saved),
        "--input",
        str(tmp_path / "bad.jsonl"),
        "-o",
        str(tmp_path / "bad.parquet"),
        "--engine",
        "ray",
        "--workers",
        "1",
    )
    one_line_error(proc, "bad.jsonl:10", "'prompt'")
    assert not (tmp_path / "bad.parquet").exists()
