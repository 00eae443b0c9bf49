"""Prometheus text-format metrics: request counters, a routing-latency histogram, gauges."""

from __future__ import annotations

import threading
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class Metrics:
    """Thread-safe counters and one histogram, rendered by :meth:`render`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, int], int] = defaultdict(int)
        self.route_buckets = [0] * len(BUCKETS)
        self.route_sum = 0.0
        self.route_count = 0
        self.routed_prompts = 0

    def request(self, method: str, path: str, status: int) -> None:
        """Count one finished request."""
        with self._lock:
            self.requests[(method, path, status)] += 1

    def route(self, seconds: float, n_prompts: int) -> None:
        """Record one routing call's latency and prompt count."""
        with self._lock:
            for i, b in enumerate(BUCKETS):
                if seconds <= b:
                    self.route_buckets[i] += 1
            self.route_sum += seconds
            self.route_count += 1
            self.routed_prompts += n_prompts

    def render(self, gauges: dict[str, float], labels: dict[str, str]) -> str:
        """The exposition text; ``gauges`` become ``hubroute_<name>``, ``labels`` an info metric."""
        with self._lock:
            out = [
                "# HELP hubroute_requests_total HTTP requests by method, path and status.",
                "# TYPE hubroute_requests_total counter",
            ]
            for (m, p, s), n in sorted(self.requests.items()):
                out.append(f'hubroute_requests_total{{method="{m}",path="{p}",status="{s}"}} {n}')
            out += [
                "# HELP hubroute_route_seconds Routing latency per call.",
                "# TYPE hubroute_route_seconds histogram",
            ]
            for b, n in zip(BUCKETS, self.route_buckets, strict=True):
                out.append(f'hubroute_route_seconds_bucket{{le="{b}"}} {n}')
            out.append(f'hubroute_route_seconds_bucket{{le="+Inf"}} {self.route_count}')
            out.append(f"hubroute_route_seconds_sum {self.route_sum:.6f}")
            out.append(f"hubroute_route_seconds_count {self.route_count}")
            out += [
                "# TYPE hubroute_routed_prompts_total counter",
                f"hubroute_routed_prompts_total {self.routed_prompts}",
            ]
        for name, value in gauges.items():
            out += [f"# TYPE hubroute_{name} gauge", f"hubroute_{name} {value}"]
        info = ",".join(f'{k}="{v}"' for k, v in labels.items())
        out += ["# TYPE hubroute_router_info gauge", f"hubroute_router_info{{{info}}} 1"]
        return "\n".join(out) + "\n"
