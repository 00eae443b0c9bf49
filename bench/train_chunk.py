"""CPU cost of a full fine-tuning training step by encoder chunk size and batching.

A training step encodes its batch sorted by length in chunks of
``hubroute.routers.embedding.TRAIN_CHUNK`` prompts, so each chunk pads to its own longest prompt.
This measures process CPU-seconds per step (forward, backward, AdamW) of the embedding router
(all-MiniLM-L6-v2, full fine-tuning, bf16 autocast, full softmax over the registry) for each
chunk size, on two CMRBench training sets: ``mllm`` plus a 10 % random replay of
``apibench-hf`` (long prompts; what CARvE trains on at experience 2) and ``hugging-bench-1``
(short prompts). Each set is cut into batches of 64 two ways: CARvE's domain batches
(:func:`~hubroute.continual.sampler.domain_batches`, 4 domains per batch) and the router's
shuffled, length-grouped batches. It also counts the padded tokens a step encodes. Every
configuration runs the same batches once per round, rounds interleaved; the median round is
reported.

    python bench/train_chunk.py --data ../shared/cmrbench
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch

import hubroute.routers.embedding as embedding
from common import command_line
from hubroute.continual.base import TrainItem
from hubroute.continual.sampler import domain_batches
from hubroute.data.cmrbench import load_cmrbench
from hubroute.routers import EmbeddingRouter
from hubroute.seed import seed_everything

HERE = Path(__file__).resolve().parent


def padded_tokens(router: EmbeddingRouter, items: list[TrainItem], batches: list[list[int]], chunk: int) -> int:
    """Tokens (padding included) the encoder processes for ``batches`` cut in length-sorted chunks."""
    tok = router.st_.tokenizer
    limit = router.st_.max_seq_length
    total = 0
    for b in batches:
        order = sorted(range(len(b)), key=lambda j: len(items[b[j]].example.prompt))  # the router's sort key
        lengths = [min(len(tok(items[b[j]].example.prompt)["input_ids"]), limit) for j in order]
        total += sum(max(lengths[i : i + chunk]) * len(lengths[i : i + chunk]) for i in range(0, len(b), chunk))
    return total


def step_cpu(router: EmbeddingRouter, items: list[TrainItem], batches: list[list[int]]) -> float:
    """Process CPU-seconds per training step over ``batches`` (one optimiser step each)."""
    opt = router._optimizer()
    g = torch.Generator().manual_seed(0)
    t0 = time.process_time()
    for idx in batches:
        loss, _ = router.batch_loss([items[i] for i in idx], g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.process_time() - t0) / len(batches)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(HERE.parents[1] / "shared" / "cmrbench"))
    ap.add_argument("--out", default=str(HERE / "results" / "train_chunk"))
    ap.add_argument("--chunks", type=int, nargs="+", default=[64, 16, 8, 4])
    ap.add_argument("--steps", type=int, default=6, help="Batches timed per configuration and round.")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    seed_everything(0)
    stream = load_cmrbench(args.data, "public")
    exps = {e.name: e for e in stream}
    rng = np.random.default_rng(0)
    api = exps["apibench-hf"].train
    sets = {
        "mllm + 10% apibench-hf": [
            *exps["mllm"].train,
            *(api[i] for i in sorted(rng.choice(len(api), len(api) // 10, replace=False))),
        ],
        "hugging-bench-1": list(exps["hugging-bench-1"].train),
    }
    router = EmbeddingRouter(finetune="full", precision="bf16", loss="full", row_init="card", seed=0)
    router.add_models([c for e in stream for c in e.new_cards], skip_existing=True)
    g = torch.Generator().manual_seed(0)
    configs: list[tuple[str, str, list[TrainItem], list[list[int]]]] = []
    for name, examples in sets.items():
        items = [TrainItem(x) for x in examples]
        dom = domain_batches([x.domain for x in examples], [x.model_id for x in examples], 64, 4, rng)
        shuffled = router.default_batches(items, g)
        for batching, batches in (("domain", dom), ("shuffled", shuffled)):
            full = [b for b in batches if len(b) == 64][: args.steps]  # whole batches only: steps compare
            configs.append((name, batching, items, full))
    times: dict[tuple[str, str, int], list[float]] = {}
    for _ in range(args.rounds):
        for name, batching, items, batches in configs:
            for chunk in args.chunks:
                embedding.TRAIN_CHUNK = chunk
                times.setdefault((name, batching, chunk), []).append(step_cpu(router, items, batches))
    rows = []
    for name, batching, items, batches in configs:
        for chunk in args.chunks:
            rows.append(
                {
                    "set": name,
                    "batching": batching,
                    "chunk": chunk,
                    "cpu_s_per_step": float(np.median(times[(name, batching, chunk)])),
                    "cpu_s_per_step_rounds": times[(name, batching, chunk)],
                    "padded_tokens_per_step": padded_tokens(router, items, batches, chunk) / len(batches),
                }
            )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"command": command_line(), "steps": args.steps, "rounds": args.rounds, "rows": rows}
    (out / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# CPU cost of a full fine-tuning training step by chunk size",
        "",
        f"Command: `{payload['command']}`  ",
        f"all-MiniLM-L6-v2, full fine-tuning, bf16 autocast, batches of 64, {args.steps} steps per "
        f"configuration and round, median of {args.rounds} interleaved rounds; 2 CPU threads.",
        "",
        "| training set | batches | chunk | CPU-s per step | vs chunk 64 | padded tokens per step |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        base = next(
            x["cpu_s_per_step"] for x in rows if (x["set"], x["batching"], x["chunk"]) == (r["set"], r["batching"], 64)
        ) if 64 in args.chunks else r["cpu_s_per_step"]  # fmt: skip
        lines.append(
            f"| {r['set']} | {r['batching']} | {r['chunk']} | {r['cpu_s_per_step']:.2f} | "
            f"{r['cpu_s_per_step'] / base:.2f} | {r['padded_tokens_per_step']:.0f} |"
        )
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
