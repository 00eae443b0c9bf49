"""Versioned router directories and the pointer to the serving one.

``<state>/versions/v0001, v0002, …`` hold saved routers; ``<state>/CURRENT`` (JSON) names the
serving version and the order in which versions were promoted. Both are replaced atomically
(write to a temporary name, fsync, rename), so a crash leaves either the old or the new pointer.
Every change of the pointer happens under an exclusive lock on ``<state>/.versions.lock``, so a
promotion and a rollback from different processes never interleave, and a promotion names the
version it was built from: it happens only if that version is still serving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from hubroute.errors import DataError, HubrouteError
from hubroute.routers.base import Router


class Versions:
    """The version folders and pointer of one state directory."""

    def __init__(self, state_dir: str | Path):
        self.root = Path(state_dir)
        self.dir = self.root / "versions"
        self.pointer = self.root / "CURRENT"
        self.dir.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the state folder's pointer lock (across processes)."""
        with (self.root / ".versions.lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _read(self) -> dict:
        if not self.pointer.is_file():
            return {"current": None, "history": []}
        try:
            data = json.loads(self.pointer.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"damaged version pointer ({e})", self.pointer) from None
        if not isinstance(data, dict) or not isinstance(data.get("history"), list):
            raise DataError("damaged version pointer (no history list)", self.pointer)
        return data

    def _write(self, data: dict) -> None:
        tmp = self.pointer.with_name(".CURRENT.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write(json.dumps(data) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.pointer)

    @property
    def current(self) -> str | None:
        """Name of the serving version (None before the first one)."""
        return self._read()["current"]

    @property
    def history(self) -> list[str]:
        """Promoted versions, oldest first."""
        return list(self._read()["history"])

    def path(self, name: str) -> Path:
        """Folder of a version."""
        return self.dir / name

    def inference_dir(self, name: str) -> Path:
        """Where a version's inference artefacts (exported ONNX graphs) are kept."""
        return self.path(name) / "inference"

    def names(self) -> list[str]:
        """Every version folder, oldest first."""
        return sorted((p.name for p in self.dir.glob("v[0-9]*") if p.name[1:].isdigit()), key=lambda n: int(n[1:]))

    def next_name(self) -> str:
        """A fresh version name (``v0001``…), never reused."""
        taken = [int(n[1:]) for n in self.names()]
        return f"v{max(taken, default=0) + 1:04d}"

    def add(self, router: Router) -> str:
        """Save ``router`` as a new version (not yet serving); returns its name."""
        with self.locked():
            name = self.next_name()
            self.path(name).mkdir()  # reserve the name
        router.save(self.path(name))
        return name

    def import_dir(self, source: str | Path) -> str:
        """Copy a saved router folder in as a new version; returns its name."""
        with self.locked():
            name = self.next_name()
            shutil.copytree(source, self.path(name))
        return name

    def promote(self, name: str, *, expected: str | None = None) -> bool:
        """Make ``name`` the serving version; with ``expected``, only if that version is still
        serving (returns False and changes nothing otherwise)."""
        if not self.path(name).is_dir():
            raise HubrouteError(f"no router version {name!r}")
        with self.locked():
            data = self._read()
            if expected is not None and data["current"] != expected:
                return False
            data["history"] = [*data["history"], name]
            data["current"] = name
            self._write(data)
        return True

    def rollback(self) -> str:
        """Serve the version promoted before the current one; returns its name."""
        with self.locked():
            data = self._read()
            if len(data["history"]) < 2:
                raise HubrouteError("no earlier version to roll back to")
            data["history"] = data["history"][:-1]
            data["current"] = data["history"][-1]
            self._write(data)
            return data["current"]

    def recover(self, name: str) -> None:
        """Serve ``name`` after the current version (or the pointer) was found damaged: the
        history is cut back to ``name`` (or restarted from it when it is not in the history)."""
        with self.locked():
            try:
                history = self._read()["history"]
            except DataError:
                history = []
            history = history[: history.index(name) + 1] if name in history else [name]
            self._write({"current": name, "history": history})

    def prune(self, keep: int) -> list[str]:
        """Delete the oldest version folders beyond the newest ``keep``, never the serving one,
        the one promoted before it, or one not yet promoted that is newer than the serving one
        (an update may be writing it). Returns the names deleted."""
        with self.locked():
            try:
                data = self._read()
            except DataError:
                return []
            protect = set(data["history"][-2:])
            names = self.names()
            current = data["current"]
            newest_serving = int(current[1:]) if current else 0
            candidates = [n for n in names if n not in protect and int(n[1:]) < newest_serving]
            excess = max(0, len(names) - max(keep, 2))
            gone = candidates[:excess]
            for n in gone:
                shutil.rmtree(self.path(n), ignore_errors=True)
            if gone:
                data["history"] = [h for h in data["history"] if h not in gone]
                self._write(data)
        return gone
