"""Where the CLI reads streams from: a CMRBench-layout folder (CMRBench itself, a synthetic hub)."""

from __future__ import annotations

from pathlib import Path

from hubroute.hub import Stream


def load_stream(data: Path | None, protocol: str = "public", max_examples: int | None = None) -> Stream:
    """The stream in ``data`` (default: the CMRBench default folder)."""
    from hubroute.data.cmrbench import load_cmrbench

    return load_cmrbench(data, protocol, max_examples=max_examples)
