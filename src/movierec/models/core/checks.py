"""Hyperparameter and argument checks shared by the models: each raises `ConfigError` naming the
parameter, what was expected and what was received ("factors must be an int >= 1, got 0")."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from movierec.errors import ConfigError

__all__ = ["check_diversity", "check_fraction", "check_int", "check_k", "check_number", "is_int",
           "parse_hidden"]


def is_int(value: object) -> bool:
    """True for a Python or numpy int, not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int = 1) -> None:
    """Raise `ConfigError` unless ``value`` is an int (not a bool) >= ``low``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")


def check_number(name: str, value: Any, low: float = 0.0, *, strict: bool = False) -> None:
    """Raise `ConfigError` unless ``value`` is a finite number >= ``low`` (> ``low`` if strict)."""
    ok = (not isinstance(value, bool) and isinstance(value, int | float | np.number)
          and math.isfinite(value) and (value > low if strict else value >= low))
    if not ok:
        raise ConfigError(f"{name} must be a number {'>' if strict else '>='} {low:g}, got {value!r}")


def check_fraction(name: str, value: Any) -> None:
    """Raise `ConfigError` unless ``value`` is a number with 0 <= value < 1."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not 0 <= value < 1:
        raise ConfigError(f"{name} must be a fraction 0 <= x < 1, got {value!r}")


def check_k(k: Any) -> None:
    """Raise `ConfigError` unless ``k`` (a list length) is a whole number >= 1."""
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ConfigError(f"k must be an int >= 1, got {k!r}")


def check_diversity(diversity: Any) -> None:
    """Raise `ConfigError` unless ``diversity`` (the MMR trade-off) lies in 0..1."""
    check_number("diversity", diversity)
    if diversity > 1:
        raise ConfigError(f"diversity must be a number in 0..1, got {diversity!r}")


def parse_hidden(value: Any) -> tuple[int, ...]:
    """``"64,32"``, ``(64, 32)`` or ``64`` -> ``(64, 32)``: the layer sizes of a network's hidden stack.

    Raises:
        ConfigError: anything but one or more ints >= 1.
    """
    try:
        if isinstance(value, str):
            sizes = tuple(int(part) for part in value.replace(" ", "").split(","))
        elif is_int(value):
            sizes = (int(value),)
        else:
            sizes = tuple(value)
            if not all(is_int(s) for s in sizes):
                raise ValueError(value)
            sizes = tuple(int(s) for s in sizes)
    except (TypeError, ValueError):
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"hidden must be layer sizes such as '64,32' (ints >= 1), got {value!r}")
    return sizes
