"""Trainer checkpoint (any TP/PP) -> a Hugging Face Granite folder that stock transformers loads.

``export_checkpoint("ckpts/run", "hf/run")`` writes ``config.json`` (``GraniteConfig`` with the
µP multipliers), ``model.safetensors`` (tied embeddings: no ``lm_head``), the tokenizer files
and ``generation_config.json`` into a temporary folder beside ``hf/run`` and renames it into
place at the end, so a failure leaves nothing behind.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import GenerationConfig

from xm2_megatron.checkpoint import checkpoint_config, find_step, load_for_inference
from xm2_megatron.checkpoint.inference import weights_precision
from xm2_megatron.convert.errors import ConversionError
from xm2_megatron.convert.files import check_new_output, new_output_directory
from xm2_megatron.convert.granite import granite_config
from xm2_megatron.convert.tokenizer import write_tokenizer
from xm2_megatron.convert.weights import megatron_to_hf
from xm2_megatron.runtime import single_process_runtime

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def export_checkpoint(load: str | Path, save: str | Path, tokenizer: str | Path | None = None,
                      dtype: str | None = None) -> Path:
    """Export the checkpoint :func:`find_step` picks under ``load`` to the new folder ``save``.

    ``tokenizer`` defaults to the run's ``data.tokenizer_model``; ``dtype`` (fp32 | bf16)
    to the dtype the run kept its weights in. Returns the step folder exported.
    """
    check_new_output(save, "the export folder")
    step = find_step(load)
    cfg = checkpoint_config(step)
    tokenizer = tokenizer or cfg.data.tokenizer_model
    if tokenizer is None:
        raise ConversionError(f"{step}/config.yaml has data.tokenizer_model=null (a synthetic-data "
                              "run): pass the tokenizer model with --tokenizer")
    if not Path(tokenizer).is_file():
        raise ConversionError(f"tokenizer model {tokenizer} does not exist")
    if dtype is not None and dtype not in DTYPES:
        raise ConversionError(f"--dtype {dtype!r} is not allowed: must be one of {', '.join(DTYPES)}")
    precision = weights_precision(cfg.train.precision)
    with single_process_runtime(cfg.train.seed):
        state = load_for_inference(step, precision).state_dict()
    out_dtype = DTYPES[dtype or precision]
    tensors = {name: t.to(out_dtype) for name, t in megatron_to_hf(state, cfg.model).items()}
    hf_config = granite_config(cfg.model, cfg.mup, dtype=out_dtype)
    with new_output_directory(save, "the export folder") as folder:
        hf_config.save_pretrained(folder)
        save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
        write_tokenizer(tokenizer, folder, cfg.model.vocab_size, cfg.model.seq_length)
        GenerationConfig(bos_token_id=hf_config.bos_token_id, eos_token_id=hf_config.eos_token_id,
                         pad_token_id=hf_config.eos_token_id).save_pretrained(folder)
    return step


def granite_model(state: dict[str, torch.Tensor], cfg) -> torch.nn.Module:
    """The ``GraniteForCausalLM`` (fp32, in memory) of a megatron ``GPTModel`` state dict at
    TP1/PP1: what ``export_checkpoint`` would write, without the files."""
    from transformers import GraniteForCausalLM

    tensors = {name: t.float() for name, t in megatron_to_hf(state, cfg.model).items()}
    model = GraniteForCausalLM(granite_config(cfg.model, cfg.mup))
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    missing = [name for name in missing if name != "lm_head.weight" or not cfg.model.tie_embeddings]
    if missing or unexpected:
        raise ConversionError(f"the converted weights do not fit Granite: missing {missing}, "
                              f"unexpected {unexpected}")
    model.tie_weights()
    return model.eval()


def hf_tokenizer(tokenizer_model: str | Path, vocab_size: int, max_length: int):
    """The Hugging Face tokenizer ``export_checkpoint`` writes, loaded from a temporary folder."""
    import tempfile

    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as folder:
        write_tokenizer(tokenizer_model, Path(folder), vocab_size, max_length)
        return AutoTokenizer.from_pretrained(folder)
