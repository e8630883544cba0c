"""The ``data`` section: synthetic tokens, or stages of indexed-dataset blends with the
decay stage's SFT share."""

from __future__ import annotations

from dataclasses import dataclass, field

from xm2_megatron.config.checks import check as _check
from xm2_megatron.config.checks import non_negative as _non_negative
from xm2_megatron.config.checks import one_of as _one_of
from xm2_megatron.config.checks import positive as _positive

DATA_KINDS = ("synthetic", "indexed")
SFT_CATEGORIES = ("mathematics", "code", "logic", "knowledge", "commonsense")


@dataclass
class BlendEntry:
    """One indexed dataset in a stage's blend."""

    prefix: str  # Megatron dataset prefix (``<prefix>.bin`` / ``<prefix>.idx``), relative to data.root
    weight: float = 1.0  # relative weight within its part of the stage (pretraining, or SFT)
    category: str | None = None  # SFT category (mathematics|code|logic|knowledge|commonsense); None: pretraining


@dataclass
class StageConfig:
    """A training stage (named by its key in ``data.stages``): from ``start_step`` on,
    samples come from this blend."""

    start_step: int = 0  # first optimizer step of the stage
    blend: list[BlendEntry] = field(default_factory=list)
    # share of the stage's samples drawn from the SFT entries (those with a category), e.g. 0.64;
    # inside it the SFT entries' weights set the mix (a category's weight is its entries' sum)
    sft_share: float | None = None

    def validate(self, key: str) -> None:
        _non_negative(key, self, "start_step")
        _check(bool(self.blend), f"{key}.blend=[] must name at least one dataset")
        for i, entry in enumerate(self.blend):
            entry_key = f"{key}.blend[{i}]"
            _check(bool(entry.prefix), f"{entry_key}.prefix='' must not be empty")
            _positive(entry_key, entry, "weight")
            if entry.category is not None:
                _one_of(f"{entry_key}.category", entry.category, SFT_CATEGORIES)
        sft = any(e.category is not None for e in self.blend)
        pretraining = any(e.category is None for e in self.blend)
        if self.sft_share is None:
            _check(not sft, f"{key}.blend has SFT entries (with a category) but {key}.sft_share "
                   "is not set: give the share of samples they take, e.g. 0.64")
            return
        _check(0 < self.sft_share <= 1, f"{key}.sft_share={self.sft_share!r} must be in (0, 1]")
        _check(sft, f"{key}.sft_share={self.sft_share} needs blend entries with a category "
               f"({', '.join(SFT_CATEGORIES)})")
        _check(pretraining or self.sft_share == 1,
               f"{key}.sft_share={self.sft_share} < 1 needs pretraining entries (without a category)")


@dataclass
class DataConfig:
    """Where training tokens come from: a synthetic stream, or stages of indexed-dataset blends."""

    kind: str = "synthetic"  # synthetic (a learnable token stream) | indexed (Megatron .bin/.idx)
    seed: int = 1234  # data order / synthetic-token seed
    root: str = ""  # directory the blend prefixes are relative to ("" = the working directory)
    tokenizer_model: str | None = None  # SentencePiece .model the datasets were made with
    split: str = "99,1,0"  # train,valid,test share of each dataset's documents (Megatron's --split)
    cache_dir: str | None = None  # where megatron caches its sample indices (None: next to the data)
    seq_length: int | None = None  # sample length; None = model.seq_length, never longer
    # stage name -> stage, in order of start_step, the first at step 0 (a mapping, so a recipe
    # that extends another can change one field: data.stages.decay.start_step=900)
    stages: dict[str, StageConfig] = field(default_factory=dict)

    def validate(self) -> None:
        _one_of("data.kind", self.kind, DATA_KINDS)
        _positive("data", self, "seq_length")
        parts = self.split.split(",")
        _check(len(parts) == 3 and all(p.strip().replace(".", "", 1).isdigit() for p in parts)
               and sum(float(p) for p in parts) > 0 and float(parts[0]) > 0,
               f"data.split={self.split!r} must be three non-negative numbers 'train,valid,test' "
               "with a positive train share, e.g. '99,1,0'")
        if self.kind == "indexed":
            _check(bool(self.stages),
                   "data.stages={} must name at least one stage when data.kind='indexed'")
            _check(self.tokenizer_model is not None,
                   "data.tokenizer_model=None must name the SentencePiece model when data.kind='indexed'")
        previous = None
        for name, stage in self.stages.items():
            key = f"data.stages.{name}"
            stage.validate(key)
            if previous is None:
                _check(stage.start_step == 0, f"{key}.start_step={stage.start_step} must be 0: "
                       "the first stage starts the run")
            else:
                _check(stage.start_step > previous[1],
                       f"{key}.start_step={stage.start_step} must be greater than "
                       f"data.stages.{previous[0]}.start_step={previous[1]}: stages are listed in order")
            previous = (name, stage.start_step)
