"""Request and response bodies of the HTTP API, with the service's limits as constraints.

The models are built for one :class:`~hubroute.service.config.ServiceConfig` (:func:`build`), so
the OpenAPI schema states the limits the server enforces. Bodies are strict: unknown fields are
rejected, numbers are not read from strings or booleans, and text that cannot be stored or
encoded (lone surrogates, control characters in ids) is refused with a message that says where.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from hubroute.hub import MAX_ID_CHARS, text_problem
from hubroute.service.config import ServiceConfig

MAX_DOMAIN_CHARS = 256
STRICT = ConfigDict(extra="forbid", strict=True)


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer: a one-line message."""

    detail: str


def _text(value: str, what: str, *, single_line: bool = False) -> str:
    problem = text_problem(value, single_line=single_line)
    if problem:
        raise ValueError(f"{what} {problem}")
    return value


def _prompt(value: str, what: str) -> str:
    _text(value, what)
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value.strip()


class RoutedModel(BaseModel):
    """One ranked answer."""

    model_id: str
    score: float
    domain: str
    family: str


class RoutedPrompt(BaseModel):
    """The ranked answers for one prompt."""

    prompt: str
    models: list[RoutedModel]


class RouteResponse(BaseModel):
    """Answers of a route request, and the router version that gave them."""

    version: str
    results: list[RoutedPrompt]


class ModelOut(BaseModel):
    """A registered model card and its status."""

    model_id: str
    family: str
    domain: str
    text: str
    created_at: int | None
    extra: dict[str, Any]
    status: str


class ModelList(BaseModel):
    """One page of models."""

    total: int
    models: list[ModelOut]


class Registered(BaseModel):
    """Models registered by an add request."""

    registered: list[str]
    version: str


class StatusChanged(BaseModel):
    """A model's new status."""

    model_id: str
    status: str


class StatusBatchOut(BaseModel):
    """How many models changed status (others already had it)."""

    status: str
    changed: int
    requested: int


class FeedbackStored(BaseModel):
    """Feedback rows stored (or, for a replayed idempotency key, stored before)."""

    stored: int
    ids: list[int]
    pending: int
    replayed: bool = False


class UpdateStarted(BaseModel):
    """A queued update."""

    id: int
    status: str
    from_version: str


class UpdateOut(BaseModel):
    """An update job and, once finished, its result."""

    model_config = ConfigDict(extra="allow")
    id: int
    status: str
    stage: str
    progress: float
    from_version: str | None
    to_version: str | None
    result: dict[str, Any] | None
    error: str | None


class VersionOut(BaseModel):
    """The serving version after a rollback."""

    version: str


@dataclass(frozen=True)
class Schemas:
    """The request models of one configuration."""

    RouteBody: type[BaseModel]
    ModelIn: type[BaseModel]
    FeedbackIn: type[BaseModel]
    FeedbackBatch: type[BaseModel]
    StatusBatch: type[BaseModel]
    max_cards: int


class ConstraintsIn(BaseModel):
    """Only models whose cards meet these: allow-lists (any of the values) and a largest
    parameter count; a model whose card does not state a constrained field is left out."""

    model_config = STRICT
    domain: Annotated[list[Annotated[StrictStr, Field(max_length=MAX_DOMAIN_CHARS)]], Field(max_length=64)] | None = (
        None
    )
    pipeline_tag: Annotated[list[Annotated[StrictStr, Field(max_length=128)]], Field(max_length=64)] | None = None
    license: Annotated[list[Annotated[StrictStr, Field(max_length=128)]], Field(max_length=64)] | None = None
    language: Annotated[list[Annotated[StrictStr, Field(max_length=64)]], Field(max_length=64)] | None = None
    max_params: Annotated[StrictInt, Field(ge=0)] | None = None


def build(cfg: ServiceConfig) -> Schemas:
    """Request models whose constraints are ``cfg``'s limits."""
    Prompt = Annotated[StrictStr, Field(min_length=1, max_length=cfg.max_prompt_chars)]
    Domain = Annotated[StrictStr, Field(min_length=1, max_length=MAX_DOMAIN_CHARS)]
    ModelId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]

    class RouteBody(BaseModel):
        """Prompts to route."""

        model_config = STRICT
        prompts: Prompt | Annotated[list[Prompt], Field(min_length=1, max_length=cfg.max_prompts)] = Field(
            description=f"One prompt or a list of up to {cfg.max_prompts} (each 1..{cfg.max_prompt_chars} characters)."
        )
        k: Annotated[StrictInt, Field(ge=1, le=cfg.max_k)] = Field(5, description="Models to return per prompt.")
        domain: Domain | None = Field(None, description="Only route to models of this domain.")
        constraints: ConstraintsIn | None = Field(None, description="Only route to models whose cards meet these.")

        @field_validator("prompts")
        @classmethod
        def _prompts(cls, v: str | list[str]) -> str | list[str]:
            if isinstance(v, str):
                return _prompt(v, "prompt")
            return [_prompt(p, f"prompt {i}") for i, p in enumerate(v)]

        @field_validator("domain")
        @classmethod
        def _domain(cls, v: str | None) -> str | None:
            return None if v is None else _text(v, "domain", single_line=True)

    class ModelIn(BaseModel):
        """A model card to register."""

        model_config = STRICT
        model_id: ModelId
        domain: Domain
        family: Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)] | None = None
        text: Annotated[StrictStr, Field(max_length=cfg.max_card_text_chars)] = ""
        created_at: Annotated[StrictInt, Field(ge=0)] | None = None
        extra: dict[str, Any] = Field(
            default_factory=dict, description=f"Any metadata; at most {cfg.max_extra_bytes} bytes as JSON."
        )

        @field_validator("model_id", "domain", "family")
        @classmethod
        def _ids(cls, v: str | None, info: Any) -> str | None:
            if v is None:
                return None
            v = _text(v, info.field_name, single_line=True)
            if not v.strip():
                raise ValueError(f"{info.field_name} is empty")
            return v.strip()

        @field_validator("text")
        @classmethod
        def _card_text(cls, v: str) -> str:
            return _text(v, "text")

        @field_validator("extra")
        @classmethod
        def _extra(cls, v: dict[str, Any]) -> dict[str, Any]:
            try:
                size = len(json.dumps(v, ensure_ascii=False).encode("utf-8"))
            except (TypeError, ValueError, UnicodeEncodeError) as e:
                raise ValueError(f"extra is not storable JSON ({e})") from None
            if size > cfg.max_extra_bytes:
                raise ValueError(f"extra has {size} bytes as JSON; the limit is {cfg.max_extra_bytes}")
            return v

    class FeedbackIn(BaseModel):
        """A prompt and the model that should have answered it."""

        model_config = STRICT
        prompt: Prompt
        model_id: ModelId
        domain: Domain | None = None

        @field_validator("prompt")
        @classmethod
        def _p(cls, v: str) -> str:
            return _prompt(v, "prompt")

        @field_validator("model_id", "domain")
        @classmethod
        def _i(cls, v: str | None, info: Any) -> str | None:
            return None if v is None else _text(v, info.field_name, single_line=True)

    class FeedbackBatch(BaseModel):
        """Several feedback items."""

        model_config = STRICT
        items: Annotated[list[FeedbackIn], Field(min_length=1, max_length=cfg.max_feedback_items)]

    class StatusBatch(BaseModel):
        """Models to retire or re-activate."""

        model_config = STRICT
        model_ids: Annotated[list[ModelId], Field(min_length=1, max_length=cfg.max_status_changes)]
        status: Literal["active", "retired"]

    return Schemas(RouteBody, ModelIn, FeedbackIn, FeedbackBatch, StatusBatch, cfg.max_cards)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in (
        (400, "Bad request (e.g. a Host header that is not allowed)."),
        (401, "No valid API key."),
        (403, "The key lacks the scope this endpoint needs."),
        (404, "Unknown model or update."),
        (409, "Conflict with the current state (a model id already registered, an update already running)."),
        (413, "The body is larger than max_body_bytes."),
        (415, "The body is not JSON."),
        (422, "The body or a parameter breaks the schema or a limit."),
        (429, "Too many requests for this key; see Retry-After."),
        (503, "The router's queue is full, or the service is draining."),
        (504, "The request passed its deadline."),
    )
}
