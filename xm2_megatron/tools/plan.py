"""Which layouts of a recipe fit N GPUs, their memory per GPU and how long the run takes.

    xm2-plan RECIPE [dotted.key=value ...] --gpus 32 [--gpu-memory 80GB] [--gpu H100]
        [--mfu 0.40 | --tokens-per-gpu-s 9000] [--top 10] [--json plan.json]

The model behind the figures is in docs/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import asdict

from xm2_megatron.cli import run_cli
from xm2_megatron.config import ConfigError, load_config
from xm2_megatron.planning.layouts import candidate_layouts, plan, why_infeasible
from xm2_megatron.planning.memory import GIB

UNITS = {"": GIB, "gib": GIB, "gb": 1e9, "mib": 1024**2, "mb": 1e6}


def parse_memory(text: str) -> float:
    """``80GB`` (10^9 bytes), ``79.6GiB`` or ``80`` (GiB) in bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", text)
    if not match or match.group(2).lower() not in UNITS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a size such as 80GB or 79.6GiB")
    return float(match.group(1)) * UNITS[match.group(2).lower()]


def _row(p) -> str:
    lay, peak = p.layout, max(p.stages, key=lambda s: s.total)
    return (f"{lay.tensor_parallel:>3} {lay.pipeline_parallel:>3} {lay.virtual_pipeline:>2} "
            f"{lay.data_parallel:>4} {lay.micro_batch_size:>4} "
            f"{'yes' if lay.recompute else 'no':>9} {'yes' if lay.distributed_optimizer else 'no':>8} | "
            f"{peak.parameters / GIB:6.1f} {peak.gradients / GIB:6.1f} {peak.optimizer / GIB:6.1f} "
            f"{(peak.activations + peak.output) / GIB:7.1f} {p.peak_bytes / GIB:7.1f} | "
            f"{p.micro_batches:>5} {100 * p.bubble:5.1f}% {p.step_seconds:7.2f} {p.train_hours / 24:7.1f}")


HEADER = (" TP  PP  V   DP  mbs recompute dist-opt |  param   grad  optim  activ   total | "
          "micro bubble  step s    days\n" + " " * 38 + "|" + " (GiB per GPU, busiest stage)"
          .ljust(39) + "|")


def report(args: argparse.Namespace) -> tuple[str, list[dict]]:
    from xm2_megatron.model import padded_vocab_size, training_flops_per_token
    from xm2_megatron.runtime.hardware import device_peak_flops

    cfg = load_config(args.recipe, args.overrides)
    if args.gpus % min(args.gpus, args.gpus_per_node):
        raise ConfigError(f"--gpus {args.gpus} is not whole nodes of {args.gpus_per_node} GPUs")
    flops = training_flops_per_token(cfg.model)
    if args.tokens_per_gpu_s:
        rate, source = args.tokens_per_gpu_s, f"{args.tokens_per_gpu_s:,.0f} tokens/s per GPU (given)"
    else:
        peak = device_peak_flops(args.gpu)
        if peak is None:
            raise ConfigError(f"--gpu {args.gpu}: unknown peak FLOP/s; give --tokens-per-gpu-s")
        rate = args.mfu * peak / flops
        source = f"{rate:,.0f} tokens/s per GPU ({args.mfu:.0%} MFU of {args.gpu}, {flops / 1e9:.2f} GFLOP/token)"
    plans, invalid, too_big = [], 0, 0
    for layout in candidate_layouts(args.gpus, args.gpus_per_node):
        if why_infeasible(cfg, layout, args.gpus_per_node):
            invalid += 1
            continue
        rows = padded_vocab_size(cfg.model.vocab_size, cfg.model.make_vocab_size_divisible_by,
                                 layout.tensor_parallel)
        candidate = plan(cfg, layout, rows, rate)
        if candidate.peak_bytes > args.gpu_memory:
            too_big += 1
            continue
        plans.append(candidate)
    # time first; at equal time (communication is not modelled) the least model parallelism,
    # the largest micro-batch, then the least memory
    plans.sort(key=lambda p: (round(p.train_hours, 6), p.layout.tensor_parallel
                              * p.layout.pipeline_parallel, -p.layout.micro_batch_size,
                              p.peak_bytes))
    lines = [f"{cfg.name} on {args.gpus} GPUs of {args.gpu_memory / GIB:.1f} GiB: {len(plans)} layouts "
             f"fit, {too_big} need more memory, {invalid} are not valid", source, HEADER]
    lines += [_row(p) for p in plans[:args.top]]
    return "\n".join(lines), [asdict(p) | {"peak_bytes": p.peak_bytes, "bubble": p.bubble}
                              for p in plans]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-plan", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", help="recipe YAML file or packaged recipe name")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.micro_batch_size=2")
    parser.add_argument("--gpus", type=int, required=True, help="GPUs in the job")
    parser.add_argument("--gpus-per-node", type=int, default=8)
    parser.add_argument("--gpu-memory", type=parse_memory, default=parse_memory("80GB"),
                        help="usable memory per GPU (default 80GB; leave room for the CUDA "
                             "context and workspaces)")
    parser.add_argument("--gpu", default="H100", help="device name for the peak FLOP/s")
    parser.add_argument("--mfu", type=float, default=0.40, help="model FLOPs utilisation")
    parser.add_argument("--tokens-per-gpu-s", type=float, default=None,
                        help="measured per-GPU throughput (replaces --gpu and --mfu)")
    parser.add_argument("--top", type=int, default=10, help="layouts to print, fastest first")
    parser.add_argument("--json", default=None, help="write every fitting layout here")
    args = parser.parse_args(argv)
    text, plans = run_cli(report, args)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(plans, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
