"""Argument types shared by the command line's subcommands."""

from __future__ import annotations

import argparse


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
