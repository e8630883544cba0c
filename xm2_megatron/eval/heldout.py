"""Loss on held-out text, through the trainer's model or a Hugging Face model.

The text is cut into the same windows for both, so an exported model can be checked number
for number against the checkpoint it came from. Each non-empty line is one document: its
tokens and then the end-of-document id, as ``xm2-preprocess --append-eod`` writes
the training data. Windows of ``seq_length + 1`` tokens do not overlap; the loss is the mean
over every predicted token.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F

from xm2_megatron.data.tokenizer import Tokenizer


def heldout_windows(path: str | Path, tokenizer: Tokenizer, seq_length: int,
                    max_windows: int | None = None) -> torch.Tensor:
    """``[n, seq_length + 1]`` token windows of the text file ``path``."""
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    ids: list[int] = []
    for doc in tokenizer.encode_batch([line for line in lines if line]):
        ids += doc + [tokenizer.eos_id]
    width = seq_length + 1
    count = len(ids) // width if max_windows is None else min(len(ids) // width, max_windows)
    if count == 0:
        raise ValueError(f"{path}: {len(ids)} tokens are fewer than one window of {width}")
    return torch.tensor(ids[:count * width]).view(count, width)


def _batches(windows: torch.Tensor, batch_size: int):
    for start in range(0, len(windows), batch_size):
        batch = windows[start:start + batch_size]
        yield batch[:, :-1], batch[:, 1:]


@torch.no_grad()
def megatron_loss(model: torch.nn.Module, windows: torch.Tensor, batch_size: int = 8) -> float:
    """Mean per-token loss of one megatron ``GPTModel`` (built at TP1/PP1) on ``windows``."""
    model.eval()
    total, count = 0.0, 0
    positions = torch.arange(windows.shape[1] - 1).unsqueeze(0)
    for inputs, labels in _batches(windows, batch_size):
        losses = model(inputs, positions.expand_as(inputs), None, labels=labels)
        total += float(losses.double().sum())
        count += labels.numel()
    return total / count


@torch.no_grad()
def hf_loss(model: torch.nn.Module, windows: torch.Tensor, batch_size: int = 8) -> float:
    """Mean per-token loss of a ``transformers`` causal LM on ``windows``."""
    model.eval()
    total, count = 0.0, 0
    for inputs, labels in _batches(windows, batch_size):
        logits = model(input_ids=inputs, use_cache=False).logits
        losses = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), reduction="none")
        total += float(losses.double().sum())
        count += labels.numel()
    return total / count


@torch.no_grad()
def hf_position_losses(model: torch.nn.Module, windows: torch.Tensor,
                       batch_size: int = 8) -> torch.Tensor:
    """Mean loss at each position of the windows (``[seq_length]``, float64): entry ``t - 1``
    is the loss of predicting a token after ``t`` tokens of context."""
    model.eval()
    total = torch.zeros(windows.shape[1] - 1, dtype=torch.float64)
    for inputs, labels in _batches(windows, batch_size):
        logits = model(input_ids=inputs, use_cache=False).logits
        losses = F.cross_entropy(logits.transpose(1, 2).float(), labels, reduction="none")
        total += losses.double().sum(0)
    return total / len(windows)


def perplexity(loss: float) -> float:
    return math.exp(loss)
