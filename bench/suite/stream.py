"""Experiments that run routers along the CMRBench stream side by side (kind ``stream``).

A config lists ``[[runs]]``, each a ``label``, a ``router`` (kind or class path) and ``params``,
merged over the config's ``[defaults]`` (tables such as ``training`` merge key by key). Every
run starts from a fresh router with the same seed. ``split = "held-out"`` trains on four fifths
of each val split and evaluates on the rest (for choosing settings); ``"eval"`` is the
CMRBench-public protocol. Optional: ``latency`` (time routing after the stream), ``plot`` (the
label whose heatmap and curves are drawn), ``[[compare]]`` pairs (``a`` against ``b``).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from hubroute.evaluation import tables
from hubroute.evaluation.report import matrix_table, plot
from hubroute.evaluation.runner import StreamResult, run_stream
from hubroute.plugins import accepts
from hubroute.routers import make_router
from hubroute.routers.registry import ROUTERS
from hubroute.seed import seed_everything
from suite.common import Machine, command_line, header, held_out_stream, load_stream, write


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``; nested tables merge key by key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def run(config: dict[str, Any], out: Path, args: Any) -> None:
    """Run the experiment's runs (``args.only`` narrows them; ``args.resume`` keeps finished ones)."""
    stream = load_stream(args.data, config.get("protocol", "public"), args.max_examples)
    if config.get("split", "eval") == "held-out":
        stream = held_out_stream(stream, int(config.get("every", 5)))
    seed = int(config.get("seed", 0))
    ks = tuple(config.get("ks", (1, 3, 10)))
    labels = [r["label"] for r in config["runs"]]
    wanted = args.only or labels
    unknown = sorted(set(wanted) - set(labels))
    if unknown:
        raise SystemExit(f"error: no run(s) {', '.join(map(repr, unknown))}; known: {', '.join(labels)}")
    path = out / "results.json"
    payload: dict[str, Any] = {"command": command_line(), "config": config, "runs": {}}
    if args.resume and path.is_file():
        previous = json.loads(path.read_text())
        payload["runs"] = previous["runs"]
        payload["command"] = previous["command"]
        payload["resumed_by"] = [*previous.get("resumed_by", []), command_line()]
    machine = Machine()
    for spec in config["runs"]:
        label = spec["label"]
        if label not in wanted or label in payload["runs"]:
            continue
        params = merge(config.get("defaults", {}), spec.get("params", {}))
        if getattr(args, "device", None) and accepts(ROUTERS.resolve(spec["router"]), "device"):
            params["device"] = args.device
        seed_everything(seed)
        router = make_router(spec["router"], **params)
        t0 = time.perf_counter()
        res = run_stream(router, stream, ks=ks, seed=seed, latency=bool(config.get("latency", False)))
        wall = time.perf_counter() - t0
        machine.sample()
        payload["runs"][label] = res.to_dict() | {"wall_s": wall, "router_class": spec["router"]}
        s = res.summary()
        print(
            f"{label:55s} M {s['M']['final_average']:5.1f} F {s['F']['final_average']:5.1f} "
            f"D {s['D']['final_average']:5.1f} D-forgetting {s['D']['forgetting']:5.1f} "
            f"fit CPU {sum(f.cpu_s for f in res.fits):7.1f} s  {wall:6.0f} s",
            flush=True,
        )
        payload["machine"] = machine.record()
        write(out, payload, markdown(config, payload))
        if config.get("plot") == label:
            plot(res, out, title=label)
    payload["machine"] = machine.record()
    write(out, payload, markdown(config, payload))


def results_of(payload: dict[str, Any], config: dict[str, Any]) -> dict[str, StreamResult]:
    """The stored results, in config order."""
    order = [r["label"] for r in config["runs"]]
    return {k: StreamResult.from_dict(payload["runs"][k]) for k in order if k in payload["runs"]}


def markdown(config: dict[str, Any], payload: dict[str, Any]) -> str:
    """``results.md``: summary with fit cost and latency, comparisons, each run's D matrix."""
    results = results_of(payload, config)
    lines = header(config["title"], payload)
    if config.get("description"):
        lines += [config["description"].strip(), ""]
    lines += [
        "Top-1 accuracy in %: *final* after the last experience, *stream* each experience right after it was "
        "learned; forgetting and BWT in points. Fit CPU-seconds are process CPU time per experience.",
        "",
    ]
    head = [*tables.SUMMARY_HEADER, "fit CPU s per experience", "fit CPU s"]
    rows = []
    for r, row in zip(results.values(), tables.summary_rows(list(results.values()), list(results)), strict=True):
        cpu = [f.cpu_s for f in r.fits]
        rows.append([*row, " / ".join(f"{c:.1f}" for c in cpu), f"{sum(cpu):.1f}"])
    lines += [tables.markdown(head, rows), ""]
    lat = [(k, r.latency) for k, r in results.items() if r.latency]
    if lat:
        lines += [
            "Routing latency after the stream (one prompt a call, no embedding cache):",
            "",
            tables.markdown(
                ["router", "p50 ms", "p95 ms", "batch prompts/s"],
                [[k, x["single_p50_ms"], x["single_p95_ms"], f"{x['batch_prompts_per_s']:.0f}"] for k, x in lat],
            ),
            "",
        ]
    comparisons = [c for c in config.get("compare", []) if c["a"] in results and c["b"] in results]
    if comparisons:
        lines += ["Comparisons (final averages; forgetting ratio = a's D forgetting / b's):", ""]
        for c in comparisons:
            a, b = results[c["a"]].summary(), results[c["b"]].summary()
            d = {lv: a[lv]["final_average"] - b[lv]["final_average"] for lv in ("M", "F", "D")}
            ratio = a["D"]["forgetting"] / b["D"]["forgetting"] if b["D"]["forgetting"] > 0 else float("nan")
            lines.append(
                f"- {c['a']} vs {c['b']}: M {d['M']:+.1f}, F {d['F']:+.1f}, D {d['D']:+.1f}; "
                f"D forgetting {a['D']['forgetting']:.1f} vs {b['D']['forgetting']:.1f} (ratio {ratio:.2f})"
            )
        lines.append("")
    for label, r in results.items():
        lines += [f"## {label}: D-Acc matrix", "", matrix_table(r, "D"), ""]
    notes = next((r.notes for r in results.values() if r.notes), [])
    if notes:
        lines += ["## Data notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)
