"""The conversion tools' error: one line naming the file or field and what was expected."""

from __future__ import annotations

from xm2_megatron.errors import UserError


class ConversionError(UserError):
    """A checkpoint or Hugging Face folder that cannot be converted (``run_cli`` prints it,
    exit 2); a :class:`~xm2_megatron.errors.UserError`, not a ``ConfigError``."""
