"""Names a package imports on first use (PEP 562), so that importing it stays cheap.

``import nas``, ``import controllers`` and ``import evaluators`` must not import torch: the command
line validates a user's input with them. A package lists where each of its public names lives,
and ``exports`` gives it the module-level ``__getattr__`` and ``__dir__`` that import one on demand.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def exports(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` of ``package`` whose name ``n`` is ``names[n]``'s attribute ``n``."""

    def getattr_(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(names[name]), name)
        setattr(sys.modules[package], name, value)  # the next access is a plain attribute
        return value

    def dir_() -> list[str]:
        return sorted(names)

    return getattr_, dir_
