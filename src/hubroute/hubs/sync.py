"""Keep a hub folder in step with the Hugging Face Hub (``huggingface_hub.HfApi``).

A sync lists the models of a query (``author``, ``filter`` tags, ``pipeline_tag``) newest first
with their card data, down to the query's *watermark* (the creation time of the newest model a
sync has stored); the new ones are stored oldest first, in chunks, the watermark moving after
each chunk, so an interrupted sync resumes where it stopped and never stores a model twice.
Then it reconciles: every model of the hub that this query once brought in and that the Hub no
longer lists, or lists as gated, is retired (never deleted). The endpoint is ``HF_ENDPOINT``
(or ``endpoint``); 429 answers (``Retry-After``) and 5xx are retried by ``huggingface_hub``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hubroute.hubs.cards import Parsed, from_card_data
from hubroute.hubs.folder import HubFolder, Report

CHUNK = 1000


@dataclass(frozen=True)
class Query:
    """Which models a sync follows."""

    author: str | None = None
    filters: tuple[str, ...] = ()
    pipeline_tag: str | None = None

    @property
    def key(self) -> str:
        """The key its watermark is stored under."""
        text = json.dumps({"author": self.author, "filters": sorted(self.filters), "pipeline_tag": self.pipeline_tag})
        return "huggingface:" + hashlib.sha256(text.encode()).hexdigest()[:12]

    def args(self) -> dict[str, Any]:
        """Keyword arguments of ``HfApi.list_models``."""
        out: dict[str, Any] = {}
        if self.author:
            out["author"] = self.author
        if self.filters:
            out["filter"] = list(self.filters)
        if self.pipeline_tag:
            out["pipeline_tag"] = self.pipeline_tag
        return out


def _ms(t: dt.datetime | None) -> int | None:
    if t is None:
        return None
    return int((t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp() * 1000)


def sync_huggingface(
    hub: HubFolder,
    query: Query,
    *,
    since: dt.datetime | None = None,
    endpoint: str | None = None,
    token: str | None = None,
    readme: bool = False,
    reconcile: bool = True,
    on_chunk: Callable[[int, int], None] | None = None,
) -> Report:
    """Bring ``hub`` up to date with the models of ``query`` (see the module docstring).

    ``since``: ignore models created before it (a first sync of a large organisation);
    ``readme``: download each new model's README for its card text (one request per model;
    otherwise the text is built from the card data); ``on_chunk(stored, total)`` is called after
    each stored chunk.
    """
    with _online():
        return _sync(hub, query, since, endpoint, token, readme, reconcile, on_chunk)


@contextlib.contextmanager
def _online() -> Iterator[None]:
    """Let ``huggingface_hub`` make requests inside the block: a sync is an explicit request to go
    online, even where ``HF_HUB_OFFLINE`` keeps model loading offline."""
    from huggingface_hub import constants

    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


def _sync(
    hub: HubFolder,
    query: Query,
    since: dt.datetime | None,
    endpoint: str | None,
    token: str | None,
    readme: bool,
    reconcile: bool,
    on_chunk: Callable[[int, int], None] | None,
) -> Report:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=endpoint, token=token)
    state = hub.source_state(query.key)
    mark = state.get("watermark")
    at_mark = set(state.get("at_watermark", []))
    floor = _ms(since)
    report = Report()
    fresh = []
    for info in api.list_models(**query.args(), sort="created_at", cardData=True, full=True):
        created = _ms(info.created_at)
        if created is None:
            report.problems.append(f"{info.id}: the Hub gave no creation time; skipped")
            continue
        if mark is not None and (created < mark or (created == mark and info.id in at_mark)):
            break  # newest first: everything from here on was stored by an earlier sync
        if floor is not None and created < floor:
            break
        fresh.append(info)
    fresh.reverse()  # store oldest first, so the watermark only moves forward
    gated = [i.id for i in fresh if i.gated]
    fresh = [i for i in fresh if not i.gated]
    for start in range(0, len(fresh), CHUNK):
        chunk = fresh[start : start + CHUNK]
        hub.add_cards((_card(api, info, readme, query.key) for info in chunk), report)
        newest = max(_ms(i.created_at) or 0 for i in chunk)
        at = [i.id for i in chunk if _ms(i.created_at) == newest]
        if newest == mark:
            at = sorted(at_mark | set(at))
        mark, at_mark = newest, set(at)
        hub.set_source_state(
            query.key,
            {
                "query": {"author": query.author, "filters": list(query.filters), "pipeline_tag": query.pipeline_tag},
                "watermark": mark,
                "at_watermark": sorted(at_mark),
                "synced_at": dt.datetime.now(dt.UTC).isoformat(),
            },
        )
        if on_chunk is not None:
            on_chunk(start + len(chunk), len(fresh))
    if reconcile:
        _reconcile(hub, api, query, report, gated)
    return report


def _card(api: Any, info: Any, readme: bool, query_key: str) -> Parsed:
    """A :class:`Parsed` card from one listed model, marked with the query that brought it."""
    where = f"huggingface:{info.id}"
    try:
        data = info.card_data.to_dict() if info.card_data is not None else {}
        if info.pipeline_tag and not data.get("pipeline_tag"):
            data["pipeline_tag"] = info.pipeline_tag
        if info.library_name and not data.get("library_name"):
            data["library_name"] = info.library_name
        body = ""
        if readme:
            body = _readme_body(api, info.id)
        else:
            body = _body_from_data(data)
        parsed = from_card_data(info.id, data, body, where, _ms(info.created_at))
    except Exception as e:  # one malformed card never stops the others
        return Parsed(None, where, f"malformed card ({type(e).__name__}: {' '.join(str(e).split())[:160]})")
    if parsed.card is not None:
        parsed.card.extra["sync_query"] = query_key
    return parsed


def _readme_body(api: Any, repo_id: str) -> str:
    """The Markdown body of a model's README (its YAML header removed), fetched with
    ``huggingface_hub``'s retrying HTTP client."""
    from huggingface_hub import ModelCard, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status, http_backoff

    url = hf_hub_url(repo_id, "README.md", endpoint=api.endpoint)
    response = http_backoff("GET", url, headers=build_hf_headers(token=api.token), timeout=30)
    hf_raise_for_status(response)
    return ModelCard(response.text, ignore_metadata_errors=True).text


def _body_from_data(data: dict[str, Any]) -> str:
    """Card text from metadata alone: tags, datasets, languages and the model-index results."""
    parts = []
    for key, label in (("tags", "Tags"), ("datasets", "Trained on"), ("language", "Languages")):
        value = data.get(key)
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list) and value:
            parts.append(f"{label}: {', '.join(str(v) for v in value[:12])}.")
    return "\n\n".join(parts)


def _reconcile(hub: HubFolder, api: Any, query: Query, report: Report, gated_new: list[str]) -> None:
    """Retire the models this query brought in that the Hub no longer lists or lists as gated."""
    listed: dict[str, Any] = {}
    for info in api.list_models(**query.args(), expand=["gated"]):
        listed[info.id] = info.gated
    reg = hub.registry()
    ours = [c.model_id for c in reg if c.extra.get("sync_query") == query.key]
    gone = [m for m in ours if m not in listed]
    gated = [m for m in ours if listed.get(m)]
    hub.retire(gone, "no longer listed by the Hub", report)
    hub.retire(gated, "gated on the Hub", report)
    report.skipped += len(gated_new)
    report.notes += [f"{m}: gated on the Hub; not imported" for m in gated_new]
