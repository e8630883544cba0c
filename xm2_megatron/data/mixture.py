"""Stage mixtures: a recipe stage's blend built with megatron-core's blended GPT datasets.

A stage blends pretraining datasets and, in the decay stage, SFT datasets tagged with a
category. Sampling weights (they sum to 1):

- pretraining entry ``i``: ``(1 - sft_share) * w_i / sum(pretraining w)``
- SFT entry ``j`` (one with a category): ``sft_share * w_j / sum(SFT w)``, so a category's
  share of the SFT part is the sum of its entries' weights.

megatron's ``BlendedDataset`` then draws exactly in these proportions (its greedy sampler
keeps every prefix of the sample stream within one sample of the target counts).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.gpt_dataset import GPTDatasetConfig

from xm2_megatron.config import ConfigError, ExperimentConfig, StageConfig
from xm2_megatron.data.checks import check_index, check_vocabulary
from xm2_megatron.data.index_cache import ContentKeyedGPTDataset, check_cache_files
from xm2_megatron.data.preprocess import check_tokenizer
from xm2_megatron.data.tokenizer import Tokenizer


@dataclass(frozen=True)
class StageBlend:
    """A stage's datasets with their effective sampling weights."""

    prefixes: list[str]
    weights: list[float]
    categories: list[str | None]


@dataclass(frozen=True)
class _TokenizerInfo:
    """What megatron's GPTDataset reads of a tokenizer; its identity keys megatron's index cache."""

    vocab_size: int
    eod: int
    sha256: str

    @property
    def unique_identifiers(self) -> dict:
        return {"class": "SentencePiece", "sha256": self.sha256, "vocab_size": self.vocab_size}


def stage_blend(stage: StageConfig, root: str = "") -> StageBlend:
    """Effective weights of a stage's entries (see the module docstring)."""
    share = stage.sft_share or 0.0
    totals = {None: 0.0, "sft": 0.0}
    for entry in stage.blend:
        totals[None if entry.category is None else "sft"] += entry.weight
    weights = [
        (1.0 - share) * e.weight / totals[None] if e.category is None
        else share * e.weight / totals["sft"]
        for e in stage.blend
    ]
    return StageBlend(
        prefixes=[str(Path(root) / e.prefix) if root else e.prefix for e in stage.blend],
        weights=weights,
        categories=[e.category for e in stage.blend],
    )


def stage_step_ranges(cfg: ExperimentConfig) -> dict[str, range]:
    """The optimizer steps of each stage: from its start to the next stage's (or the end)."""
    names = list(cfg.data.stages)
    starts = [cfg.data.stages[name].start_step for name in names] + [cfg.train.steps]
    return {name: range(min(starts[i], cfg.train.steps), min(starts[i + 1], cfg.train.steps))
            for i, name in enumerate(names)}


def stage_num_samples(cfg: ExperimentConfig) -> dict[str, int]:
    """Training samples each stage consumes, following the batch-size schedule."""
    return {name: cfg.train.samples_between(steps.start, steps.stop)
            for name, steps in stage_step_ranges(cfg).items()}


def _tokenizer_info(cfg: ExperimentConfig) -> _TokenizerInfo:
    path = Path(cfg.data.tokenizer_model)
    if not path.is_file():
        raise ConfigError(f"data.tokenizer_model={str(path)!r}: no such file")
    tokenizer = Tokenizer(path)
    return _TokenizerInfo(tokenizer.vocab_size, tokenizer.eos_id, tokenizer.sha256)


def check_stage_files(cfg: ExperimentConfig, stage_name: str, tokenizer: _TokenizerInfo) -> None:
    """Every dataset of the stage exists, was made with the run's tokenizer, whose vocabulary
    fits ``model.vocab_size``, and has a whole ``.idx`` and a ``.bin`` of the size it implies
    (``data.checks``: headers and sizes only, no scan of the tokens)."""
    blend = stage_blend(cfg.data.stages[stage_name], cfg.data.root)
    for i, prefix in enumerate(blend.prefixes):
        key = f"data.stages.{stage_name}.blend[{i}].prefix"
        missing = [s for s in (".bin", ".idx") if not Path(prefix + s).is_file()]
        if missing:
            raise ConfigError(f"{key}={prefix!r}: {' and '.join(prefix + s for s in missing)} "
                              "not found (make it with xm2-preprocess)")
        try:
            meta = check_tokenizer(prefix, tokenizer.sha256)
        except ValueError as error:
            raise ConfigError(f"{key}={prefix!r}: {error}") from None
        check_vocabulary(prefix, meta, cfg.model.vocab_size, cfg.data.tokenizer_model,
                         tokenizer.vocab_size)
        check_index(prefix)


def check_data(cfg: ExperimentConfig) -> None:
    """Every stage's datasets exist, were made with ``data.tokenizer_model``, fit
    ``model.vocab_size`` and are whole (indexed data); the trainer calls it before building
    the model, so a wrong path or a damaged file fails in seconds with one line."""
    if cfg.data.kind != "indexed":
        return
    tokenizer = _tokenizer_info(cfg)
    for name in cfg.data.stages:
        check_stage_files(cfg, name, tokenizer)


def build_stage_datasets(
    cfg: ExperimentConfig, stage_name: str, train_samples: int, valid_samples: int = 0
):
    """megatron ``BlendedDataset``s (train, valid) of one stage, ``train_samples`` long.

    Checks first every dataset of the stage (``check_stage_files``) and its cached indices
    (``index_cache.check_cache_files``); the indices are keyed on each dataset's content.
    Needs ``torch.distributed`` initialised (megatron's blended dataset requires it).
    """
    blend = stage_blend(cfg.data.stages[stage_name], cfg.data.root)
    tokenizer = _tokenizer_info(cfg)
    check_stage_files(cfg, stage_name, tokenizer)
    check_cache_files(blend.prefixes, cfg.data.cache_dir)
    config = GPTDatasetConfig(
        # each stage shuffles with its own seed, so a dataset shared with an earlier stage is
        # not replayed in the same order
        random_seed=cfg.data.seed + list(cfg.data.stages).index(stage_name),
        sequence_length=cfg.data.seq_length or cfg.model.seq_length,
        blend=(blend.prefixes, blend.weights),
        split=cfg.data.split,
        path_to_cache=cfg.data.cache_dir,
        tokenizer=tokenizer,
        reset_position_ids=False,
        reset_attention_mask=False,
        eod_mask_loss=False,
        create_attention_mask=False,
    )
    sizes = [train_samples, valid_samples, 0]
    train, valid, _ = BlendedMegatronDatasetBuilder(
        ContentKeyedGPTDataset, sizes, lambda: True, config
    ).build()
    return train, valid
