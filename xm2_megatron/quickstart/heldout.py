"""Held-out loss of the quickstart's checkpoints on the validation split of each training
source (the documents megatron's ``data.split`` keeps out of training) and on the Penn
Treebank test text, and its plot against the step with the batch-size change and the decay
start marked (the miniature of the paper's Figure 3)."""

from __future__ import annotations

from pathlib import Path

import torch

from xm2_megatron.config import ExperimentConfig

UNTRAINED = 0  # the step under which the untrained model's losses are kept
SUFFIX = "_text_document"  # xm2-preprocess's prefix ending for the "text" key


def validation_windows(prefix: str, split: str, seq_length: int,
                       max_windows: int) -> torch.Tensor:
    """``[n, seq_length + 1]`` token windows (not overlapping) of the validation documents of
    one indexed dataset, in document order, at most ``max_windows``."""
    from megatron.core.datasets.blended_megatron_dataset_config import (
        convert_split_vector_to_split_matrix,
        parse_and_normalize_split,
    )
    from megatron.core.datasets.indexed_dataset import IndexedDataset

    dataset = IndexedDataset(prefix)
    begin, end = convert_split_vector_to_split_matrix(parse_and_normalize_split(split))[1]
    width, ids = seq_length + 1, []
    # the same document range as megatron's GPTDataset builds for Split.valid
    for doc in range(int(round(begin * len(dataset))), int(round(end * len(dataset)))):
        ids.extend(dataset[doc].tolist())
        if len(ids) >= width * max_windows:
            break
    count = min(len(ids) // width, max_windows)
    if count == 0:
        raise ValueError(f"{prefix}: its validation split ({split}) has {len(ids)} tokens, "
                         f"fewer than one window of {width}")
    return torch.tensor(ids[:count * width]).view(count, width)


def source_windows(cfg: ExperimentConfig, max_windows: int) -> dict[str, torch.Tensor]:
    """Validation windows of every dataset the recipe's stages blend, by source name."""
    from xm2_megatron.data.mixture import stage_blend

    prefixes: dict[str, str] = {}
    for stage in cfg.data.stages.values():
        for prefix in stage_blend(stage, cfg.data.root).prefixes:
            prefixes.setdefault(Path(prefix).name.removesuffix(SUFFIX), prefix)
    return {name: validation_windows(prefix, cfg.data.split, cfg.model.seq_length, max_windows)
            for name, prefix in prefixes.items()}


def checkpoint_losses(cfg: ExperimentConfig, windows: dict[str, torch.Tensor],
                      steps: list[int]) -> dict[int, dict[str, float]]:
    """{step: {set: loss}} of the trainer's own model at each of ``steps``' checkpoints
    (``UNTRAINED``: the recipe's untrained model), each loaded once."""
    from xm2_megatron.checkpoint import load_for_inference, step_dir_name
    from xm2_megatron.eval.heldout import megatron_loss
    from xm2_megatron.runtime import single_process_runtime

    losses = {}
    with single_process_runtime(cfg.train.seed):
        for step in steps:
            path = None if step == UNTRAINED else Path(cfg.checkpoint.dir) / step_dir_name(step)
            model = load_for_inference(path, "fp32", config=cfg).model
            losses[step] = {name: megatron_loss(model, w) for name, w in windows.items()}
            del model
    return losses


def stage_marks(cfg: ExperimentConfig) -> list[tuple[int, str]]:
    """(step, label) of each batch-size change and of the decay start."""
    marks, batch = [], cfg.train.global_batch_size
    for change in cfg.train.batch_size_schedule:
        marks.append((change.step, f"batch {batch} -> {change.global_batch_size}"))
        batch = change.global_batch_size
    return sorted(marks + [(cfg.schedule.decay_start, "decay")])


def plot_heldout(losses: dict[int, dict[str, float]], marks: list[tuple[int, str]],
                 path: Path) -> Path:
    """Held-out loss of each set against the step (the untrained model left out: its loss is
    off the scale), a dashed line at each mark."""
    from xm2_megatron.training.plots import mark_step, step_figure

    fig, ax = step_figure("held-out loss per source (validation splits; PTB: never trained)",
                          "loss")
    steps = sorted(s for s in losses if s != UNTRAINED)
    for name in losses[steps[0]]:
        ax.plot(steps, [losses[s][name] for s in steps], "o-", ms=3, label=name)
    for step, label in marks:
        mark_step(ax, step, label, "schedule-mark")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path
