"""The service's settings: limits, update policy, runtime, security, observability.

Every setting has a default here, and can be set in a TOML file (``hubroute serve --config
FILE``: keys at the top level or under ``[service]``), by an environment variable
``HUBROUTE_<NAME>`` (upper case, e.g. ``HUBROUTE_MAX_PROMPTS=64``) or by a command-line flag;
later sources win in that order. ``docs/service.md`` lists them all (generated from
:data:`SETTINGS_HELP`).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hubroute.errors import HubrouteError

ENV_PREFIX = "HUBROUTE_"


@dataclass
class ServiceConfig:
    """Settings of one service (see the module docstring and :data:`SETTINGS_HELP`)."""

    # request limits
    max_body_bytes: int = 1_048_576
    max_prompts: int = 256
    max_prompt_chars: int = 4000
    max_k: int = 100
    max_cards: int = 1000
    max_card_text_chars: int = 20_000
    max_extra_bytes: int = 16_384
    max_feedback_items: int = 1000
    max_status_changes: int = 10_000
    # load shedding
    rate_limit_per_s: float = 0.0
    rate_limit_burst: int = 50
    request_timeout_s: float = 30.0
    max_queue: int = 2048
    # update policy
    margin: float = 1.0
    reference_margin: float = 5.0
    holdout_every: int = 5
    min_held_out: int = 10
    update_threads: int = 1
    keep_versions: int = 10
    follow_s: float = 0.5
    # runtime
    store: str | None = None
    inference: str = "onnx"
    recover: bool = False
    # security
    keys_file: str | None = None
    allowed_hosts: list[str] = field(default_factory=list)
    allow_remote_without_keys: bool = False
    # observability
    access_log: bool = True
    otel: bool = False

    def __post_init__(self) -> None:
        positive = (
            "max_body_bytes",
            "max_prompts",
            "max_prompt_chars",
            "max_k",
            "max_cards",
            "max_card_text_chars",
            "max_extra_bytes",
            "max_feedback_items",
            "max_status_changes",
            "rate_limit_burst",
            "max_queue",
            "holdout_every",
            "update_threads",
            "keep_versions",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise HubrouteError(f"service setting {name} must be >= 1, got {getattr(self, name)}")
        if self.follow_s < 0:
            raise HubrouteError(f"follow_s must be >= 0, got {self.follow_s}")
        if self.rate_limit_per_s < 0 or self.request_timeout_s <= 0 or self.min_held_out < 0:
            raise HubrouteError("need rate_limit_per_s >= 0, request_timeout_s > 0 and min_held_out >= 0")
        from hubroute.service.backends import is_url

        if self.store is not None and not is_url(self.store):
            raise HubrouteError(
                f"store must be a postgresql:// URL (the default store is <state>/hub.sqlite), got {self.store!r}"
            )
        from hubroute.encoders import INFERENCE_PRECISIONS

        if self.inference not in INFERENCE_PRECISIONS:
            choices = ", ".join(INFERENCE_PRECISIONS)
            raise HubrouteError(f"unknown inference precision {self.inference!r}; choose one of {choices}")

    @classmethod
    def load(
        cls, file: str | Path | None = None, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> ServiceConfig:
        """Defaults, then ``file`` (TOML), then ``HUBROUTE_*`` variables of ``env`` (default
        ``os.environ``), then ``overrides`` that are not None."""
        values: dict[str, Any] = {}
        if file is not None:
            values.update(_from_toml(Path(file)))
        values.update(_from_env(os.environ if env is None else env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        unknown = sorted(set(values) - {f.name for f in fields(cls)})
        if unknown:
            raise HubrouteError(f"unknown service setting(s): {', '.join(unknown)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return dataclasses.asdict(self)


SETTINGS_HELP: dict[str, str] = {
    "max_body_bytes": "Largest request body accepted, in bytes (checked before parsing; 413 beyond).",
    "max_prompts": "Most prompts in one route request.",
    "max_prompt_chars": "Most characters in one prompt (route and feedback).",
    "max_k": "Most models returned per prompt.",
    "max_cards": "Most model cards in one add request.",
    "max_card_text_chars": "Most characters of a card's text.",
    "max_extra_bytes": "Largest card 'extra' metadata, in bytes of JSON.",
    "max_feedback_items": "Most feedback items in one request.",
    "max_status_changes": "Most models retired or re-activated by one request.",
    "rate_limit_per_s": "Requests per second allowed per API key (or per client address without keys); 0: no limit.",
    "rate_limit_burst": "Requests a key may send at once before the rate limit applies.",
    "request_timeout_s": "Deadline of a route request, queueing included (504 beyond).",
    "max_queue": "Most prompts waiting for the router (503 beyond).",
    "margin": "An update is promoted unless held-out M-Acc falls by more points than this.",
    "reference_margin": "An update is promoted unless M-Acc on the router's reference sample falls by more points.",
    "holdout_every": "Every n-th feedback row is held back to check an update.",
    "min_held_out": "Fewest held-back feedback rows an update needs to be promoted.",
    "update_threads": "CPU threads of the update worker.",
    "keep_versions": "Router versions kept on disk (the serving one and the one before it are always kept).",
    "follow_s": "Seconds between looks at the state folder for what other servers sharing it changed (registry "
    "changes, a newly current version); 0: never look.",
    "store": "A postgresql:// URL of the store that replicas on several hosts share (registry, feedback, "
    "updates, keys, audit log); empty: the SQLite file <state>/hub.sqlite.",
    "inference": "Encoder runtime: fp32, bf16, int8, onnx (default) or onnx-int8.",
    "recover": "Serve the newest intact version when the current one is damaged.",
    "keys_file": "JSON file of API keys (name, key or sha256, scopes), added to the keys in the store.",
    "allowed_hosts": "Host header values accepted (default: the bind address and localhost).",
    "allow_remote_without_keys": "Listen on a non-loopback address without API keys (not recommended).",
    "access_log": "Write one JSON line per request to stderr.",
    "otel": "Trace requests with OpenTelemetry (needs the opentelemetry-sdk package).",
}


def _coerce(name: str, raw: str, kind: Any) -> Any:
    text = str(raw).strip()
    try:
        if kind in (int, "int"):
            return int(text)
        if kind in (float, "float"):
            return float(text)
        if kind in (bool, "bool"):
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
    except ValueError:
        raise HubrouteError(f"{ENV_PREFIX}{name.upper()}: cannot read {raw!r} as {kind}") from None
    if "list" in str(kind):
        return [x.strip() for x in text.split(",") if x.strip()]
    return text or None


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(ServiceConfig):
        key = ENV_PREFIX + f.name.upper()
        if key in env:
            out[f.name] = _coerce(f.name, env[key], f.type)
    return out


def _from_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HubrouteError(f"{path}: config file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise HubrouteError(f"{path}: invalid TOML ({e})") from None
    section = data.get("service", data)
    if not isinstance(section, dict):
        raise HubrouteError(f"{path}: [service] must be a table")
    return dict(section)
