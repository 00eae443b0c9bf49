"""Exceptions raised by hubroute; the CLI prints them as one line."""

from __future__ import annotations

from pathlib import Path


class HubrouteError(Exception):
    """Base class of every error hubroute raises on purpose (bad input, missing data)."""


class DataError(HubrouteError):
    """A data file is missing or malformed.

    ``path`` and ``line`` (1-based) locate the problem when they are known.
    """

    def __init__(self, message: str, path: str | Path | None = None, line: int | None = None):
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(f"{where}{message}")


class RegistryError(HubrouteError):
    """An operation on the registry is invalid (unknown or duplicate model id)."""


class FetchError(HubrouteError):
    """Downloading a dataset failed (offline, bad status, size mismatch)."""
