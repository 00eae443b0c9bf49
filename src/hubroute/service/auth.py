"""API keys with scopes: created and revoked in the store, or listed in a file.

A key reads ``hr_<id>_<secret>``; only the SHA-256 of the secret is kept (the secret is 32
random bytes, so a fast hash is enough), and a presented key is compared in constant time.
Scopes: ``route`` (route, list models), ``feedback`` (send feedback), ``admin`` (add, retire and
activate models, updates, rollback, audit log, metrics). A request names its key in
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``.

A keys file is JSON: a list of ``{"name": ..., "scopes": [...], "key": "hr_..."}`` or, to keep
secrets out of the file, ``"key_id"`` and ``"sha256"`` (of the secret) instead of ``"key"``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubroute.errors import HubrouteError
from hubroute.service.store import Store

SCOPES = ("route", "feedback", "admin")
PREFIX = "hr_"


@dataclass(frozen=True)
class Principal:
    """Who made a request: a key's name and scopes (``anonymous`` when keys are off)."""

    name: str
    scopes: frozenset[str]

    def can(self, scope: str) -> bool:
        """Whether this principal holds ``scope`` (``admin`` holds every scope)."""
        return scope in self.scopes or "admin" in self.scopes


ANONYMOUS = Principal("anonymous", frozenset(SCOPES))


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def check_scopes(scopes: Iterable[str]) -> list[str]:
    """The scopes, deduplicated in canonical order; unknown ones are an error."""
    scopes = list(scopes)
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise HubrouteError(f"scopes must be some of {', '.join(SCOPES)}; got {', '.join(scopes) or 'none'}")
    return [s for s in SCOPES if s in scopes]


def create_key(store: Store, name: str, scopes: Iterable[str]) -> str:
    """A new key stored (hashed) with ``name`` and ``scopes``; returns the whole key, which is
    shown once and never stored."""
    scopes = check_scopes(scopes)
    if not name or any(not (c.isalnum() or c in "-_.@") for c in name):
        raise HubrouteError("a key name uses letters, digits and - _ . @ only")
    if any(k["name"] == name and k["revoked_at"] is None for k in store.api_keys()):
        raise HubrouteError(f"a live key named {name!r} exists; revoke it first or pick another name")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    store.add_key(key_id, name, _sha256(secret), scopes)
    return f"{PREFIX}{key_id}_{secret}"


def _split(key: str) -> tuple[str, str] | None:
    if not key.startswith(PREFIX):
        return None
    key_id, sep, secret = key[len(PREFIX) :].partition("_")
    return (key_id, secret) if sep and key_id and secret else None


class KeyRing:
    """The live keys of a store plus those of a keys file, checked in constant time.

    Re-reads the store when its key table changes (a key created or revoked by ``hubroute keys``
    takes effect without a restart)."""

    def __init__(self, store: Store, keys_file: str | Path | None = None):
        self.store = store
        self.file_keys = _read_keys_file(Path(keys_file)) if keys_file else {}
        self._cache: dict[str, tuple[str, str, frozenset[str]]] = {}
        self._cache_stamp: Any = None

    def _keys(self) -> dict[str, tuple[str, str, frozenset[str]]]:
        rows = self.store.api_keys(include_revoked=True)
        stamp = tuple((r["key_id"], r["revoked_at"]) for r in rows)
        if stamp != self._cache_stamp:
            live = {
                r["key_id"]: (r["name"], r["secret_sha256"], frozenset(r["scopes"]))
                for r in rows
                if not r["revoked_at"]
            }
            self._cache, self._cache_stamp = live, stamp
        return {**self.file_keys, **self._cache}

    @property
    def enabled(self) -> bool:
        """Whether any key is configured (then every request but health must present one)."""
        return bool(self._keys())

    def authenticate(self, key: str | None) -> Principal | None:
        """The principal of a presented key, or None for a missing, malformed, unknown or revoked
        one."""
        if not key:
            return None
        parts = _split(key.strip())
        if parts is None:
            return None
        key_id, secret = parts
        entry = self._keys().get(key_id)
        digest = _sha256(secret)
        if entry is None:
            hmac.compare_digest(digest, digest)  # same work for unknown ids
            return None
        name, want, scopes = entry
        return Principal(name, scopes) if hmac.compare_digest(digest, want) else None


def _read_keys_file(path: Path) -> dict[str, tuple[str, str, frozenset[str]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HubrouteError(f"{path}: keys file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HubrouteError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, list):
        raise HubrouteError(f"{path}: expected a JSON list of keys")
    out: dict[str, tuple[str, str, frozenset[str]]] = {}
    for i, entry in enumerate(data, 1):
        if not isinstance(entry, dict) or "name" not in entry or "scopes" not in entry:
            raise HubrouteError(f"{path}: key {i} needs 'name' and 'scopes'")
        try:
            scopes = frozenset(check_scopes(entry["scopes"]))
        except HubrouteError as e:
            raise HubrouteError(f"{path}: key {i}: {e}") from None
        if "key" in entry:
            parts = _split(str(entry["key"]))
            if parts is None:
                raise HubrouteError(f"{path}: key {i} is not a hubroute key (hr_<id>_<secret>)")
            key_id, digest = parts[0], _sha256(parts[1])
        elif "key_id" in entry and "sha256" in entry:
            key_id, digest = str(entry["key_id"]), str(entry["sha256"]).lower()
        else:
            raise HubrouteError(f"{path}: key {i} needs 'key', or 'key_id' and 'sha256'")
        out[key_id] = (str(entry["name"]), digest, scopes)
    return out
