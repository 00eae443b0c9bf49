from __future__ import annotations

import json
import socket
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from hubroute.data.cmrbench import load_cmrbench
from hubroute.data.fetch import fetch_cmrbench, fetch_file, release_files
from hubroute.errors import FetchError


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with HEAD and single ``bytes=N-`` range support; can cut a body short."""

    truncate: ClassVar[dict[str, int]] = {}
    ranges_seen: ClassVar[list[str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404, "not found")
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        start = 0
        if rng:
            self.ranges_seen.append(self.path)
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.truncate.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])


@pytest.fixture()
def server(cmrbench_dir):
    handler = partial(RangeHandler, directory=str(cmrbench_dir))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    RangeHandler.truncate.clear()
    RangeHandler.ranges_seen.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_fetch_release_over_http(server, tmp_path, cmrbench_dir):
    dest = fetch_cmrbench(tmp_path / "cmr", base_url=server)
    for rel in release_files():
        assert (dest / rel).read_bytes() == (cmrbench_dir / rel).read_bytes()
    manifest = json.loads((dest / "manifest.json").read_text())
    assert set(manifest["files"]) == set(release_files())
    assert [len(e.eval) for e in load_cmrbench(dest)] == [867, 809, 984, 1033]


def test_interrupted_download_resumes(server, tmp_path, cmrbench_dir):
    rel = "processed/cleaned-mllm-eval.json"
    RangeHandler.truncate["/" + rel] = 1000
    target = tmp_path / rel
    with pytest.raises(FetchError, match="received 1000 bytes"):
        fetch_file(server + rel, target, timeout=5)
    part = target.with_name(target.name + ".part")
    assert part.stat().st_size == 1000 and not target.exists()
    fetch_file(server + rel, target, timeout=5)
    assert RangeHandler.ranges_seen == ["/" + rel]
    assert target.read_bytes() == (cmrbench_dir / rel).read_bytes()
    assert not part.exists()


def test_missing_file_and_offline_errors(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_file(server + "processed/nope.json", tmp_path / "x", timeout=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(FetchError, match="may be offline"):
        fetch_cmrbench(tmp_path / "y", base_url=f"http://127.0.0.1:{port}/", timeout=2)
