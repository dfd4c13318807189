"""How an error is quoted in a one-line message."""

from __future__ import annotations


def first_line(error: BaseException, *, with_type: bool = False, limit: int = 300) -> str:
    """The first line of ``error``'s message, at most ``limit`` characters (``Type: line`` with
    ``with_type``), or the type's name for an empty message."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return f"{type(error).__name__}: {lines[0][:limit]}" if with_type else lines[0][:limit]
