"""Per-key rate limits: a token bucket per API key (or per client address without keys)."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    """``rate`` requests per second on average, ``burst`` at once, per key; ``rate == 0`` is off.

    Buckets of keys not seen for a while are forgotten, so memory stays bounded by the keys
    active in the last ``idle_s`` seconds.
    """

    def __init__(self, rate: float, burst: int, *, idle_s: float = 600.0, clock=time.monotonic):
        self.rate, self.burst, self.idle_s, self.clock = rate, burst, idle_s, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()
        self._last_sweep = clock()

    @property
    def enabled(self) -> bool:
        """Whether a limit applies."""
        return self.rate > 0

    def acquire(self, key: str) -> float:
        """Take one token for ``key``: 0 when the request may go ahead, else the seconds until a
        token is free (the ``Retry-After`` to send)."""
        if not self.enabled:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            if now - self._last_sweep > self.idle_s:
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] <= self.idle_s}
                self._last_sweep = now
        return wait
