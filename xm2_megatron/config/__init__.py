"""Experiment configuration: typed dataclasses, YAML recipes with ``extends``, dotted overrides."""

from xm2_megatron.config.loader import (
    apply_overrides,
    config_from_dict,
    config_to_dict,
    dump_yaml,
    load_config,
    parse_value,
    run_cli,
)
from xm2_megatron.config.schema import (
    BatchChange,
    CheckpointConfig,
    ConfigError,
    ConfigFileNotFoundError,
    DataConfig,
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
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_yaml",
    "load_config",
    "parse_value",
    "run_cli",
]
