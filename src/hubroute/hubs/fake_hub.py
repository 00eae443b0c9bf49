"""A stand-in for the Hugging Face Hub API on loopback, for tests and benchmarks of ``hubroute hub
sync`` (and for trying a sync setup without network access).

It answers the routes ``huggingface_hub.HfApi.list_models`` calls (``GET /api/models`` with
``author``, ``filter``, ``pipeline_tag``, ``sort=createdAt`` newest first, ``cardData``,
``expand``, ``limit``; pages linked by a ``Link: <…>; rel="next"`` header, as the Hub does) and
``GET /<repo>/resolve/main/README.md``. Failures can be injected: a 429 with ``Retry-After``, a
5xx, or a 404 for chosen page numbers. Only 127.0.0.1 is ever bound.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeModel:
    """One model the fake Hub lists."""

    id: str
    created_at: dt.datetime
    pipeline_tag: str | None = None
    card_data: dict[str, Any] | None = None
    readme: str = ""
    gated: bool | str = False
    tags: list[str] = field(default_factory=list)

    def item(self, card: bool, expand: list[str] | None) -> dict[str, Any]:
        """The JSON item of ``/api/models``."""
        out: dict[str, Any] = {"id": self.id, "_id": self.id, "modelId": self.id}
        if expand:
            if "gated" in expand:
                out["gated"] = self.gated
            if "createdAt" in expand:
                out["createdAt"] = _iso(self.created_at)
            return out
        out |= {
            "createdAt": _iso(self.created_at),
            "pipeline_tag": self.pipeline_tag,
            "tags": self.tags,
            "private": False,
            "gated": self.gated,
            "likes": 0,
            "downloads": 0,
        }
        if card and self.card_data is not None:
            out["cardData"] = self.card_data
        return out


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass
class Faults:
    """Failures to inject: ``{page number: status}`` for listing pages (a 429 carries
    ``Retry-After: retry_after``), each served ``times`` times before the page works."""

    pages: dict[int, int] = field(default_factory=dict)
    times: int = 1
    retry_after: int = 1
    seen: dict[int, int] = field(default_factory=dict)


class FakeHub:
    """The server (see the module docstring): ``models`` to list, ``page_size`` per page.
    ``with FakeHub(models) as hub:`` serves at ``hub.url`` in a thread; ``requests`` counts the
    requests it answered."""

    def __init__(self, models: list[FakeModel], page_size: int = 100, faults: Faults | None = None):
        self.models = models
        self.page_size = page_size
        self.faults = faults or Faults()
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Base URL (``HF_ENDPOINT``)."""
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                return None

            def do_GET(self) -> None:
                with hub._lock:
                    hub.requests += 1
                hub._answer(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, h: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        if url.path == "/api/models":
            return self._list(h, query)
        if url.path.endswith("/resolve/main/README.md"):
            repo = url.path[1 : -len("/resolve/main/README.md")]
            model = next((m for m in self.models if m.id == repo), None)
            if model is None:
                return _send(h, 404, {"error": "Repository not found"})
            body = model.readme.encode()
            h.send_response(200)
            h.send_header("Content-Type", "text/markdown")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return None
        return _send(h, 404, {"error": "not found"})

    def _list(self, h: BaseHTTPRequestHandler, q: dict[str, list[str]]) -> None:
        page = int(q.get("page", ["1"])[0])
        with self._lock:
            status = self.faults.pages.get(page)
            if status is not None and self.faults.seen.get(page, 0) < self.faults.times:
                self.faults.seen[page] = self.faults.seen.get(page, 0) + 1
                headers = {"Retry-After": str(self.faults.retry_after)} if status == 429 else {}
                return _send(h, status, {"error": f"injected {status}"}, headers)
        models = list(self.models)
        if "author" in q:
            models = [m for m in models if m.id.split("/", 1)[0] == q["author"][0]]
        if "pipeline_tag" in q:
            models = [m for m in models if m.pipeline_tag == q["pipeline_tag"][0]]
        for f in q.get("filter", []):
            models = [m for m in models if f in m.tags or f == m.pipeline_tag]
        if q.get("sort", [""])[0] == "createdAt":
            models.sort(key=lambda m: (m.created_at, m.id), reverse=True)
        size = min(int(q.get("limit", [str(self.page_size)])[0]), self.page_size)
        chunk = models[(page - 1) * size : page * size]
        card = q.get("cardData", ["false"])[0].lower() == "true" or q.get("full", ["false"])[0].lower() == "true"
        body = [m.item(card, q.get("expand")) for m in chunk]
        headers = {}
        if page * size < len(models):
            params = {k: v for k, v in q.items() if k != "page"} | {"page": [str(page + 1)]}
            nxt = f"{self.url}/api/models?{urllib.parse.urlencode(params, doseq=True)}"
            headers["Link"] = f'<{nxt}>; rel="next"'
        return _send(h, 200, body, headers)


def _send(h: BaseHTTPRequestHandler, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    h.send_response(status)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(data)
