"""Training throughput, MFU and peak memory of the layer paths and of a plain-PyTorch baseline.

    python benchmarks/gpu_bench.py [--recipe recipes/xmodel2_1p2b.yaml] [--variants ...]
        [--micro-batch-sizes 1 2 4] [--recompute off on] [--grad-accum 8] [--warmup 3]
        [--steps 10] [--peak-tflops 989] [--out runs/gpu_bench] [--override key=value ...]

Variants (each in its own subprocess, so memory, fp8 state and compile caches do not leak):

- ``te-bf16``, ``te-fp8-delayed``, ``te-fp8-tensorwise``: the Transformer Engine spec
  (``model.transformer_impl=transformer_engine``; ``train.fp8_recipe``)
- ``local-sdpa-bf16``: megatron's local spec with the SDPA core attention
- ``hf-granite-eager``, ``hf-granite-compiled``: the same model and µP multipliers as Hugging
  Face Granite (``xm2_megatron.convert.granite.granite_config``) in plain PyTorch: fp32
  weights, bf16 autocast, SDPA attention, fused AdamW; with and without ``torch.compile``

The megatron variants run the trainer's own step (``build_training_state`` with the µP hooks,
then ``train_step``) on synthetic tokens. One step is
``--grad-accum`` micro-batches then one optimizer update; tokens/s is over ``--steps`` timed
steps after ``--warmup``. MFU = tokens/s x ``training_flops_per_token`` (11.13 GFLOP/token
for the 1.2B model at seq 4096) / ``--peak-tflops`` (H100 SXM dense BF16: 989; fp8 runs
are measured against the same bf16 peak). Peak memory: ``torch.cuda.max_memory_allocated``
(on a CPU: the subprocess's peak RSS). Variants that cannot run here (no TE, no GPU for
fp8) are listed as skipped. Writes ``results.json``, ``results.md`` and ``tokens_per_s.png``
under ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("te-bf16", "te-fp8-delayed", "te-fp8-tensorwise", "local-sdpa-bf16",
            "hf-granite-eager", "hf-granite-compiled")
MEGATRON_SETTINGS = {
    "te-bf16": ["model.transformer_impl=transformer_engine", "train.precision=bf16"],
    "te-fp8-delayed": ["model.transformer_impl=transformer_engine", "train.precision=fp8",
                       "train.fp8_recipe=delayed"],
    "te-fp8-tensorwise": ["model.transformer_impl=transformer_engine", "train.precision=fp8",
                          "train.fp8_recipe=tensorwise"],
    "local-sdpa-bf16": ["model.transformer_impl=local", "model.local_attention=sdpa",
                        "train.precision=bf16"],
}


def bench_config(recipe: str, overrides: list[str], micro_batch: int, grad_accum: int,
                 recompute: bool):
    """The recipe on synthetic tokens, one data-parallel rank, no checkpoints or W&B."""
    from xm2_megatron.config import load_config

    return load_config(recipe, [
        "data.kind=synthetic", "checkpoint.dir=null", "logging.wandb_mode=disabled",
        "train.batch_size_schedule=[]", f"train.micro_batch_size={micro_batch}",
        f"train.global_batch_size={micro_batch * grad_accum}",
        f"train.recompute={str(recompute).lower()}", *overrides])


def _unavailable(variant: str) -> str | None:
    import importlib.util

    import torch

    if variant.startswith("te-") and not (torch.cuda.is_available()
                                          and importlib.util.find_spec("transformer_engine")):
        return "skipped: needs a GPU with Transformer Engine"
    return None


def _timed(step, warmup: int, steps: int) -> float:
    """Seconds per step over ``steps`` calls of ``step`` after ``warmup`` untimed ones."""
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def _megatron_step(cfg, grad_accum: int):
    import torch

    from xm2_megatron.data.synthetic import synthetic_batch
    from xm2_megatron.runtime import init_runtime
    from xm2_megatron.training.state import build_training_state
    from xm2_megatron.training.step import train_step

    init_runtime(1, 1, seed=cfg.train.seed, environ={})
    model, optimizer, scheduler = build_training_state(cfg)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    mbs, seq = cfg.train.micro_batch_size, cfg.model.seq_length
    batches = [{k: v.to(device) for k, v in synthetic_batch(
        i * mbs, mbs, seq, cfg.model.vocab_size, cfg.data.seed).items()} for i in range(grad_accum)]
    losses = []
    return (lambda: losses.append(train_step(model, optimizer, scheduler, batches).loss)), losses


def _granite_step(cfg, grad_accum: int, compiled: bool):
    import torch
    from transformers import GraniteForCausalLM

    from xm2_megatron.convert.granite import granite_config

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(cfg.train.seed)
    hf_config = granite_config(cfg.model, cfg.mup)
    hf_config._attn_implementation = "sdpa"
    model = GraniteForCausalLM(hf_config).to(device)
    if cfg.train.recompute:
        model.gradient_checkpointing_enable()
    model.train()
    opt = cfg.optimizer
    optimizer = torch.optim.AdamW(model.parameters(), lr=opt.lr, betas=(opt.adam_beta1, opt.adam_beta2),
                                  eps=opt.adam_eps, weight_decay=opt.weight_decay,
                                  fused=device == "cuda")
    forward = torch.compile(model) if compiled else model
    gen = torch.Generator().manual_seed(cfg.data.seed)
    shape = (grad_accum, cfg.train.micro_batch_size, cfg.model.seq_length)
    tokens = torch.randint(cfg.model.vocab_size, shape, generator=gen).to(device)
    losses = []

    def step():
        total = 0.0
        for micro in tokens:
            with torch.autocast(device, dtype=torch.bfloat16):
                loss = forward(input_ids=micro, labels=micro).loss / grad_accum
            loss.backward()
            total += loss.detach()
        torch.nn.utils.clip_grad_norm_(model.parameters(), opt.clip_grad)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(total))

    return step, losses


def run_one(args, variant: str, micro_batch: int, recompute: bool) -> dict:
    """Build and time one variant in this process; the result row."""
    import torch

    from xm2_megatron.model import training_flops_per_token

    cfg = bench_config(args.recipe, MEGATRON_SETTINGS.get(variant, ["train.precision=bf16"])
                       + args.overrides, micro_batch, args.grad_accum, recompute)
    row = {"variant": variant, "micro_batch": micro_batch, "recompute": recompute,
           "grad_accum": args.grad_accum, "seq_length": cfg.model.seq_length}
    reason = _unavailable(variant)
    if reason:
        return {**row, "status": reason}
    if variant.startswith("hf-"):
        step, losses = _granite_step(cfg, args.grad_accum, variant.endswith("compiled"))
    else:
        step, losses = _megatron_step(cfg, args.grad_accum)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        seconds = _timed(step, args.warmup, args.steps)
    except torch.cuda.OutOfMemoryError:
        return {**row, "status": "OOM"}
    tokens_per_s = micro_batch * args.grad_accum * cfg.model.seq_length / seconds
    flops = training_flops_per_token(cfg.model)
    if torch.cuda.is_available():
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
    else:
        peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return {**row, "status": "ok", "step_s": seconds, "tokens_per_s": tokens_per_s,
            "mfu": tokens_per_s * flops / (args.peak_tflops * 1e12), "flops_per_token": flops,
            "peak_mem_gib": peak_gib, "first_loss": losses[0], "last_loss": losses[-1],
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"}


def _spawn(args, variant: str, micro_batch: int, recompute: bool) -> dict:
    cmd = [sys.executable, __file__, "--worker", json.dumps([variant, micro_batch, recompute]),
           *sys.argv[1:]]
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"variant": variant, "micro_batch": micro_batch, "recompute": recompute,
            "status": f"failed (exit {proc.returncode}): {tail[0][:160]}"}


def table(rows: list[dict]) -> str:
    """Markdown table of the rows, plus the ratios the targets are stated in."""
    lines = ["| variant | micro-batch | recompute | tokens/s | MFU | peak memory GiB | step s | status |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["status"] == "ok":
            lines.append(f"| {r['variant']} | {r['micro_batch']} | {'on' if r['recompute'] else 'off'} "
                         f"| {r['tokens_per_s']:,.0f} | {100 * r['mfu']:.1f}% | {r['peak_mem_gib']:.2f} "
                         f"| {r['step_s']:.3f} | ok |")
        else:
            lines.append(f"| {r['variant']} | {r['micro_batch']} | {'on' if r['recompute'] else 'off'} "
                         f"| | | | | {r['status']} |")
    best = {}
    for r in rows:
        if r["status"] == "ok" and r["tokens_per_s"] > best.get(r["variant"], 0):
            best[r["variant"]] = r["tokens_per_s"]
    lines.append("")
    for num, den in [("te-fp8-delayed", "te-bf16"), ("te-fp8-tensorwise", "te-bf16"),
                     ("te-bf16", "hf-granite-eager"), ("te-bf16", "hf-granite-compiled"),
                     ("local-sdpa-bf16", "hf-granite-eager"), ("te-bf16", "local-sdpa-bf16")]:
        if num in best and den in best:
            lines.append(f"- best {num} / best {den}: {best[num] / best[den]:.2f}x")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if r["status"] == "ok"]
    labels = [f"{r['variant']}\nmbs {r['micro_batch']}{' rc' if r['recompute'] else ''}" for r in ok]
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(ok)), 4))
    ax.bar(range(len(ok)), [r["tokens_per_s"] for r in ok])
    ax.set_xticks(range(len(ok)), labels, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("tokens/s")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "xmodel2_1p2b.yaml"))
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--micro-batch-sizes", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--recompute", nargs="+", choices=("off", "on"), default=["off", "on"])
    parser.add_argument("--grad-accum", type=int, default=8, help="micro-batches per step")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--out", default="runs/gpu_bench")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--override", nargs="+", default=[], dest="overrides",
                        help="dotted recipe overrides, e.g. model.num_layers=4")
    args = parser.parse_args()
    if args.worker:
        variant, micro_batch, recompute = json.loads(args.worker)
        print("RESULT " + json.dumps(run_one(args, variant, micro_batch, recompute)), flush=True)
        return
    rows = []
    for variant in args.variants:
        for micro_batch in args.micro_batch_sizes:
            for recompute in args.recompute:
                started = time.perf_counter()
                row = _spawn(args, variant, micro_batch, recompute == "on")
                row["wall_s"] = time.perf_counter() - started
                rows.append(row)
                print(json.dumps(row), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/gpu_bench.py " + " ".join(sys.argv[1:])
    (out / "results.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))
    text = table(rows)
    (out / "results.md").write_text(f"`{command}`\n\n{text}\n")
    plot(rows, out / "tokens_per_s.png")
    print(text)
    print(f"written: {out}/results.json, results.md, tokens_per_s.png")


if __name__ == "__main__":
    main()
