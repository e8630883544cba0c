"""Config errors and the small checks every section's ``validate`` uses: each raises one
``ConfigError`` naming the dotted field, the bad value and what is allowed."""

from __future__ import annotations

from xm2_megatron.errors import UserError


class ConfigError(UserError):
    """A configuration is malformed or inconsistent; the message names the field."""


class ConfigFileNotFoundError(ConfigError, FileNotFoundError):
    """A recipe (or a file it extends) does not exist."""


def check(ok: bool, msg: str) -> None:
    if not ok:
        raise ConfigError(msg)


def one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
    check(value in allowed, f"{key}={value!r} is not allowed: must be one of {', '.join(allowed)}")


def positive(section: str, obj: object, *names: str) -> None:
    """Each named field must be > 0 (``None`` passes: Optional fields mean 'unset')."""
    for name in names:
        value = getattr(obj, name)
        check(value is None or value > 0, f"{section}.{name}={value!r} must be positive (> 0)")


def non_negative(section: str, obj: object, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        check(value is None or value >= 0, f"{section}.{name}={value!r} must be >= 0")


def divisible(key: str, value: int, by_key: str, by: int, why: str) -> None:
    check(value % by == 0, f"{key}={value} is not divisible by {by_key}={by}: {why}")
