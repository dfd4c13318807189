"""How an error is quoted in a one-line message, within one bound.

A message quotes what the user gave (a value from a config, a file's first line), and a value can
be huge (a YAML alias bomb expands a few hundred bytes into megabytes): ``quoted`` shortens a
value's ``repr`` to ``MAX_QUOTED`` characters without building all of it, and ``one_line`` cuts a
whole message to ``MAX_MESSAGE``, the last bound before the command line prints it.
"""

from __future__ import annotations

import reprlib
from typing import Any

MAX_QUOTED = 200  # characters of a user's value an error message quotes
MAX_MESSAGE = 1000  # characters of one error line

_repr = reprlib.Repr()
_repr.maxlevel, _repr.maxlist, _repr.maxdict, _repr.maxtuple, _repr.maxset = 3, 8, 8, 8, 8
_repr.maxstring, _repr.maxother, _repr.maxlong = MAX_QUOTED, MAX_QUOTED, MAX_QUOTED


def quoted(value: Any) -> str:
    """``repr(value)``, at most ``MAX_QUOTED`` characters, computed without expanding a large value."""
    text = _repr.repr(value)
    return text if len(text) <= MAX_QUOTED else text[: MAX_QUOTED - 3] + "..."


def one_line(message: str) -> str:
    """The first line of ``message``, at most ``MAX_MESSAGE`` characters."""
    lines = message.strip().splitlines()
    line = lines[0] if lines else ""
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 20] + " ... (message cut)"


def first_line(error: BaseException, *, with_type: bool = False, limit: int = 300) -> str:
    """The first line of ``error``'s message, at most ``limit`` characters (``Type: line`` with
    ``with_type``), or the type's name for an empty message."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0][:limit]}" if with_type else lines[0][:limit]
