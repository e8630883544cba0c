"""What the devices can do: the dense BF16 peak FLOP/s of known accelerators (the MFU
denominator) and model FLOPs utilisation."""

from __future__ import annotations

import os

import torch

PEAK_FLOPS_ENV = "XM2_PEAK_FLOPS"

# Dense (no sparsity) BF16 tensor-core peak FLOP/s per device. A device matches the first
# entry whose key is a case-insensitive substring of its name, so specific names come first.
PEAK_BF16_FLOPS: tuple[tuple[str, float], ...] = (
    ("GH200", 989e12),
    ("H200 NVL", 835e12),
    ("H200", 989e12),
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H800", 989e12),
    ("H20", 148e12),
    ("GB200", 2500e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L4", 121e12),
    ("MI300X", 1307e12),
)


def device_name(device: torch.device | str) -> str:
    """A CUDA device's product name, else the device type (``cpu``)."""
    if isinstance(device, str):
        return device
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def device_peak_flops(device: torch.device | str, override: float | None = None) -> float | None:
    """Dense BF16 peak FLOP/s of one device; None on CPU or for a device not in the table.

    ``device`` is a ``torch.device`` (a CUDA one is looked up by its name) or a device name
    such as ``"NVIDIA H100 80GB HBM3"``. ``override``, else the ``XM2_PEAK_FLOPS`` environment
    variable (e.g. ``989e12``), replaces the table.
    """
    if override is None and os.environ.get(PEAK_FLOPS_ENV):
        text = os.environ[PEAK_FLOPS_ENV]
        try:
            override = float(text)
        except ValueError:
            raise ValueError(
                f"{PEAK_FLOPS_ENV}={text!r} must be FLOP/s per device, e.g. 989e12") from None
    if override is not None:
        return override
    name = device_name(device).lower()
    return next((peak for key, peak in PEAK_BF16_FLOPS if key.lower() in name), None)


def mfu(tokens_per_s: float, flops_per_token: float, peak: float | None,
        num_devices: int = 1) -> float | None:
    """Model FLOPs utilisation: achieved model FLOP/s over ``num_devices`` x ``peak``
    (None without a peak)."""
    if peak is None:
        return None
    return tokens_per_s * flops_per_token / (peak * num_devices)


