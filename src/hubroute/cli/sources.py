"""Where the CLI reads streams from: a hub folder (``hubroute hub``) or a CMRBench-layout folder
(CMRBench itself, a synthetic hub)."""

from __future__ import annotations

from pathlib import Path

from hubroute.hub import Stream


def load_stream(data: Path | None, protocol: str = "public", max_examples: int | None = None) -> Stream:
    """The stream in ``data``: a hub folder's closed experiences, or CMRBench (the default folder
    when ``data`` is None)."""
    from hubroute.hubs.folder import HubFolder, is_hub

    if data is not None and is_hub(data):
        return HubFolder(data).stream(max_examples)
    from hubroute.data.cmrbench import load_cmrbench

    return load_cmrbench(data, protocol, max_examples=max_examples)
