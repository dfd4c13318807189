"""Progress of the evaluation running in this process, for a display that asks for it.

A candidate of a real-size proxy trains for minutes; on a terminal ``nas search`` shows how far it is
(epoch, images per second) under the search's own bar, as ``nas train`` does for its one training.
The display listens (``listening``) around the search; an evaluator ``tell``s as it goes, and nothing
happens when no one listens (scripts, tests, Ray workers in other processes). A context variable,
not a module global: the listener is the caller's, for the extent of its ``with`` block.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator

Listener = Callable[[str, float], None]  # (what is being done, fraction of the candidate done in [0, 1])

_LISTENER: contextvars.ContextVar[Listener | None] = contextvars.ContextVar("nas_progress_listener", default=None)


@contextlib.contextmanager
def listening(listener: Listener | None) -> Iterator[None]:
    """Send what evaluations ``tell`` to ``listener`` within the block (``None``: to no one)."""
    token = _LISTENER.set(listener)
    try:
        yield
    finally:
        _LISTENER.reset(token)


def tell(text: str, fraction: float) -> None:
    """Report progress of the current evaluation to the listener, if any."""
    listener = _LISTENER.get()
    if listener is not None:
        listener(text, fraction)


def listened() -> bool:
    """Whether anyone listens (an evaluator may skip measuring what no one will see)."""
    return _LISTENER.get() is not None
