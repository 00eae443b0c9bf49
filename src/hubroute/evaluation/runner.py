"""Run a router along a stream (the CMRBench protocol) and collect every measurement.

After learning experience ``t`` the router routes the eval prompts of experiences ``1..t`` over
all models registered so far (active ones), which fills row ``t`` of the accuracy matrices.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import psutil

from hubroute import progress
from hubroute.encoders import uncached
from hubroute.evaluation.metrics import LEVELS, hits, summarise, topk_accuracy
from hubroute.hub import Stream
from hubroute.routers.base import Router

DEFAULT_KS: tuple[int, ...] = (1, 3, 5, 10)


@dataclass
class FitRecord:
    """Cost of one ``fit``: wall and CPU seconds, peak resident memory and its rise, in MiB."""

    experience: str
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    rss_increase_mib: float
    registry_size: int


@dataclass
class StreamResult:
    """Everything one run measured; ``to_dict`` is what ``results.json`` holds."""

    router: str
    params: dict[str, Any]
    stream: str
    protocol: str
    experiences: list[str]
    ks: list[int]
    seed: int | None
    accuracy: dict[str, dict[str, list[list[float]]]]  # level -> "top{k}" -> T x T matrix
    fits: list[FitRecord]
    latency: dict[str, float] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def matrix(self, level: str = "M", k: int = 1) -> np.ndarray:
        """The ``T x T`` accuracy matrix (percent, NaN above the diagonal)."""
        return np.array(self.accuracy[level][f"top{k}"], dtype=float)

    def summary(self) -> dict[str, dict[str, float]]:
        """Per level: final and stream averages, forgetting and BWT of top-1, and the final
        average of every top-k."""
        out: dict[str, dict[str, float]] = {}
        for level in LEVELS:
            s = summarise(self.matrix(level, 1))
            for k in self.ks:
                s[f"final_top{k}"] = float(np.nanmean(self.matrix(level, k)[-1]))
            out[level] = s
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StreamResult:
        """Rebuild a result from :meth:`to_dict` output (``results.json``)."""
        acc = {
            lv: {k: [[np.nan if x is None else x for x in row] for row in m] for k, m in ks.items()}
            for lv, ks in d["accuracy"].items()
        }
        return cls(
            router=d["router"],
            params=d["params"],
            stream=d["stream"],
            protocol=d["protocol"],
            experiences=d["experiences"],
            ks=d["ks"],
            seed=d["seed"],
            accuracy=acc,
            fits=[FitRecord(**f) for f in d["fits"]],
            latency=d.get("latency", {}),
            environment=d.get("environment", {}),
            notes=d.get("notes", []),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes ``None``)."""
        d = asdict(self)
        d["accuracy"] = {
            lv: {k: [[None if np.isnan(x) else round(x, 4) for x in row] for row in m] for k, m in ks.items()}
            for lv, ks in self.accuracy.items()
        }
        d["summary"] = self.summary()
        return d


class _PeakRSS:
    """Samples this process's resident memory in a thread while a block runs."""

    def __init__(self, interval: float = 0.02):
        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> _PeakRSS:
        self.start = self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def environment() -> dict[str, str]:
    """Versions and machine facts recorded with every result."""
    import torch

    import hubroute

    return {
        "hubroute": hubroute.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": str(psutil.cpu_count()),
        "threads": str(torch.get_num_threads()),
    }


def measure_latency(
    router: Router, prompts: Sequence[str], *, k: int = 5, singles: int = 200, batch: int = 256
) -> dict[str, float]:
    """Per-prompt latency (one prompt a call; p50/p95 in ms over ``singles`` prompts, after a
    warm-up) and batch throughput (prompts/s routing ``batch`` prompts a call over all prompts).

    Embedding caches are bypassed while timing, so every prompt is encoded as in production.
    """
    prompts = list(prompts)
    if not prompts:
        return {}
    with uncached(router):
        return _time_routing(router, prompts, k, singles, batch)


def _time_routing(router: Router, prompts: list[str], k: int, singles: int, batch: int) -> dict[str, float]:
    sample = prompts[:singles]
    router.rank(sample[:2], k)  # warm-up
    times = []
    for p in sample:
        t0 = time.perf_counter()
        router.rank([p], k)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    router.rank(prompts, k, batch_size=batch)
    elapsed = time.perf_counter() - t0
    return {
        "single_p50_ms": float(1000 * np.percentile(times, 50)),
        "single_p95_ms": float(1000 * np.percentile(times, 95)),
        "single_n": float(len(sample)),
        "batch_prompts_per_s": float(len(prompts) / elapsed),
        "batch_n": float(len(prompts)),
    }


def run_stream(
    router: Router,
    stream: Stream,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    seed: int | None = None,
    latency: bool = True,
    on_experience: Callable[[int, Router], None] | None = None,
    label: str | None = None,
) -> StreamResult:
    """Fit ``router`` on each experience in turn and evaluate it on every experience so far.

    Latency is measured after the last experience on the concatenated eval prompts, with
    embedding caches bypassed (:func:`measure_latency`). ``on_experience(t, router)`` runs
    after experience ``t`` is learned and evaluated (``hubroute train`` saves checkpoints there).
    Each fit and evaluation is a :mod:`hubroute.progress` task named after ``label`` (default:
    the router's kind).
    """
    ks = sorted(set(ks))
    kmax = max(ks)
    n = len(stream)
    name = label or router.kind
    acc = {lv: {f"top{k}": np.full((n, n), np.nan) for k in ks} for lv in LEVELS}
    fits: list[FitRecord] = []
    for t, exp in enumerate(stream):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with progress.task(f"{name}: learn {exp.name} ({t + 1}/{n})"), _PeakRSS() as mem:
            router.fit(exp)
        fits.append(
            FitRecord(
                experience=exp.name,
                wall_s=time.perf_counter() - wall0,
                cpu_s=time.process_time() - cpu0,
                peak_rss_mib=mem.peak / 2**20,
                rss_increase_mib=(mem.peak - mem.start) / 2**20,
                registry_size=len(router.registry_),
            )
        )
        examples = [e for j in range(t + 1) for e in stream[j].eval]
        with progress.task(f"{name}: evaluate after {exp.name} ({len(examples)} prompts)", len(examples)) as advance:
            for j in range(t + 1):
                rows = _rank(router, [e.prompt for e in stream[j].eval], kmax, advance)
                h = hits(rows, stream[j].eval, router.registry_)
                for lv in LEVELS:
                    for k in ks:
                        acc[lv][f"top{k}"][t, j] = topk_accuracy(h[lv], k)
        if on_experience:
            on_experience(t, router)
    lat: dict[str, float] = {}
    if latency:
        with progress.task(f"{name}: measure routing latency"):
            lat = measure_latency(router, [e.prompt for exp in stream for e in exp.eval])
    return StreamResult(
        router=router.kind,
        params=router.get_params(),
        stream=stream.name,
        protocol=stream.protocol,
        experiences=[e.name for e in stream],
        ks=list(ks),
        seed=seed,
        accuracy={lv: {k: m.tolist() for k, m in d.items()} for lv, d in acc.items()},
        fits=fits,
        latency=lat,
        environment=environment(),
        notes=list(stream.notes),
    )


def _rank(router: Router, prompts: list[str], k: int, advance: Callable[[int], None], chunk: int = 256) -> np.ndarray:
    """Top-``k`` rows of ``prompts`` in chunks, reporting each chunk."""
    if not prompts:
        return np.zeros((0, k), dtype=np.int64)
    parts = []
    for i in range(0, len(prompts), chunk):
        parts.append(router.rank(prompts[i : i + chunk], k)[0])
        advance(len(prompts[i : i + chunk]))
    return np.concatenate(parts)
