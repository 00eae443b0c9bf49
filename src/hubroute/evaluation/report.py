"""Write a :class:`StreamResult` as ``results.json``, ``results.md`` and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hubroute.evaluation.metrics import LEVELS
from hubroute.evaluation.runner import StreamResult

LEVEL_NAMES = {"M": "M-Acc (exact model)", "F": "F-Acc (same family)", "D": "D-Acc (same domain)"}


def _fmt(x: float | None) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.1f}"


def matrix_table(result: StreamResult, level: str, k: int = 1) -> str:
    """Markdown table of one accuracy matrix: rows = after learning, columns = evaluated on."""
    names = result.experiences
    m = result.matrix(level, k)
    lines = [
        f"| after \\ on | {' | '.join(names)} | avg so far |",
        "|" + " --- |" * (len(names) + 2),
    ]
    for t, name in enumerate(names):
        row = [_fmt(x) for x in m[t]]
        lines.append(f"| {name} | {' | '.join(row)} | {_fmt(float(np.nanmean(m[t, : t + 1])))} |")
    return "\n".join(lines)


def summary_table(results: Sequence[StreamResult], labels: Sequence[str] | None = None) -> str:
    """One row per result: final and stream averages of M/F/D, D forgetting, top-3/top-10 D."""
    labels = labels or [r.router for r in results]
    head = (
        "| router | M final | F final | D final | M stream | F stream | D stream | "
        "D forgetting | D BWT | top-3 D | top-10 M |"
    )
    lines = [head, "|" + " --- |" * 11]
    for label, r in zip(labels, results, strict=True):
        s = r.summary()
        k3 = "final_top3" if "final_top3" in s["D"] else "final_top1"
        k10 = f"final_top{max(r.ks)}"
        lines.append(
            f"| {label} | {_fmt(s['M']['final_average'])} | {_fmt(s['F']['final_average'])} | "
            f"{_fmt(s['D']['final_average'])} | {_fmt(s['M']['stream_average'])} | "
            f"{_fmt(s['F']['stream_average'])} | {_fmt(s['D']['stream_average'])} | "
            f"{_fmt(s['D']['forgetting'])} | {_fmt(s['D']['bwt'])} | {_fmt(s['D'][k3])} | {_fmt(s['M'][k10])} |"
        )
    return "\n".join(lines)


def cost_table(result: StreamResult) -> str:
    """Markdown table of fit cost per experience and the routing latency."""
    lines = [
        "| experience | models | fit wall s | fit CPU s | peak RSS MiB | RSS rise MiB |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for f in result.fits:
        lines.append(
            f"| {f.experience} | {f.registry_size} | {f.wall_s:.2f} | {f.cpu_s:.2f} | "
            f"{f.peak_rss_mib:.0f} | {f.rss_increase_mib:.0f} |"
        )
    lat = result.latency
    if lat:
        lines += [
            "",
            f"Routing latency, one prompt a call (n={int(lat['single_n'])}, no embedding cache): "
            f"p50 {lat['single_p50_ms']:.1f} ms, p95 {lat['single_p95_ms']:.1f} ms. "
            f"Batch throughput: {lat['batch_prompts_per_s']:.0f} prompts/s over {int(lat['batch_n'])} prompts.",
        ]
    return "\n".join(lines)


def markdown(result: StreamResult, command: str | None = None) -> str:
    """The whole ``results.md`` of one run."""
    out = [f"# {result.router} on {result.stream} ({result.protocol} protocol)", ""]
    if command:
        out += ["Command:", "", f"    {command}", ""]
    out += [f"Parameters: `{json.dumps(result.params, sort_keys=True)}`", "", "## Summary (top-1, %)", ""]
    out += [summary_table([result]), ""]
    for lv in LEVELS:
        out += [f"## {LEVEL_NAMES[lv]}, top-1", "", matrix_table(result, lv), ""]
    out += ["## Cost", "", cost_table(result), ""]
    if result.notes:
        out += ["## Data notes", ""] + [f"- {n}" for n in result.notes] + [""]
    env = ", ".join(f"{k} {v}" for k, v in result.environment.items())
    out += [f"Environment: {env}.", ""]
    return "\n".join(out)


def plot(result: StreamResult, directory: Path) -> list[Path]:
    """Heatmap of each level's top-1 matrix and per-experience accuracy curves, as PNGs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    names = result.experiences
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, lv in zip(axes, LEVELS, strict=True):
        m = result.matrix(lv)
        im = ax.imshow(m, vmin=0, vmax=100, cmap="viridis")
        for (i, j), v in np.ndenumerate(m):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w" if v < 60 else "k", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("evaluated on")
        ax.set_ylabel("after learning")
        ax.set_title(LEVEL_NAMES[lv])
    fig.colorbar(im, ax=axes, shrink=0.8, label="accuracy %")
    p = directory / "accuracy_heatmap.png"
    fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(1, 3, figsize=(15, 4), sharey=True)
    x = np.arange(len(names))
    for ax, lv in zip(axes, LEVELS, strict=True):
        m = result.matrix(lv)
        for j, name in enumerate(names):
            ax.plot(x[j:], m[j:, j], marker="o", label=name)
        ax.set_xticks(x, names, rotation=30, ha="right")
        ax.set_xlabel("after learning")
        ax.set_title(LEVEL_NAMES[lv])
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy %")
    axes[-1].legend(fontsize=8)
    p = directory / "accuracy_curves.png"
    fig.savefig(p, dpi=110, bbox_inches="tight")
    plt.close(fig)
    paths.append(p)
    return paths


def write_report(
    result: StreamResult, directory: str | Path, *, command: str | None = None, plots: bool = True
) -> list[Path]:
    """Write ``results.json``, ``results.md`` and (``plots``) the PNGs to ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    if command:
        data["command"] = command
    paths = [directory / "results.json", directory / "results.md"]
    paths[0].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(result, command), encoding="utf-8")
    if plots:
        paths += plot(result, directory)
    return paths
