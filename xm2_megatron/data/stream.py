"""Each optimizer step's micro-batches for one data-parallel rank, stage by stage.

The position in the data is a function of the step alone: stage ``k`` starts at its
``start_step``, its samples are numbered from 0 within the stage, and every step consumes
``train.global_batch_size_at(step)`` of them (the batch-size schedule). A run resumed at any
step therefore reads exactly what an uninterrupted run reads, and a stage switch neither
repeats nor skips samples of either stage. Each DP rank takes a contiguous block of the
global batch, so the union over ranks does not depend on the layout.
"""

from __future__ import annotations

import torch

from xm2_megatron.config import ExperimentConfig
from xm2_megatron.data.mixture import build_stage_datasets, stage_num_samples, stage_step_ranges
from xm2_megatron.data.synthetic import rank_microbatches

SYNTHETIC_STAGE = "synthetic"


def _collate(samples: list[dict]) -> dict[str, torch.Tensor]:
    """A micro-batch; ``dataset_id`` is each sample's index in its stage's blend."""
    keys = ("tokens", "labels", "loss_mask", "position_ids")
    batch = {key: torch.stack([sample[key] for sample in samples]) for key in keys}
    batch["dataset_id"] = torch.tensor([int(sample["dataset_id"]) for sample in samples])
    return batch


class StageDataStream:
    """Micro-batches of any step for this DP rank; stage datasets are built on first use."""

    def __init__(self, cfg: ExperimentConfig, dp_rank: int, dp_size: int):
        self.cfg, self.dp_rank, self.dp_size = cfg, dp_rank, dp_size
        indexed = cfg.data.kind == "indexed"
        self.ranges = stage_step_ranges(cfg) if indexed else {SYNTHETIC_STAGE: range(cfg.train.steps)}
        self.lengths = stage_num_samples(cfg) if indexed else {}
        self.valid_samples = cfg.train.eval_iters * cfg.train.micro_batch_size * dp_size
        self._datasets: dict[str, tuple] = {}

    def stage_at(self, step: int) -> str:
        """The stage that optimizer step ``step`` belongs to."""
        for name, steps in self.ranges.items():
            if step in steps:
                return name
        raise IndexError(f"step {step} is outside the run's {self.cfg.train.steps} steps")

    def consumed_before(self, step: int) -> dict[str, int]:
        """Samples each stage has consumed before optimizer step ``step``."""
        return {name: self.cfg.train.samples_between(steps.start, min(step, steps.stop))
                for name, steps in self.ranges.items()}

    def microbatches(self, step: int) -> tuple[str, list[dict[str, torch.Tensor]]]:
        """The stage of ``step`` and this rank's micro-batches of its global batch."""
        stage = self.stage_at(step)
        first = self.consumed_before(step)[stage]
        global_batch = self.cfg.train.global_batch_size_at(step)
        micro = self.cfg.train.micro_batch_size
        if stage == SYNTHETIC_STAGE:
            model = self.cfg.model
            return stage, rank_microbatches(first, global_batch, micro, self.dp_rank, self.dp_size,
                                            model.seq_length, model.vocab_size, self.cfg.data.seed)
        dataset = self._datasets_of(stage)[0]
        start = first + self.dp_rank * (global_batch // self.dp_size)
        return stage, self._batches(dataset, start, global_batch // self.dp_size // micro)

    def validation_microbatches(self, stage: str) -> list[dict[str, torch.Tensor]]:
        """This rank's ``train.eval_iters`` held-out micro-batches of ``stage``: the same ones
        at every validation, so the curve compares like with like."""
        micro, iters = self.cfg.train.micro_batch_size, self.cfg.train.eval_iters
        start = self.dp_rank * iters * micro
        if stage == SYNTHETIC_STAGE:  # held out: a seed the training stream never uses
            model = self.cfg.model
            return rank_microbatches(0, self.valid_samples, micro, self.dp_rank, self.dp_size,
                                     model.seq_length, model.vocab_size, self.cfg.data.seed + 1)
        return self._batches(self._datasets_of(stage)[1], start, iters)

    def _batches(self, dataset, start: int, count: int) -> list[dict[str, torch.Tensor]]:
        micro = self.cfg.train.micro_batch_size
        return [_collate([dataset[start + i * micro + j] for j in range(micro)])
                for i in range(count)]

    def _datasets_of(self, stage: str) -> tuple:
        """(train, valid) blended datasets of a stage, built on first use."""
        if stage not in self._datasets:
            self._datasets[stage] = build_stage_datasets(
                self.cfg, stage, self.lengths[stage], self.valid_samples)
        return self._datasets[stage]
