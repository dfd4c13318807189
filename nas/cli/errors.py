"""A user's mistake on the command line: one line, exit code 2 (``nas.cli.app.main``)."""

from __future__ import annotations

import argparse

EXIT_USAGE = 2


class UsageError(Exception):
    """A mistake of the user's: reported in one line, exit code 2."""


def positive_int(text: str) -> int:
    """An argparse type: a positive integer, or one line naming the bad value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value
