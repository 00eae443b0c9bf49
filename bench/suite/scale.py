"""How cost grows with hub size (kind ``scale``): synthetic hubs of 10^4, 10^5 and 10^6 models, the
exact and the HNSW index side by side in one run.

For each size: the card vectors are encoded once (streamed, resumable, float16 on disk under
``work_dir``). Hubs larger than ``encode_up_to`` take their vectors from the largest encoded hub
instead (row ``i`` is the encoded row ``i mod m`` plus Gaussian noise, renormalised, with that
row's domain): encoding 10^6 cards takes hours on two cores, and the index, registry and service
measurements need vectors of the encoder's distribution, not their texts. The registry is saved
and loaded as JSONL and as Parquet and a batch of cards is appended to each; each index is built
(time, size, peak memory) and searched with the vectors of synthetic prompts: one query at a
time (p50 / p99, with and without the encoder's time) and in batches of 64, recall@1 and
recall@10 of HNSW against exact, with no mask and under a domain mask; then cards are added and
models retired, and routing is checked right after. At the largest size a saved router is served
by ``hubroute serve``: start time and memory, a request adding cards, one retiring models while
a client keeps routing. ``--resume`` keeps what results.json holds and measures the rest;
with ``--only`` it measures the sizes named (or ``service``) again.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from hubroute.data.synth import SynthConfig, synthetic_card, synthetic_queries
from hubroute.encoders import load_encoder
from hubroute.encoders.bulk import encode_to_file
from hubroute.evaluation import tables
from hubroute.hub import Registry
from hubroute.index import ExactIndex
from hubroute.index.hnsw import HNSWIndex
from suite.common import Machine, PeakRSS, command_line, header, write
from suite.servers import start, stop


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else path.stat().st_size


def percentiles(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1000
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def recall(exact: Any, approx: Any, k: int) -> float:
    """Mean share of the exact top-``k`` rows that ``approx`` found (rows per query)."""
    return float(
        np.mean([len(set(a[:k]) & set(b[:k])) / max(1, min(k, len(a))) for a, b in zip(exact, approx, strict=True)])
    )


def _sqlite_save(cards: list, path: Path) -> None:
    """The SQLite alternative (measured here, not shipped): one table; the rows it lacks are inserted."""
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS cards (row INTEGER PRIMARY KEY, model_id TEXT UNIQUE, family TEXT, "
            "domain TEXT, text TEXT, created_at INTEGER, extra TEXT, active INTEGER)"
        )
        start = db.execute("SELECT COUNT(*) FROM cards").fetchone()[0]
        db.executemany(
            "INSERT INTO cards VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
            [
                (start + i, c.model_id, c.family, c.domain, c.text, c.created_at, json.dumps(c.extra))
                for i, c in enumerate(cards[start:])
            ],
        )
    db.close()


def _sqlite_load(path: Path) -> Registry:
    import sqlite3

    from hubroute.hub import ModelCard

    db = sqlite3.connect(path)
    rows = db.execute("SELECT model_id, family, domain, text, created_at, extra FROM cards ORDER BY row").fetchall()
    db.close()
    reg = Registry()
    reg.add_unchecked([ModelCard(a, b, c, d, e, json.loads(f)) for a, b, c, d, e, f in rows])
    return reg


def registry_formats(reg: Registry, more: list, work: Path) -> dict[str, dict[str, float]]:
    """Save, load and append-1,000 times and size of the JSONL, the Parquet and (for comparison)
    a SQLite registry, and the memory a loaded registry holds."""
    import gc

    import pyarrow.parquet  # noqa: F401  (imported before memory is measured)

    from hubroute.registry_store import load_parquet, save_parquet

    n = len(reg)
    formats = {
        "jsonl": (lambda r, p: r.save(p), Registry.load, work / "registry.jsonl"),
        "parquet": (save_parquet, load_parquet, work / "registry-pq"),
        "sqlite (not shipped)": (
            lambda r, p: _sqlite_save(r.cards, p),
            _sqlite_load,
            work / "registry.sqlite",
        ),
    }
    out: dict[str, dict[str, float]] = {}
    for name, (save, load, path) in formats.items():
        t = time.perf_counter()
        save(reg, path)
        save_s = time.perf_counter() - t
        gc.collect()
        rss = psutil.Process().memory_info().rss
        t = time.perf_counter()
        loaded = load(path)
        load_s = time.perf_counter() - t
        gc.collect()
        held = psutil.Process().memory_info().rss - rss
        del loaded
        reg.add(more)
        t = time.perf_counter()
        save(reg, path)  # JSONL rewrites the whole file; Parquet writes a new part; SQLite inserts
        append_s = time.perf_counter() - t
        reg.truncate(n)
        out[name] = {
            "save_s": save_s,
            "load_s": load_s,
            "append_s": append_s,
            "bytes": _size(path),
            "loaded_bytes_per_model": held / n,
        }
    return out


def lexical(cards: list, more: list, queries: list[tuple[str, str, str]], config: dict) -> dict[str, float]:
    """The BM25 router, which scores every card per prompt: fit time, one-prompt routing time,
    and the time to add one card (its index is rebuilt on every add)."""
    from hubroute.routers import BM25Router

    router = BM25Router()
    with PeakRSS() as mem:
        before = mem.peak
        t = time.perf_counter()
        router.commit_models(router.prepare_models(cards))
        fit_s = time.perf_counter() - t
    singles = []
    for q, _, _ in queries[: config.get("singles", 300) // 3]:
        t = time.perf_counter()
        router.route([q], 10)
        singles.append(time.perf_counter() - t)
    t = time.perf_counter()
    router.commit_models(router.prepare_models(more[:1]))
    return {"fit_s": fit_s, "rss_growth_mib": (mem.peak - before) / 2**20, **percentiles(singles),
            "add_1_s": time.perf_counter() - t}  # fmt: skip


def scale_encoder(config: dict) -> Any:
    """The encoder of cards and prompts: the default model at ``precision`` (the service's
    ``onnx-int8`` unless the config says otherwise), uncached."""
    from hubroute.encoders.runtime import prepare_encoder

    encoder = load_encoder("default", use_cache=False)
    if config.get("precision", "onnx-int8") != "fp32":
        prepare_encoder(encoder, config.get("precision", "onnx-int8"))
    return encoder


def vectors_path(config: dict, n: int) -> Path:
    """Where the card vectors of the ``n``-model hub are kept between runs (resumable)."""
    folder = Path(config.get("work_dir", "~/.cache/hubroute/scale")).expanduser()
    return folder / f"cards-{n}-{config.get('precision', 'onnx-int8')}.npy"


def derived_vectors(config: dict, n: int, base_n: int) -> tuple[Path, np.ndarray]:
    """Card vectors of an ``n``-model hub made from the encoded ``base_n``-model hub's: row ``i``
    is base row ``i mod base_n`` plus Gaussian noise of norm ``derive_noise`` (0.35: cosine about
    0.94 to its base row), renormalised; written float16 beside the encoded files. Returns the
    path and the domain of every row (its base card's)."""
    base = np.load(vectors_path(config, base_n), mmap_mode="r")
    folder = vectors_path(config, n).parent
    path = folder / f"cards-{n}-derived-from-{base_n}-{config.get('precision', 'onnx-int8')}.npy"
    done = path.with_name(path.name + ".done")
    if not done.is_file():
        out = np.lib.format.open_memmap(path, mode="w+", dtype="float16", shape=(n, base.shape[1]))
        noise = float(config.get("derive_noise", 0.35)) / np.sqrt(base.shape[1])
        for start in range(0, n, 65536):
            rows = np.arange(start, min(n, start + 65536))
            v = base[rows % base_n].astype(np.float32)
            v += np.random.default_rng(start).normal(0.0, noise, v.shape).astype(np.float32)
            out[rows] = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16)
        out.flush()
        del out
        done.write_text(str(n))
    base_cfg = SynthConfig(models=base_n, seed=0)
    base_domains = np.array([synthetic_card(base_cfg, i).domain for i in range(base_n)], dtype=object)
    return path, base_domains[np.arange(n) % base_n]


def one_size(
    n: int, config: dict, work: Path, encoder: Any, queries: list[tuple[str, str, str]], qv: np.ndarray, encode_s: float
) -> dict[str, Any]:
    """Every measurement at one hub size."""
    cfg = SynthConfig(models=n, seed=0)
    cards = [synthetic_card(cfg, i) for i in range(n)]
    domains = np.array([c.domain for c in cards], dtype=object)
    base_n = int(config.get("encode_up_to", 0))
    if base_n and n > base_n:
        t = time.perf_counter()
        vec_path, domains = derived_vectors(config, n, base_n)
        result: dict[str, Any] = {"models": n, "derived_from": base_n, "derive_s": time.perf_counter() - t}
        vectors = np.load(vec_path, mmap_mode="r")
    else:
        vec_path = vectors_path(config, n)
        done = vec_path.with_name(vec_path.name + ".done")
        cached = int(done.read_text()) if done.is_file() and vec_path.is_file() else 0
        t = time.perf_counter()
        vectors = encode_to_file(
            lambda a, b: [synthetic_card(cfg, i).text for i in range(a, b)],
            n,
            encoder,
            vec_path,
            description=f"cards of {n}",
        )
        result = {"models": n, "encode_cards_s": time.perf_counter() - t, "encode_cached_rows": cached}
    result["vectors_path"] = str(vec_path)
    reg = Registry()
    reg.add_unchecked(cards)
    more = [synthetic_card(SynthConfig(models=n + 1000, seed=0), i) for i in range(n, n + 1000)]
    more = [c for c in more if c.model_id not in reg][:1000]
    result["registry"] = registry_formats(reg, more, work)
    reg.truncate(n)
    query_domains = [d for _, _, d in queries]
    vecs = np.asarray(vectors, dtype=np.float32)
    vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
    if config.get("bm25", True):
        result["bm25"] = lexical(cards, more, queries, config)
    if n == int(config.get("compare_libraries_at", 0)):
        result["libraries"] = compare_libraries(vecs, qv, config, work)
        print("libraries", json.dumps(result["libraries"]), flush=True)
    if n in [int(x) for x in config.get("sweep_at", [config.get("compare_libraries_at", 0)])]:
        result["sweep"] = settings_sweep(vecs, qv, config)
        print("sweep", json.dumps(result["sweep"]), flush=True)
    indexes = {"exact": ExactIndex(), "hnsw": HNSWIndex(**config.get("hnsw", {}))}
    found: dict[str, dict[str, Any]] = {}
    for name, index in indexes.items():
        with PeakRSS() as mem:
            t = time.perf_counter()
            index.build(vecs)
            build_s = time.perf_counter() - t
        index_dir = work / f"index-{name}"
        index_dir.mkdir(exist_ok=True)
        index.save(index_dir)
        singles = []
        for q in qv[: config.get("singles", 300)]:
            t = time.perf_counter()
            index.search(q[None], 10)
            singles.append(time.perf_counter() - t)
        t = time.perf_counter()
        for i in range(0, len(qv), 64):
            index.search(qv[i : i + 64], 10)
        batch_s = time.perf_counter() - t
        rows, _ = index.search(qv, 10)
        masked = [index.search(qv[j : j + 1], 10, domains == query_domains[j])[0][0] for j in range(len(qv))]
        found[name] = {"rows": rows, "masked": masked}
        lat = percentiles(singles)
        result[name] = {
            "build_s": build_s,
            "index_bytes": _size(index_dir),
            "peak_rss_mib": mem.peak / 2**20,
            "search_p50_ms": lat["p50_ms"],
            "search_p99_ms": lat["p99_ms"],
            "with_encoder_p50_ms": lat["p50_ms"] + 1000 * encode_s,
            "batch64_prompts_per_s": len(qv) / batch_s,
        }
    result["recall"] = {
        "at1": recall(found["exact"]["rows"], found["hnsw"]["rows"], 1),
        "at10": recall(found["exact"]["rows"], found["hnsw"]["rows"], 10),
        "at1_domain_mask": recall(found["exact"]["masked"], found["hnsw"]["masked"], 1),
        "at10_domain_mask": recall(found["exact"]["masked"], found["hnsw"]["masked"], 10),
    }
    # add 1,000 models and retire 10,000; routing right after must see both
    add_vecs = encoder.encode([c.text for c in more])
    retire = np.random.default_rng(0).choice(n, min(10_000, n // 2), replace=False)
    for name, index in indexes.items():
        t = time.perf_counter()
        index.add(np.arange(n, n + len(more)), add_vecs)
        add_s = time.perf_counter() - t
        t = time.perf_counter()
        index.set_active(retire, False)
        retire_s = time.perf_counter() - t
        rows, _ = index.search(add_vecs[:50], 1)
        after, _ = index.search(qv, 10)
        result[name] |= {
            "add_1000_s": add_s,
            "retire_10000_s": retire_s,
            "added_found_top1": float(np.mean(rows[:, 0] == np.arange(n, n + 50))),
            "retired_returned": int(np.isin(after, retire).sum()),
        }
    return result


def _usearch(dtype: str, m: int, ef_add: int, ef: int):
    from usearch.index import Index

    def build(v: np.ndarray):
        index = Index(
            ndim=v.shape[1], metric="ip", dtype=dtype, connectivity=m, expansion_add=ef_add, expansion_search=ef
        )
        index.add(np.arange(len(v), dtype=np.uint64), v)
        return index

    def search(index, q: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(index.search(q, k, threads=1).keys, dtype=np.int64).reshape(len(q), -1)

    def save(index, path: Path) -> None:
        index.save(str(path))

    return build, search, save


def _faiss(m: int, ef_add: int, ef: int):
    import faiss

    def build(v: np.ndarray):
        index = faiss.IndexHNSWFlat(v.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction, index.hnsw.efSearch = ef_add, ef
        index.add(v)
        return index

    def search(index, q: np.ndarray, k: int) -> np.ndarray:
        return index.search(q, k)[1].astype(np.int64)

    def save(index, path: Path) -> None:
        faiss.write_index(index, str(path))

    return build, search, save


def _hnswlib(m: int, ef_add: int, ef: int):
    import hnswlib

    def build(v: np.ndarray):
        index = hnswlib.Index(space="ip", dim=v.shape[1])
        index.init_index(max_elements=len(v), M=m, ef_construction=ef_add)
        index.add_items(v, np.arange(len(v)))
        index.set_ef(ef)
        return index

    def search(index, q: np.ndarray, k: int) -> np.ndarray:
        return index.knn_query(q, k=k, num_threads=1)[0].astype(np.int64)

    def save(index, path: Path) -> None:
        index.save_index(str(path))

    return build, search, save


LIBRARIES = {
    "usearch f32": ("usearch", lambda m, a, e: _usearch("f32", m, a, e)),
    "usearch i8": ("usearch", lambda m, a, e: _usearch("i8", m, a, e)),
    "faiss IndexHNSWFlat": ("faiss", _faiss),
    "hnswlib": ("hnswlib", _hnswlib),
}


def compare_libraries(vecs: np.ndarray, qv: np.ndarray, config: dict, work: Path) -> dict[str, Any]:
    """The HNSW libraries side by side on the same vectors and parameters: build time, file size,
    peak memory, one-query search time (one thread) and recall@10 against exact top-10.
    A library that is not installed is recorded as such (``pip install -e ".[bench]"``)."""
    import importlib.util

    defaults = HNSWIndex()
    opts = config.get("hnsw", {})
    m = opts.get("connectivity", defaults.connectivity)
    ef_add, ef = (
        opts.get("expansion_add", defaults.expansion_add),
        opts.get("expansion_search", defaults.expansion_search),
    )
    truth = ExactIndex()
    truth.build(vecs)
    exact_rows, _ = truth.search(qv, 10)
    out: dict[str, Any] = {"rows": len(vecs), "M": m, "ef_construction": ef_add, "ef_search": ef, "libraries": {}}
    for name, (module, make) in LIBRARIES.items():
        if importlib.util.find_spec(module) is None:
            out["libraries"][name] = {"installed": False}
            continue
        build, search, save = make(m, ef_add, ef)
        with PeakRSS() as mem:
            before = mem.peak
            t = time.perf_counter()
            index = build(vecs)
            build_s = time.perf_counter() - t
        path = work / f"lib-{name.replace(' ', '-')}.bin"
        save(index, path)
        singles = []
        for q in qv[: config.get("singles", 300)]:
            t = time.perf_counter()
            search(index, q[None], 10)
            singles.append(time.perf_counter() - t)
        found = search(index, qv, 10)
        out["libraries"][name] = {
            "installed": True,
            "build_s": build_s,
            "file_mib": _size(path) / 2**20,
            "build_rss_growth_mib": (mem.peak - before) / 2**20,
            "recall_at10": recall(exact_rows, found, 10),
            **percentiles(singles),
        }
        path.unlink()
        del index
    return out


def settings_sweep(vecs: np.ndarray, qv: np.ndarray, config: dict) -> list[dict[str, Any]]:
    """hubroute's HNSW index (pre-filter off) at each ``connectivity`` and ``expansion_search``
    of ``[sweep]``: build time, recall@1 and recall@10 against exact, one-query p50 / p99."""
    sweep = config.get("sweep", {})
    truth = ExactIndex()
    truth.build(vecs)
    exact, _ = truth.search(qv, 10)
    out = []
    for m in sweep.get("connectivity", [16, 32]):
        index = HNSWIndex(**(config.get("hnsw", {}) | {"connectivity": m, "prefilter_rows": 0, "prefilter_share": 0.0}))
        t = time.perf_counter()
        index.build(vecs)
        build_s = time.perf_counter() - t
        for ef in sweep.get("expansion_search", [256, 512, 1024]):
            index.graph.expansion_search = ef
            rows, _ = index.search(qv, 10)
            singles = []
            for q in qv[: config.get("singles", 300)]:
                t = time.perf_counter()
                index.search(q[None], 10)
                singles.append(time.perf_counter() - t)
            out.append(
                {"connectivity": m, "expansion_search": ef, "build_s": build_s, "recall_at1": recall(exact, rows, 1),
                 "recall_at10": recall(exact, rows, 10), **percentiles(singles)}
            )  # fmt: skip
    return out


def serve_at_scale(n: int, config: dict, work: Path, vectors_path: Path) -> dict[str, Any]:
    """Start ``hubroute serve`` on a saved dense router of ``n`` models (HNSW index, Parquet
    registry), then add 1,000 cards and retire 10,000 models while a client routes."""
    import httpx

    from hubroute.routers import DenseCardRouter
    from hubroute.routers.base import PreparedModels

    cfg = SynthConfig(models=n, seed=0)
    cards = [synthetic_card(cfg, i) for i in range(n)]
    vecs = np.load(vectors_path).astype(np.float32)
    router = DenseCardRouter(index="hnsw", index_options=config.get("hnsw", {}))
    router.commit_models(PreparedModels(cards, vecs, 0))
    router.model_index()
    router.save(work / "router")
    del router, vecs
    t = time.perf_counter()
    proc, url = start(work / "state", work / "router", "--inference", "onnx-int8", timeout_s=900)
    start_s = time.perf_counter() - t
    out: dict[str, Any] = {"models": n, "start_s": start_s}
    try:
        out["rss_mib"] = psutil.Process(proc.pid).memory_info().rss / 2**20
        queries = [q for q, _, _ in synthetic_queries(cfg, 200, seed=1)]
        with httpx.Client(base_url=url, timeout=120) as c:
            lat = []
            for q in queries[:100]:
                t = time.perf_counter()
                c.post("/v1/route", json={"prompts": q, "k": 10}).raise_for_status()
                lat.append(time.perf_counter() - t)
            out["route_idle"] = percentiles(lat)
            new = [synthetic_card(SynthConfig(models=n + 1000, seed=0), i) for i in range(n, n + 1000)]
            body = [{"model_id": x.model_id + "-new", "domain": x.domain, "text": x.text} for x in new]
            during: list[float] = []
            stop_flag = threading.Event()

            def client() -> None:
                with httpx.Client(base_url=url, timeout=120) as cc:
                    j = 0
                    while not stop_flag.is_set():
                        t0 = time.perf_counter()
                        cc.post("/v1/route", json={"prompts": queries[j % len(queries)], "k": 10}).raise_for_status()
                        during.append(time.perf_counter() - t0)
                        j += 1

            th = threading.Thread(target=client)
            th.start()
            ids = [cards[i].model_id for i in np.random.default_rng(0).choice(n, min(10_000, n // 2), replace=False)]
            try:
                t = time.perf_counter()
                c.post("/v1/models", json=body).raise_for_status()
                out["add_1000_s"] = time.perf_counter() - t
                t = time.perf_counter()
                c.post("/v1/models/status", json={"model_ids": ids, "status": "retired"}).raise_for_status()
                out["retire_10000_s"] = time.perf_counter() - t
            finally:
                stop_flag.set()
                th.join()
            out["route_during_changes"] = percentiles(during) | {"max_ms": 1000 * max(during), "requests": len(during)}
            top = c.post("/v1/route", json={"prompts": [x.text for x in new[:20]], "k": 1}).json()["results"]
            out["new_cards_found_top1"] = float(
                np.mean([r["models"][0]["model_id"] == x.model_id + "-new" for r, x in zip(top, new, strict=False)])
            )
            hits = c.post("/v1/route", json={"prompts": queries[:50], "k": 50}).json()["results"]
            out["retired_returned"] = sum(m["model_id"] in set(ids) for r in hits for m in r["models"])
    finally:
        stop(proc)
    # a restart serves the state folder's current version: no import, the changes kept
    t = time.perf_counter()
    proc, url = start(work / "state", None, "--inference", "onnx-int8", timeout_s=900)
    out["restart_s"] = time.perf_counter() - t
    try:
        out["restart_rss_mib"] = psutil.Process(proc.pid).memory_info().rss / 2**20
        with httpx.Client(base_url=url, timeout=120) as c:
            hits = c.post("/v1/route", json={"prompts": queries[:50], "k": 50}).json()["results"]
            out["restart_retired_returned"] = sum(m["model_id"] in set(ids) for r in hits for m in r["models"])
            top = c.post("/v1/route", json={"prompts": [x.text for x in new[:20]], "k": 1}).json()["results"]
            out["restart_new_cards_found_top1"] = float(
                np.mean([r["models"][0]["model_id"] == x.model_id + "-new" for r, x in zip(top, new, strict=False)])
            )
    finally:
        stop(proc)
    return out


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment (see the module docstring)."""
    sizes = [int(s) for s in config["sizes"]]
    if args.max_examples:
        sizes = sorted({min(s, args.max_examples * 100) for s in sizes})
        config = config | {"compare_libraries_at": max(sizes), "sweep_at": [max(sizes)]}
    work = Path(tempfile.mkdtemp(prefix="hubroute-scale-"))
    machine = Machine()
    encoder = scale_encoder(config)
    cfg_q = SynthConfig(models=max(sizes), seed=0)
    queries = synthetic_queries(cfg_q, int(config.get("queries", 512)), seed=1)
    t = time.perf_counter()
    for q, _, _ in queries[:64]:
        encoder.encode([q])
    encode_s = (time.perf_counter() - t) / 64
    qv = encoder.encode([q for q, _, _ in queries])
    sample = [synthetic_card(cfg_q, i).text for i in range(1024)]
    t = time.perf_counter()
    encoder.encode(sample)
    cards_per_s = len(sample) / (time.perf_counter() - t)
    payload: dict[str, Any] = {
        "command": command_line(),
        "config": config,
        "encoder_single_ms": 1000 * encode_s,
        "encoder_cards_per_s": cards_per_s,
        "sizes": {},
    }
    # --resume keeps the parts already measured; --only SIZE... or service measures those again
    resumed = args.resume and (out / "results.json").is_file()
    only = set(args.only or [])
    if resumed:
        payload = json.loads((out / "results.json").read_text(encoding="utf-8"))
        if command_line() not in payload.setdefault("resumed_by", []):
            payload["resumed_by"].append(command_line())
    try:
        for n in sizes:
            if resumed and str(n) in payload["sizes"] and str(n) not in only:
                continue
            sub = work / str(n)
            sub.mkdir()
            payload["sizes"][str(n)] = one_size(n, config, sub, encoder, queries, qv, encode_s)
            print(
                n,
                json.dumps({k: v for k, v in payload["sizes"][str(n)].items() if k in ("exact", "hnsw", "recall")}),
                flush=True,
            )
            if resumed:
                payload["sizes"][str(n)]["machine"] = machine.record()
            else:
                payload["machine"] = machine.record()
            write(out, payload, markdown(config, payload))
            shutil.rmtree(sub, ignore_errors=True)
        if config.get("serve", True) and (not resumed or "service" not in payload or "service" in only):
            n = max(sizes)
            vec = Path(payload["sizes"][str(n)]["vectors_path"])
            payload["service"] = serve_at_scale(n, config, work / "serve", vec)
            if resumed:
                payload["service"]["machine"] = machine.record() | {"command": command_line()}
            print("service", payload["service"], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if not resumed:
        payload["machine"] = machine.record()
    write(out, payload, markdown(config, payload))


INDEX_COLUMNS = {
    "build s": lambda x: x["build_s"],
    "index MiB": lambda x: x["index_bytes"] / 2**20,
    "peak RSS MiB": lambda x: x["peak_rss_mib"],
    "top-10 p50 ms": lambda x: x["search_p50_ms"],
    "top-10 p99 ms": lambda x: x["search_p99_ms"],
    "with encoder p50 ms": lambda x: x["with_encoder_p50_ms"],
    "64-batches prompts/s": lambda x: f"{x['batch64_prompts_per_s']:.0f}",
    "add 1,000 ms": lambda x: 1000 * x["add_1000_s"],
    "retire 10,000 ms": lambda x: 1000 * x["retire_10000_s"],
    "retired returned": lambda x: x["retired_returned"],
    "added found (top-1)": lambda x: x["added_found_top1"],
}
RECALL_COLUMNS = {
    "recall@1": "at1",
    "recall@10": "at10",
    "recall@1, domain mask": "at1_domain_mask",
    "recall@10, domain mask": "at10_domain_mask",
}


def service_line(svc: dict) -> str:
    """One paragraph on ``hubroute serve`` at the largest size."""
    during = svc["route_during_changes"]
    return (
        f"`hubroute serve` on {svc['models']:,} models (dense router, HNSW index and Parquet registry "
        f"saved with it, onnx-int8): the first start (importing the router into the state folder) was "
        f"ready in {svc['start_s']:.1f} s, RSS {svc['rss_mib']:.0f} MiB; "
        f"one prompt idle p50 {svc['route_idle']['p50_ms']:.1f} ms / p99 {svc['route_idle']['p99_ms']:.1f} ms. "
        f"Adding 1,000 cards in one request took {svc['add_1000_s']:.1f} s and retiring 10,000 models "
        f"{svc['retire_10000_s']:.2f} s, while a client routed {during['requests']} requests "
        f"(p50 {during['p50_ms']:.1f} ms, p99 {during['p99_ms']:.1f} ms, max {during['max_ms']:.0f} ms); "
        f"new cards came first for {100 * svc['new_cards_found_top1']:.0f} % of their own texts; "
        f"{svc['retired_returned']} retired model(s) were returned afterwards. A restart on the same state "
        f"folder was ready in {svc['restart_s']:.1f} s (RSS {svc['restart_rss_mib']:.0f} MiB), returned "
        f"{svc['restart_retired_returned']} retired model(s) and put the new cards first for "
        f"{100 * svc['restart_new_cards_found_top1']:.0f} % of their texts."
    ) + (
        f" (Measured again by `{svc['machine']['command']}`; other processes used "
        f"{100 * svc['machine']['other_processes_cpu_share']:.0f} % of the CPU meanwhile.)"
        if "machine" in svc
        else ""
    )


def markdown(config: dict, payload: dict) -> str:
    """``results.md``: one table per measurement, sizes side by side."""
    sizes = payload["sizes"]
    lines = header(config["title"], payload)
    lines += [
        f"Synthetic hubs (`hubroute data synth`), all-MiniLM-L6-v2 vectors (384-d) of cards and prompts, "
        f"{config.get('queries', 512)} synthetic prompts; encoding one prompt takes "
        f"{payload['encoder_single_ms']:.1f} ms and the encoder takes "
        f"{payload.get('encoder_cards_per_s', 0):.0f} cards per second "
        f"({config.get('precision', 'onnx-int8')}). HNSW options: "
        f"`{json.dumps(config.get('hnsw', {}))}` (usearch, i8 graph, float16 rescoring).",
        "",
        tables.markdown(
            ["models", "index", *INDEX_COLUMNS],
            [
                [f"{int(n):,}", name, *(f(r[name]) for f in INDEX_COLUMNS.values())]
                for n, r in sizes.items()
                for name in ("exact", "hnsw")
            ],
        ),
        "",
        tables.markdown(
            ["models", *RECALL_COLUMNS],
            [[f"{int(n):,}", *(r["recall"][k] for k in RECALL_COLUMNS.values())] for n, r in sizes.items()],
            digits=3,
        ),
        "",
        tables.markdown(
            [
                "models",
                "registry format",
                "save s",
                "load s",
                "append 1,000 s",
                "MiB on disk",
                "loaded: bytes per model",
            ],
            [
                [
                    f"{int(n):,}",
                    f,
                    x["save_s"],
                    x["load_s"],
                    x["append_s"],
                    x["bytes"] / 2**20,
                    f"{x['loaded_bytes_per_model']:.0f}",
                ]
                for n, r in sizes.items()
                for f, x in r["registry"].items()
            ],
            digits=2,
        ),
        "",
        tables.markdown(
            ["models", "card vectors", "s", "rows encoded by an earlier run"],
            [
                [f"{int(n):,}", "encoded", r["encode_cards_s"], r.get("encode_cached_rows", 0)]
                if "derived_from" not in r
                else [f"{int(n):,}", f"derived from the {r['derived_from']:,}-model hub's", r["derive_s"], ""]
                for n, r in sizes.items()
            ],
        ),
    ]
    if any("derived_from" in r for r in sizes.values()):
        lines += [
            "",
            "Derived vectors: row *i* is the encoded row *i* mod *m* of the largest encoded hub plus "
            f"Gaussian noise of norm {config.get('derive_noise', 0.35)}, renormalised, with that row's domain "
            "(so each encoded card has near-copies, which makes top-10 recall harder, not easier). Encoding "
            "every card of such a hub at the rate above takes hours on two cores.",
        ]
    if any("bm25" in r for r in sizes.values()):
        lines += [
            "",
            "The BM25 router (and so the hybrid router) scores every card for each prompt and rebuilds "
            "its index when cards are added:",
            "",
            tables.markdown(
                ["models", "fit s", "memory growth MiB", "route one prompt p50 ms", "p99 ms", "add 1 card s"],
                [
                    [f"{int(n):,}", x["fit_s"], x["rss_growth_mib"], x["p50_ms"], x["p99_ms"], x["add_1_s"]]
                    for n, r in sizes.items()
                    if (x := r.get("bm25"))
                ],
            ),
        ]
    for n, r in sizes.items():
        if "libraries" in r:
            lib = r["libraries"]
            lines += [
                "",
                f"HNSW libraries on the same {int(n):,} vectors (M={lib['M']}, ef_construction="
                f"{lib['ef_construction']}, ef_search={lib['ef_search']}; one query on one thread):",
                "",
                tables.markdown(
                    ["library", "build s", "file MiB", "memory growth while building MiB", "top-10 p50 ms",
                     "top-10 p99 ms", "recall@10"],
                    [
                        [name, x["build_s"], x["file_mib"], x["build_rss_growth_mib"], x["p50_ms"], x["p99_ms"],
                         f"{x['recall_at10']:.3f}"] if x["installed"] else [name, "not installed", "", "", "", "", ""]
                        for name, x in lib["libraries"].items()
                    ],
                ),
            ]  # fmt: skip
        if "sweep" in r:
            lines += [
                "",
                f"hubroute's HNSW index ({config.get('hnsw', {}).get('dtype', HNSWIndex().dtype)} graph, float16 "
                f"rescoring, pre-filter off) "
                f"on the same {int(n):,} vectors by connectivity (M) and expansion_search (ef); the library "
                f"defaults are M={HNSWIndex().connectivity}, ef={HNSWIndex().expansion_search}:",
                "",
                tables.markdown(
                    ["M", "ef", "build s", "recall@1", "recall@10", "top-10 p50 ms", "top-10 p99 ms"],
                    [
                        [x["connectivity"], x["expansion_search"], x["build_s"], f"{x['recall_at1']:.3f}",
                         f"{x['recall_at10']:.3f}", x["p50_ms"], x["p99_ms"]]
                        for x in r["sweep"]
                    ],
                ),
            ]  # fmt: skip
    if payload.get("service"):
        lines += ["", service_line(payload["service"])]
    return "\n".join(lines)
