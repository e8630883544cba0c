"""A Hugging Face Granite or Llama folder -> a trainer checkpoint (step 0) at any TP/PP.

``import_hf("hf/model", "ckpts/model", tensor_parallel=2, pipeline_parallel=2)`` writes
``ckpts/model/iter_0000000``, a model-only checkpoint (no optimizer or scheduler state: the
run that loads it starts both fresh) with the resolved config, through ``save_checkpoint``. The model section comes from ``config.json``; everything else (optimizer,
schedule, data, logging) from a base recipe plus ``key=value`` overrides. The folder appears
only when the whole checkpoint is written.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import AutoConfig

from xm2_megatron.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)
from xm2_megatron.checkpoint import save_checkpoint, single_process_config, step_dir_name
from xm2_megatron.checkpoint.inference import weights_precision
from xm2_megatron.convert.errors import ConversionError
from xm2_megatron.convert.files import check_new_output, new_output_directory
from xm2_megatron.convert.granite import model_fields, mup_fields
from xm2_megatron.convert.weights import check_hf_tensors, hf_to_megatron
from xm2_megatron.model import build_model, padded_vocab_size
from xm2_megatron.runtime import single_process_runtime

DEFAULT_RECIPE = "xmodel2_1p2b"  # a packaged recipe: everything but the model section
_PRECISIONS = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp32"}


def read_hf_config(hf_dir: Path):
    """The folder's ``config.json`` as a transformers config object (offline)."""
    where = hf_dir / "config.json"
    if not where.is_file():
        raise ConversionError(f"{where} does not exist: not a Hugging Face model folder")
    try:
        return AutoConfig.from_pretrained(hf_dir, local_files_only=True)
    except Exception as e:
        raise ConversionError(f"{where} cannot be read: {' '.join(str(e).split())[:300]}") from None


def read_hf_tensors(hf_dir: Path) -> dict[str, torch.Tensor]:
    """Every tensor of ``model.safetensors`` or of the shards its index names."""
    index = hf_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (ValueError, KeyError, AttributeError) as e:
            raise ConversionError(f"{index} is not a safetensors index ({e})") from None
    elif (hf_dir / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise ConversionError(f"{hf_dir} has no model.safetensors (nor model.safetensors.index.json)")
    tensors = {}
    for name in files:
        try:
            tensors.update(load_file(hf_dir / name))
        except FileNotFoundError:
            raise ConversionError(f"{hf_dir / name} is missing (named in {index.name})") from None
        except Exception as e:
            raise ConversionError(f"{hf_dir / name} cannot be read: {' '.join(str(e).split())[:200]}") from None
    return tensors


def _precision(tensors: dict[str, torch.Tensor], where: Path) -> str:
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in _PRECISIONS:
        raise ConversionError(f"{where}: tensors are {', '.join(sorted(map(str, dtypes)))}: expected "
                              "one of float32, bfloat16, float16 throughout")
    return _PRECISIONS[dtypes.pop()]


def import_config(hf, hf_dir: Path, precision: str, tensor_parallel: int, pipeline_parallel: int,
                  recipe: str | Path, overrides: list[str], save: Path) -> ExperimentConfig:
    """The experiment config of an imported model: the recipe, the model and µP sections from
    ``config.json``, the layout, the weights' precision, then the user's overrides."""
    where = str(hf_dir / "config.json")
    model = model_fields(hf, where)
    data = config_to_dict(load_config(recipe))
    data["name"] = hf_dir.resolve().name
    data["model"].update(model, make_vocab_size_divisible_by=1)
    data["mup"].update(mup_fields(hf, model, where))
    data["parallel"].update(tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel)
    data["train"]["precision"] = precision
    data["checkpoint"]["load"] = str(save.resolve())
    try:
        return config_from_dict(apply_overrides(data, overrides), source=f"in the import of {hf_dir}")
    except ConfigError as e:
        raise ConversionError(str(e)) from None


def _load_model(chunk: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    result = chunk.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("_extra_state")]
    if missing or result.unexpected_keys:
        raise ConversionError(f"internal: megatron model and mapped weights differ "
                              f"(missing {missing[:3]}, unexpected {result.unexpected_keys[:3]})")


def import_hf(load: str | Path, save: str | Path, tensor_parallel: int = 1, pipeline_parallel: int = 1,
              recipe: str | Path = DEFAULT_RECIPE, overrides: list[str] = ()) -> Path:
    """Import the HF folder ``load`` into the new checkpoint directory ``save``; returns the
    step folder's final path."""
    hf_dir, save = Path(load), check_new_output(save, "the checkpoint folder")
    if not hf_dir.is_dir():
        raise ConversionError(f"Hugging Face folder {hf_dir} does not exist")
    hf = read_hf_config(hf_dir)
    tensors = read_hf_tensors(hf_dir)
    cfg = import_config(hf, hf_dir, _precision(tensors, hf_dir), tensor_parallel, pipeline_parallel,
                        recipe, list(overrides), save)
    check_hf_tensors(tensors, cfg.model, str(hf_dir))
    m = cfg.model
    rows = padded_vocab_size(m.vocab_size, m.make_vocab_size_divisible_by, tensor_parallel)
    build_cfg = single_process_config(cfg, rows, weights_precision(cfg.train.precision))
    state = hf_to_megatron(tensors, m, rows)
    with new_output_directory(save, "the checkpoint folder") as folder, \
            single_process_runtime(cfg.train.seed):
        chunks = build_model(build_cfg)
        _load_model(chunks[0], state)
        train_state = {"stage": None, "skipped_steps": 0, "consumed_samples": {},
                       "wandb_run_id": None, "imported_from": str(hf_dir.resolve())}
        save_checkpoint(folder, 0, chunks, None, None, train_state, config_to_dict(cfg),
                        keep_last=1)
    return save / step_dir_name(0)
