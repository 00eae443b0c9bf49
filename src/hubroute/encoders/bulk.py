"""Encoding a whole hub: a streamed, resumable pass that writes the vectors to a memory-mapped
``.npy`` file (float16 or float32), chunk by chunk, with its progress reported.

A file ``<path>.done`` records how many rows are written; a pass that stops (killed, interrupted)
resumes there. The result opens memory-mapped (``numpy.load(path, mmap_mode="r")``), so a table
of 10^6 vectors need not be read into memory to be searched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hubroute import progress
from hubroute.encoders.base import Encoder
from hubroute.errors import DataError

CHUNK = 4096


def encode_to_file(
    texts: Callable[[int, int], Sequence[str]],
    n: int,
    encoder: Encoder,
    path: str | Path,
    *,
    dtype: str = "float16",
    chunk: int = CHUNK,
    description: str = "encode",
) -> np.ndarray:
    """Encode rows ``0..n-1`` (``texts(start, stop)`` gives their texts) into ``path``; returns the
    memory-mapped ``(n, dim)`` array. Rows already written by an earlier pass are kept."""
    path = Path(path)
    done_path = path.with_name(path.name + ".done")
    done = int(done_path.read_text()) if done_path.is_file() and path.is_file() else 0
    if done:
        out = np.load(path, mmap_mode="r+")
        if out.shape != (n, encoder.dim) or out.dtype != np.dtype(dtype):
            raise DataError(
                f"holds {out.shape} {out.dtype}, not ({n}, {encoder.dim}) {dtype}: delete it to start over", path
            )
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        out = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, encoder.dim))
    with progress.task(f"{description}: {n} texts", n) as advance:
        advance(done)
        for start in range(done, n, chunk):
            stop = min(n, start + chunk)
            out[start:stop] = encoder.encode(list(texts(start, stop))).astype(dtype)
            out.flush()
            done_path.write_text(str(stop))
            advance(stop - start)
    return np.load(path, mmap_mode="r")
