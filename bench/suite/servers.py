"""Real `hubroute serve` processes on loopback for the service benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    state: Path, router: Path | None, *extra: str, timeout_s: float = 300, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """Start ``hubroute serve`` on a free loopback port (stderr to ``<state>.log``, embedding cache
    in ``<state>.cache``, so nothing measured comes from an earlier run's cache; ``env``: more
    variables) and wait until it is ready; returns the process and its URL."""
    port = free_port()
    cmd = [sys.executable, "-m", "hubroute.cli", "serve", "--state", str(state), "--port", str(port), *extra]
    if router is not None:
        cmd += ["--router", str(router)]
    log = state.with_name(state.name + ".log")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HUBROUTE_CACHE": str(state.with_name(state.name + ".cache")),
        **(env or {}),
    }
    with log.open("ab") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text(errors='replace')[-1500:]}")
        try:
            if httpx.get(url + "/health/ready", timeout=5).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("server did not become ready")


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
