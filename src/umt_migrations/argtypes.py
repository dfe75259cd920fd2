"""Argument types shared by the command line's subcommands: bounded, so a typo cannot hang.

A value argparse refuses ends the command with exit 2 and one ``error:`` line naming the
option (:class:`OneLineParser`), before anything is read or applied.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import NoReturn

#: The longest duration ``--lock-timeout``, ``--timeout``, ``--interval`` and
#: ``--operator-grace`` accept: one day, as the operator's ``UMT_OPERATOR_LOCK_TIMEOUT_SECONDS``.
MAX_SECONDS = 86400.0
#: The shortest ``--interval``: anything shorter polls the database in a tight loop.
MIN_INTERVAL = 0.1


def _finite_seconds(value: str, maximum: float) -> float:
    """``value`` as a number of seconds from 0 to ``maximum``; inf, nan and negatives refused."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"not a finite number of seconds: {value!r}")
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    if number > maximum:
        raise argparse.ArgumentTypeError(f"must be at most {maximum:g} seconds")
    return number


def seconds(value: str) -> float:
    """A duration in seconds, from 0 to :data:`MAX_SECONDS` (``--timeout``, ``--lock-timeout``)."""
    return _finite_seconds(value, MAX_SECONDS)


def positive_seconds(value: str) -> float:
    """A pause in seconds, from :data:`MIN_INTERVAL` to :data:`MAX_SECONDS` (``--interval``)."""
    number = seconds(value)
    if number < MIN_INTERVAL:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_INTERVAL:g}: a shorter interval "
                                         "polls the database in a tight loop")
    return number


def bounded_seconds(
    maximum: float, *, zero_means: str | None = None
) -> Callable[[str], float]:
    """A finite duration in seconds up to ``maximum``; inf, nan and negatives are refused.

    With ``zero_means`` (e.g. "no limit"), 0 is accepted and the help says what it means;
    without it the duration must be above 0.
    """

    def parse(value: str) -> float:
        number = _finite_seconds(value, maximum)
        if number == 0 and zero_means is None:
            raise argparse.ArgumentTypeError("must be more than 0")
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


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose refusals are one line (exit 2), like every other error here:
    the usage argparse would print first is one ``--help`` away."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")
