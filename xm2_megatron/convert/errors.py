"""The conversion tools' error: one line naming the file or field and what was expected."""

from __future__ import annotations

from xm2_megatron.config import ConfigError


class ConversionError(ConfigError):
    """A checkpoint or Hugging Face folder that cannot be converted (``run_cli`` prints it, exit 2)."""
