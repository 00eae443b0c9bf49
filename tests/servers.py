"""Real `hubroute serve` processes on loopback for the tests that need a process of their own."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    state: Path, router: Path | None = None, *extra: str, env: dict | None = None
) -> tuple[subprocess.Popen, str]:
    """Start ``hubroute serve`` on a free port and wait (bounded) until it answers; returns the
    process and its base URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "hubroute.cli", "serve", "--state", str(state), "--port", str(port), *extra]
    if router is not None:
        cmd += ["--router", str(router)]
    log = Path(state).parent / f"{Path(state).name}-server-{port}.log"  # a file: a full pipe would block the server
    with log.open("wb") as err:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=err, env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
        )
    proc.log = log  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            if httpx.get(url + "/health/live", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 20 s."""
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
