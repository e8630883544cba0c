"""Experiment configuration: typed dataclasses, YAML recipes with ``extends``, dotted overrides.

The recipes ship in the package (``RECIPES_DIR``); ``load_config("cpu_quickstart")`` finds one
by name where no such file exists (``resolve_recipe``, ``packaged_recipes``).
"""

from xm2_megatron.config.loader import (
    RECIPES_DIR,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_yaml,
    load_config,
    packaged_recipes,
    parse_value,
    resolve_recipe,
)
from xm2_megatron.config.checks import ConfigError, ConfigFileNotFoundError
from xm2_megatron.config.data_schema import SFT_CATEGORIES, BlendEntry, DataConfig, StageConfig
from xm2_megatron.config.schema import (
    BatchChange,
    BenchmarksConfig,
    CheckpointConfig,
    ExperimentConfig,
    LoggingConfig,
    ModelConfig,
    MupConfig,
    OptimizerConfig,
    ParallelConfig,
    ScheduleConfig,
    TrainConfig,
)

__all__ = [
    "BatchChange",
    "BenchmarksConfig",
    "BlendEntry",
    "CheckpointConfig",
    "ConfigError",
    "ConfigFileNotFoundError",
    "DataConfig",
    "ExperimentConfig",
    "LoggingConfig",
    "ModelConfig",
    "MupConfig",
    "OptimizerConfig",
    "ParallelConfig",
    "RECIPES_DIR",
    "SFT_CATEGORIES",
    "ScheduleConfig",
    "StageConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_yaml",
    "load_config",
    "packaged_recipes",
    "parse_value",
    "resolve_recipe",
]
