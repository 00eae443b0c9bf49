"""The registry on disk for large hubs: a folder of Parquet parts that only grows.

    registry/
      manifest.json      format, row count, the parts in order
      part-000001.parquet, ...   the cards, one part per save that added rows
      status.npy         one byte per row: 1 active, 0 retired (rewritten on every save: 1 MB at 10^6)

A save writes only the rows added since the folder's last save, as a new part (rows never
change once registered), then the status and the manifest, each atomically. Loading reads every
part with pyarrow. ``extra`` is stored as JSON text. The JSONL registry
(:meth:`hubroute.hub.Registry.save`) stays readable and is what small routers save.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from hubroute.errors import DataError
from hubroute.extras import require
from hubroute.hub import ModelCard, Registry

FORMAT = "hubroute.registry.parquet"
MANIFEST = "manifest.json"
STATUS = "status.npy"
COLUMNS = ("model_id", "family", "domain", "text", "created_at", "extra")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_parquet(registry: Registry, directory: str | Path) -> Path:
    """Write ``registry`` to a Parquet registry folder, appending only the rows it lacks."""
    pa = require("pyarrow", "hub")
    pq = require("pyarrow.parquet", "hub")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = _manifest(directory) if (directory / MANIFEST).is_file() else {"format": FORMAT, "rows": 0, "parts": []}
    start = int(manifest["rows"])
    if start > len(registry):
        raise DataError(f"the folder holds {start} rows, more than the registry's {len(registry)}", directory)
    cards = registry.cards
    if start and cards[start - 1].model_id != manifest.get("last_id"):
        raise DataError("the folder holds another registry (its rows differ); save to an empty folder", directory)
    if start < len(registry):
        new = cards[start:]
        table = pa.table(
            {
                "model_id": [c.model_id for c in new],
                "family": [c.family for c in new],
                "domain": [c.domain for c in new],
                "text": [c.text for c in new],
                "created_at": pa.array([c.created_at for c in new], type=pa.int64()),
                "extra": [json.dumps(c.extra, ensure_ascii=False) for c in new],
            }
        )
        name = f"part-{len(manifest['parts']) + 1:06d}.parquet"
        tmp = directory / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, directory / name)
        manifest["parts"].append({"file": name, "rows": len(new)})
        manifest["rows"] = len(registry)
        manifest["last_id"] = cards[-1].model_id
    status = np.asarray(registry.active_mask, dtype=np.uint8)
    buf = _npy_bytes(status)
    _write_atomic(directory / STATUS, buf)
    _write_atomic(directory / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode())
    return directory


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    f = io.BytesIO()
    np.save(f, array)
    return f.getvalue()


def _manifest(directory: Path) -> dict:
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"unreadable manifest ({e})", directory / MANIFEST) from None
    if manifest.get("format") != FORMAT:
        raise DataError("not a hubroute Parquet registry", directory / MANIFEST)
    return manifest


def load_parquet(directory: str | Path) -> Registry:
    """Read a Parquet registry folder."""
    pq = require("pyarrow.parquet", "hub")
    directory = Path(directory)
    manifest = _manifest(directory)
    cards: list[ModelCard] = []
    for part in manifest["parts"]:
        path = directory / part["file"]
        try:
            table = pq.read_table(path, columns=list(COLUMNS))
        except Exception as e:
            raise DataError(f"unreadable part ({type(e).__name__}: {e})", path) from None
        cols = {c: table.column(c).to_pylist() for c in COLUMNS}
        for i in range(table.num_rows):
            try:
                extra = json.loads(cols["extra"][i]) if cols["extra"][i] else {}
            except ValueError:
                raise DataError(f"row {i + 1}: extra is not JSON", path) from None
            cards.append(
                ModelCard(
                    cols["model_id"][i],
                    cols["family"][i],
                    cols["domain"][i],
                    cols["text"][i],
                    cols["created_at"][i],
                    extra,
                )
            )
    if len(cards) != manifest["rows"]:
        raise DataError(f"the parts hold {len(cards)} rows; the manifest says {manifest['rows']}", directory)
    status = np.load(directory / STATUS)
    if len(status) != len(cards):
        raise DataError(f"status has {len(status)} rows for {len(cards)} cards", directory / STATUS)
    reg = Registry()
    reg.add_unchecked(cards)
    retired = np.flatnonzero(status == 0)
    if len(retired):
        reg.set_active_rows(retired, False)
    return reg
