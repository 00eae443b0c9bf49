"""Prometheus metrics of one service (prometheus_client, one registry per app).

Every request is counted and timed by method, route template and status, errors (5xx)
included; routing adds prompt counts, per-model answer counts, batch sizes and queue depth;
updates add their duration and outcome.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The service's metric families (see the module docstring)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "hubroute_requests", "HTTP requests by method, route and status.", ["method", "path", "status"], registry=r
        )
        self.duration = Histogram(
            "hubroute_request_duration_seconds",
            "HTTP request latency by method, route and status.",
            ["method", "path", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.routed_prompts = Counter("hubroute_routed_prompts", "Prompts routed.", registry=r)
        self.routed_to = Counter(
            "hubroute_routed_to", "Top-1 answers per model (models with at least one).", ["model_id"], registry=r
        )
        self.batch_prompts = Histogram(
            "hubroute_batch_prompts",
            "Prompts per encoder pass of the request batcher.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.queue_depth = Gauge("hubroute_queue_prompts", "Prompts waiting for the router.", registry=r)
        self.rejected = Counter(
            "hubroute_rejected", "Requests refused by a limit (rate, queue, size, deadline).", ["reason"], registry=r
        )
        self.updates = Counter("hubroute_updates", "Finished updates by outcome.", ["status"], registry=r)
        self.update_seconds = Histogram(
            "hubroute_update_duration_seconds",
            "Wall time of finished updates.",
            buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.models = Gauge("hubroute_registry_models", "Registered models.", registry=r)
        self.active_models = Gauge("hubroute_registry_active_models", "Routable models.", registry=r)
        self.feedback_rows = Gauge("hubroute_feedback_rows", "Stored feedback rows.", registry=r)
        self.feedback_pending = Gauge("hubroute_feedback_pending_rows", "Feedback no update has used yet.", registry=r)
        self.info = Gauge("hubroute_router_info", "The serving router.", ["version", "kind"], registry=r)
        self._info_labels: tuple[str, str] | None = None

    def request(self, method: str, path: str, status: int, seconds: float) -> None:
        """Count and time one finished request."""
        labels = (method, path, str(status))
        self.requests.labels(*labels).inc()
        self.duration.labels(*labels).observe(seconds)

    def set_router(self, version: str, kind: str) -> None:
        """Point the info metric at the serving version."""
        if self._info_labels is not None:
            self.info.remove(*self._info_labels)
        self._info_labels = (version, kind)
        self.info.labels(version, kind).set(1)

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)
