"""Argument types shared by the command line's subcommands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def seconds(value: str) -> float:
    """A duration in seconds, 0 or more (``--timeout``, ``--lock-timeout``)."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def positive_seconds(value: str) -> float:
    """A duration in seconds above 0 (``--interval``: 0 would poll in a tight loop)."""
    number = seconds(value)
    if number == 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return number


def bounded_seconds(
    maximum: float, *, zero_means: str | None = None
) -> Callable[[str], float]:
    """A finite duration in seconds up to ``maximum``; inf, nan and negatives are refused.

    With ``zero_means`` (e.g. "no limit"), 0 is accepted and the help says what it means;
    without it the duration must be above 0.
    """

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
        if not math.isfinite(number):
            raise argparse.ArgumentTypeError(f"not a finite number of seconds: {value!r}")
        if number < 0 or (number == 0 and zero_means is None):
            floor = "0 or more" if zero_means else "more than 0"
            raise argparse.ArgumentTypeError(f"must be {floor}")
        if number > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum:g} seconds")
        return number

    parse.__name__ = "seconds"  # argparse names the type in its messages
    return parse


def count(maximum: int) -> Callable[[str], int]:
    """A whole number from 0 to ``maximum``."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
        if not 0 <= number <= maximum:
            raise argparse.ArgumentTypeError(f"must be from 0 to {maximum}")
        return number

    parse.__name__ = "count"
    return parse
