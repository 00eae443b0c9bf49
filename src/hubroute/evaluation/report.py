"""Write a :class:`StreamResult` as ``results.json``, ``results.md`` and PNG plots."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hubroute.evaluation import tables
from hubroute.evaluation.metrics import LEVELS
from hubroute.evaluation.runner import StreamResult

LEVEL_NAMES = {"M": "M-Acc (exact model)", "F": "F-Acc (same family)", "D": "D-Acc (same domain)"}


def matrix_table(result: StreamResult, level: str, k: int = 1) -> str:
    """Markdown table of one accuracy matrix: rows = after learning, columns = evaluated on."""
    names = result.experiences
    m = result.matrix(level, k)
    rows = [[name, *m[t].tolist(), float(np.nanmean(m[t, : t + 1]))] for t, name in enumerate(names)]
    return tables.markdown(["after \\ on", *names, "avg so far"], rows)


def summary_table(results: Sequence[StreamResult], labels: Sequence[str] | None = None) -> str:
    """One row per result: final and stream averages of M/F/D, D forgetting, top-3 D / top-10 M."""
    labels = labels or [r.router for r in results]
    return tables.markdown(tables.SUMMARY_HEADER, tables.summary_rows(results, labels))


def cost_table(result: StreamResult) -> str:
    """Markdown table of fit cost per experience and the routing latency."""
    rows = [
        [
            f.experience,
            f.registry_size,
            f"{f.wall_s:.2f}",
            f"{f.cpu_s:.2f}",
            f"{f.peak_rss_mib:.0f}",
            f"{f.rss_increase_mib:.0f}",
        ]
        for f in result.fits
    ]
    header = ["experience", "models", "fit wall s", "fit CPU s", "peak RSS MiB", "RSS rise MiB"]
    out = tables.markdown(header, rows)
    lat = result.latency
    if lat:
        out += (
            "\n\n"
            f"Routing latency, one prompt a call (n={int(lat['single_n'])}, no embedding cache): "
            f"p50 {lat['single_p50_ms']:.1f} ms, p95 {lat['single_p95_ms']:.1f} ms. "
            f"Batch throughput: {lat['batch_prompts_per_s']:.0f} prompts/s over {int(lat['batch_n'])} prompts."
        )
    return out


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


def plot(result: StreamResult, directory: Path, title: str | None = None) -> list[Path]:
    """Heatmaps of each level's top-1 matrix and per-experience accuracy curves, as PNGs named
    after the router (``title``, default the router's kind). Returns [] when matplotlib (the
    ``plots`` extra) is not installed."""
    from hubroute.extras import available

    if not available("matplotlib"):
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    title = title or result.router
    paths: list[Path] = []
    names = result.experiences
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), sharey=True, layout="constrained")
    for ax, lv in zip(axes, LEVELS, strict=True):
        m = result.matrix(lv)
        im = ax.imshow(m, vmin=0, vmax=100, cmap="viridis")
        for (i, j), v in np.ndenumerate(m):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", color="w" if v < 60 else "k", fontsize=9)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("evaluated on")
        ax.set_title(LEVEL_NAMES[lv])
    axes[0].set_ylabel("after learning")
    fig.colorbar(im, ax=axes, shrink=0.8, label="accuracy %")
    fig.suptitle(f"{title} on {result.stream}: top-1 accuracy after each experience")
    p = directory / "accuracy_heatmap.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5), sharey=True, layout="constrained")
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
    axes[-1].legend(fontsize=8, title="evaluated on", loc="lower left")
    fig.suptitle(f"{title} on {result.stream}: accuracy of each experience as the stream goes on")
    p = directory / "accuracy_curves.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    paths.append(p)
    return paths


def write_report(
    result: StreamResult,
    directory: str | Path,
    *,
    command: str | None = None,
    plots: bool = True,
    title: str | None = None,
) -> list[Path]:
    """Write ``results.json``, ``results.md`` and (``plots``, when matplotlib is installed) the PNGs
    to ``directory``; ``title`` names the router in the plots."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = result.to_dict()
    if command:
        data["command"] = command
    paths = [directory / "results.json", directory / "results.md"]
    paths[0].write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    paths[1].write_text(markdown(result, command), encoding="utf-8")
    if plots:
        paths += plot(result, directory, title)
    return paths
