"""The trainer's throughput on CPU against the same model in plain PyTorch (HF Granite).

    python benchmarks/train_bench.py [--recipes nano_6m tiny_54m] [--seq-length 128]
        [--micro-batch 4] [--global-batch 8] [--steps 12] [--warmup 3] [--rounds 2]
        [--doc docs/benchmarks-training.md]

For each recipe, the model shape and µP settings of ``recipes/<name>.yaml`` are trained on
random tokens with the same sequence length and batch (``--global-batch`` sequences per
optimizer step in micro-batches of ``--micro-batch``) two ways, each in a fresh process:

- trainer: ``python -m xm2_megatron.train`` itself (one process, fp32, local layers,
  megatron DDP, the distributed optimizer, µP learning-rate groups, the WSD scheduler,
  gradient clipping); seconds per step from its ``metrics.jsonl``.
- baseline: ``GraniteForCausalLM`` from ``transformers`` built from the same shape and µP
  multipliers (``xm2_megatron.convert.granite.granite_config``), ``torch.optim.AdamW``
  with the same betas and weight decay, gradient accumulation and clipping, timed the same
  way (batch drawn, forward, backward, clip, step).

The first ``--warmup`` steps of each run are left out; tokens/s is the mean over the rest.
The two run alternately ``--rounds`` times (baseline first) so that drift in the machine's
load falls on both; the table gives the best round of each and the ratio baseline / trainer
(the trainer's overhead; the target is at most 1.25). Peak RSS is each process's own
maximum resident set. Prints the table and writes it with the JSON into ``--doc``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _overrides(args) -> list[str]:
    """What turns a recipe into this benchmark's run (both variants read the same values)."""
    return [
        f"model.seq_length={args.seq_length}", "model.transformer_impl=local",
        f"train.steps={args.steps}", f"train.micro_batch_size={args.micro_batch}",
        f"train.global_batch_size={args.global_batch}", "train.batch_size_schedule=[]",
        "train.precision=fp32", "train.log_interval=1", "train.eval_interval=null",
        "data.kind=synthetic", "logging.wandb_mode=disabled", "checkpoint.dir=null",
        "schedule.warmup_steps=2", f"schedule.decay_start={args.steps}",
        "parallel.overlap_grad_reduce=false", "parallel.overlap_param_gather=false",  # one CPU
    ]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_trainer(recipe: Path, args) -> dict:
    """The entry point in this process; per-step seconds from its metrics file."""
    from xm2_megatron.train import main

    with tempfile.TemporaryDirectory() as out:
        with open(os.devnull, "w") as quiet:
            stdout, sys.stdout = sys.stdout, quiet
            try:
                code = main([str(recipe), *_overrides(args), f"logging.output_dir={out}"])
            finally:
                sys.stdout = stdout
        if code != 0:
            raise SystemExit(f"the trainer exited {code}")
        (metrics,) = Path(out).glob("*/metrics.jsonl")
        seconds = [r["seconds"] for r in map(json.loads, metrics.open()) if "loss" in r]
    return {"seconds": seconds}


def run_baseline(recipe: Path, args) -> dict:
    """The same model and batch as ``GraniteForCausalLM`` with ``torch.optim.AdamW``."""
    import torch
    import torch.nn.functional as F
    from transformers import GraniteForCausalLM

    from xm2_megatron.config import load_config
    from xm2_megatron.convert.granite import granite_config

    cfg = load_config(recipe, _overrides(args))
    torch.manual_seed(cfg.train.seed)
    model = GraniteForCausalLM(granite_config(cfg.model, cfg.mup))
    model.train()
    opt = cfg.optimizer
    matrices = [p for p in model.parameters() if p.dim() > 1]
    vectors = [p for p in model.parameters() if p.dim() <= 1]  # norms: no weight decay
    optimizer = torch.optim.AdamW(
        [{"params": matrices}, {"params": vectors, "weight_decay": 0.0}], lr=opt.lr,
        betas=(opt.adam_beta1, opt.adam_beta2), eps=opt.adam_eps, weight_decay=opt.weight_decay)
    vocab, accumulation = cfg.model.vocab_size, args.global_batch // args.micro_batch
    seconds = []
    for _ in range(args.steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for _ in range(accumulation):
            tokens = torch.randint(0, vocab, (args.micro_batch, args.seq_length + 1))
            logits = model(input_ids=tokens[:, :-1]).logits
            loss = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
            (loss / accumulation).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.clip_grad)
        optimizer.step()
        seconds.append(time.perf_counter() - start)
    return {"seconds": seconds}


VARIANTS = {"trainer": run_trainer, "baseline": run_baseline}


def measure(variant: str, recipe: Path, args) -> dict:
    """One variant in a fresh process: tokens/s over the steps after warmup, peak RSS."""
    command = [sys.executable, __file__, "--worker", variant, "--recipes", str(recipe),
               "--seq-length", str(args.seq_length), "--micro-batch", str(args.micro_batch),
               "--global-batch", str(args.global_batch), "--steps", str(args.steps)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"{variant} on {recipe.name} failed:\n{result.stderr[-3000:]}")
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    timed = figures["seconds"][args.warmup:]
    tokens = args.global_batch * args.seq_length
    return {"tokens_per_s": tokens * len(timed) / sum(timed), "peak_rss_mb": figures["peak_rss_mb"],
            "seconds": figures["seconds"]}


def _recipe(name: str) -> Path:
    path = Path(name)
    return path if path.suffix == ".yaml" else REPO / "recipes" / f"{name}.yaml"


def _table(rows: list[dict], args) -> str:
    lines = [
        f"seq {args.seq_length}, {args.global_batch} sequences per step in micro-batches of "
        f"{args.micro_batch}, fp32, {args.steps} steps ({args.warmup} left out), best of "
        f"{args.rounds} alternating rounds; torch threads {rows[0]['threads']}",
        "",
        "| recipe | params | trainer tokens/s | baseline tokens/s | overhead (baseline/trainer) "
        "| trainer peak RSS MB | baseline peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['recipe']} | {r['params'] / 1e6:.2f}M | {r['trainer']['tokens_per_s']:,.0f} "
            f"| {r['baseline']['tokens_per_s']:,.0f} | {r['overhead']:.2f}x "
            f"| {r['trainer']['peak_rss_mb']:,.0f} | {r['baseline']['peak_rss_mb']:,.0f} |")
    return "\n".join(lines)


def _write_doc(doc: Path, table: str, rows: list[dict], command: str) -> None:
    text = doc.read_text() if doc.exists() else f"# Training throughput\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    block = (f"{BEGIN}\n`{command}` on {platform.processor() or platform.machine()}, "
             f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d')}:\n\n{table}\n\n"
             f"<details><summary>JSON</summary>\n\n```json\n{json.dumps(rows, indent=1)}\n```\n"
             f"</details>\n{END}")
    doc.write_text(head + block + tail)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=["nano_6m", "tiny_54m"])
    parser.add_argument("--seq-length", type=int, default=128)
    parser.add_argument("--micro-batch", type=int, default=4)
    parser.add_argument("--global-batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the mean")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks-training.md")
    parser.add_argument("--worker", choices=sorted(VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        figures = VARIANTS[args.worker](_recipe(args.recipes[0]), args)
        print(json.dumps({**figures, "peak_rss_mb": _peak_rss_mb()}))
        return

    import torch

    from xm2_megatron.config import load_config
    from xm2_megatron.model import count_parameters

    rows = []
    for name in args.recipes:
        recipe = _recipe(name)
        cfg = load_config(recipe, _overrides(args))
        runs = {"trainer": [], "baseline": []}
        for round_ in range(args.rounds):
            for variant in ("baseline", "trainer"):
                runs[variant].append(measure(variant, recipe, args))
                print(f"{recipe.stem} round {round_ + 1} {variant}: "
                      f"{runs[variant][-1]['tokens_per_s']:,.0f} tokens/s", flush=True)
        best = {v: max(r, key=lambda m: m["tokens_per_s"]) for v, r in runs.items()}
        rows.append({"recipe": recipe.stem, "params": count_parameters(cfg.model).total,
                     "threads": torch.get_num_threads(), **best,
                     "overhead": best["baseline"]["tokens_per_s"] / best["trainer"]["tokens_per_s"],
                     "rounds": {v: [m["tokens_per_s"] for m in r] for v, r in runs.items()}})
    table = _table(rows, args)
    print(table)
    command = "python benchmarks/train_bench.py " + " ".join(sys.argv[1:])
    _write_doc(args.doc, table, rows, command.strip())
    print(f"written to {args.doc}")


if __name__ == "__main__":
    main()
