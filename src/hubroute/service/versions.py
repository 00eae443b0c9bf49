"""Versioned router directories and the pointer to the serving one.

``<state>/versions/v0001, v0002, …`` hold saved routers; ``<state>/CURRENT`` (JSON) names the
serving version and the order in which versions were promoted. Both are replaced atomically
(write to a temporary name, fsync, rename), so a crash leaves either the old or the new pointer.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hubroute.errors import HubrouteError
from hubroute.routers.base import Router


class Versions:
    """The version folders and pointer of one state directory."""

    def __init__(self, state_dir: str | Path):
        self.root = Path(state_dir)
        self.dir = self.root / "versions"
        self.pointer = self.root / "CURRENT"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _read(self) -> dict:
        if not self.pointer.is_file():
            return {"current": None, "history": []}
        return json.loads(self.pointer.read_text(encoding="utf-8"))

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

    def next_name(self) -> str:
        """A fresh version name (``v0001``…), never reused."""
        taken = [int(p.name[1:]) for p in self.dir.glob("v[0-9]*") if p.name[1:].isdigit()]
        return f"v{max(taken, default=0) + 1:04d}"

    def add(self, router: Router) -> str:
        """Save ``router`` as a new version (not yet serving); returns its name."""
        name = self.next_name()
        router.save(self.path(name))
        return name

    def import_dir(self, source: str | Path) -> str:
        """Copy a saved router folder in as a new version; returns its name."""
        name = self.next_name()
        shutil.copytree(source, self.path(name))
        return name

    def promote(self, name: str) -> None:
        """Make ``name`` the serving version."""
        if not self.path(name).is_dir():
            raise HubrouteError(f"no router version {name!r}")
        data = self._read()
        data["history"] = [*data["history"], name]
        data["current"] = name
        self._write(data)

    def rollback(self) -> str:
        """Serve the version promoted before the current one; returns its name."""
        data = self._read()
        if len(data["history"]) < 2:
            raise HubrouteError("no earlier version to roll back to")
        data["history"] = data["history"][:-1]
        data["current"] = data["history"][-1]
        self._write(data)
        return data["current"]
