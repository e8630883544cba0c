"""The quickstart's closing summary: every figure it measured, one line per part."""

from __future__ import annotations


def print_summary(summary: dict) -> None:
    t, h = summary["training"], summary["heldout"]
    before, after = h["before_decay"], h["after_decay"]
    bench = summary["benchmarks"]
    lines = [
        "",
        "Summary",
        "  data        dedup (exact, MinHash) kept " + ", ".join(
            f"{name} {d['kept']:,}/{d['in']:,}" for name, d in summary["dedup"].items())
        + "; indexed tokens " + ", ".join(f"{k} {v:,}" for k, v in summary["dataset_tokens"].items()),
        f"  decontam.   {_decontamination(summary['decontamination'])}",
        f"  tokenizer   {summary['tokenizer']['vocab_size']:,} pieces, "
        f"{summary['tokenizer']['ptb_bytes_per_token']['bytes_per_token']:.2f} bytes/token on PTB test",
        f"  training    {t['steps']} steps, loss {t['first_loss']:.3f} -> {t['last_loss']:.3f}, "
        f"{t['tokens_per_s']:,.0f} tokens/s, decay from step {t['decay_start']} with "
        f"{t['decay_sft_share']:.1%} SFT samples",
        f"  held-out    loss before the decay -> after (validation splits; PTB test never "
        f"trained on; untrained PTB {h['untrained_ptb']:.3f}):",
        *(f"              {name:<16} {before[name]:.3f} -> {after[name]:.3f} "
          f"({after[name] - before[name]:+.3f})" for name in after),
        f"  export      {summary['export']['path']}: PTB loss {h['export_ptb']:.6f}, "
        f"trainer {after['ptb']:.6f} (difference {h['export_minus_trainer']:+.1e})",
        f"  sample      {summary['export']['sample']!r}",
        "  benchmarks  " + (bench["left_out"] if "left_out" in bench else
                            f"first {bench['limit']} items, accuracy %: " + ", ".join(
                                f"{k} {v:.1f}" for k, v in bench["accuracy"].items())),
        f"  plots       {', '.join(t['plots'].values())}, {h['plot']}",
        f"  checkpoints {t['checkpoints']}; metrics {t['metrics']}",
        f"  time        {sum(summary['timings_s'].values()):.0f} s "
        f"({', '.join(f'{k} {v:.0f}' for k, v in summary['timings_s'].items())})",
    ]
    print("\n".join(lines), flush=True)


def _decontamination(found: dict | None) -> str:
    if found is None:
        return "not checked (the evaluation data is not installed)"
    kinds = found["kinds"]
    return (f"demo corpora against {found['items']:,} items of {found['sets']} evaluation sets: "
            "removed " + ", ".join(
                f"{kind} {k['removed']:,}/{k['documents']:,}"
                + (" (" + ", ".join(f"{s} {n}" for s, n in k["found"].items()) + ")"
                   if k["found"] else "") for kind, k in kinds.items())
            + f"; {found['report']}")
