"""What every run's settings share: typed fields from flags or a YAML file, checked in one line each.

Settings are validated before anything is built or written, and without torch, so that a
mistake is refused in well under two seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_SEED = 2**63 - 1
MAX_THREADS = 1024
MAX_REPEATS = 1000


def check_types(settings: Any, types: Mapping[str, Any]) -> None:
    """``ValueError`` naming the first setting whose value is not of its type in ``types`` (a bool is
    not a number here, though Python says it is; YAML can hold anything)."""
    for name, kind in types.items():
        value = getattr(settings, name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            expected = " or ".join("null" if k is type(None) else "a number" if k is float else k.__name__
                                   for k in kinds if not (k is int and float in kinds))
            raise ValueError(f"{name}: expected {expected}, got {value!r}")
