"""Download the public CMRBench release into a local folder, with resume and size checks.

Files are fetched from ``base_url`` (default: the authors' repository, see
:data:`DEFAULT_BASE_URL`) into ``<dest>/<relative path>``. A partial download is kept as
``<file>.part`` and resumed with an HTTP range request. A file is accepted only when its size
matches the server's ``Content-Length``; ``manifest.json`` records size and SHA-256 of each.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hubroute.data.cmrbench import EXPERIENCES, INDEX_FILES, expected_files
from hubroute.errors import FetchError

DEFAULT_BASE_URL = "https://raw.githubusercontent.com/collagelab/CMR/main/data/"
URL_ENV_VAR = "HUBROUTE_CMRBENCH_URL"
CHUNK = 1 << 16


def release_files(protocol: str = "public") -> list[str]:
    """Relative paths of the release that a protocol needs, plus the domain list and indices."""
    files = expected_files(protocol, EXPERIENCES)
    files.append("processed/hugging-bench-domains.json")
    files += [f"model_indices/{f}" for f in INDEX_FILES]
    return files


def _remote_size(url: str, timeout: float) -> int | None:
    req = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        length = resp.headers.get("Content-Length")
    return int(length) if length is not None else None


def fetch_file(
    url: str, dest: Path, *, timeout: float = 30.0, progress: Callable[[int, int | None], None] | None = None
) -> int:
    """Download ``url`` to ``dest`` (resuming ``dest.part``); returns the size in bytes.

    Raises :class:`FetchError` when the server cannot be reached, answers an error status, or
    the received size differs from the announced one. An existing complete ``dest`` of the
    right size is kept as is.
    """
    try:
        size = _remote_size(url, timeout)
        if dest.is_file() and size is not None and dest.stat().st_size == size:
            return size
        part = dest.with_name(dest.name + ".part")
        have = part.stat().st_size if part.is_file() else 0
        if size is not None and have > size:
            part.unlink()
            have = 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        req = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            if have and resp.status != 206:  # server ignored the range: start over
                have = 0
            dest.parent.mkdir(parents=True, exist_ok=True)
            with part.open("ab" if have else "wb") as f:
                got = have
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    got += len(chunk)
                    if progress:
                        progress(got, size)
    except urllib.error.HTTPError as e:
        raise FetchError(f"{url}: server answered HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise FetchError(
            f"cannot reach {url} ({reason}); this machine may be offline: copy the release "
            f"folder by hand and pass --data, or set ${URL_ENV_VAR} to a mirror"
        ) from None
    if size is not None and got != size:
        raise FetchError(f"{url}: received {got} bytes, expected {size}; run the fetch again to resume")
    os.replace(part, dest)
    return got


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch_cmrbench(
    dest: str | Path,
    *,
    base_url: str | None = None,
    protocol: str = "public",
    timeout: float = 30.0,
    progress: Callable[[str, int, int | None], None] | None = None,
) -> Path:
    """Download every file a protocol needs into ``dest``; returns ``dest``.

    ``base_url`` defaults to ``$HUBROUTE_CMRBENCH_URL`` or :data:`DEFAULT_BASE_URL`.
    Writes ``dest/manifest.json`` with each file's size and SHA-256.
    """
    dest = Path(dest).expanduser()
    base = base_url or os.environ.get(URL_ENV_VAR) or DEFAULT_BASE_URL
    if not base.endswith("/"):
        base += "/"
    manifest: dict[str, dict[str, object]] = {}
    for rel in release_files(protocol):
        target = dest / rel
        cb = (lambda got, total, rel=rel: progress(rel, got, total)) if progress else None
        size = fetch_file(base + rel, target, timeout=timeout, progress=cb)
        manifest[rel] = {"bytes": size, "sha256": _sha256(target)}
    (dest / "manifest.json").write_text(json.dumps({"base_url": base, "files": manifest}, indent=2) + "\n")
    return dest
