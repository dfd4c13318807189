"""One registry shape for everything a plug-in can add: spaces, ops, controllers, evaluators, datasets.

A registry maps names to objects. Entries come from two places, and both take the same path:

- entry points: a package declares ``[project.entry-points."nas.spaces"] name = "pkg.module:object"``
  in its ``pyproject.toml``; the first lookup in a registry loads every entry point of its group.
  The engine's own built-ins are declared this way too (see our ``pyproject.toml``).
- ``registry.register(name, obj)`` (or ``@registry.register(name)``) at run time, for notebooks
  and tests.

A name taken twice raises ``ValueError`` (torchvision's ``_api.py``, not timm's silent overwrite);
an unknown name raises ``ValueError`` listing the valid ones. A plug-in whose entry point fails to
import is reported by name when it is looked up, never silently dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar, overload

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind, filled from the entry-point ``group`` and from ``register``.

    ``prepare`` turns what an entry point loads into the registered object (a space class into an
    instance, say) and may raise ``ValueError`` to refuse it.
    """

    def __init__(self, kind: str, group: str, prepare: Callable[[str, Any], T] | None = None) -> None:
        self.kind, self.group = kind, group
        self._prepare = prepare or (lambda name, obj: obj)
        self._entries: dict[str, T] = {}
        self._broken: dict[str, str] = {}  # entry-point name -> why it could not be loaded
        self._loaded = False

    @overload
    def register(self, name: str) -> Callable[[T], T]: ...

    @overload
    def register(self, name: str, obj: T) -> T: ...

    def register(self, name: str, obj: Any = None) -> Any:
        """Add ``obj`` under ``name``; without ``obj``, a decorator. A taken name raises ``ValueError``."""
        if obj is None:
            return lambda target: self.register(name, target)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{self.kind} name: must be a non-empty string, got {name!r}")
        self._load_entry_points()
        self._add(name, self._prepare(name, obj))
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and notebooks that re-define a plug-in)."""
        self._load_entry_points()
        self._entries.pop(name, None)

    def get(self, name: str) -> T:
        """The object registered as ``name``; ``ValueError`` listing the valid names otherwise."""
        self._load_entry_points()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            pass
        if name in self._broken:
            raise ValueError(f"{self.kind} {name!r} is declared by a plug-in that failed to load: "
                             f"{self._broken[name]}")
        raise ValueError(f"unknown {self.kind} {name!r}; valid: {self.names()}")

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load_entry_points()
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        self._load_entry_points()
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r})"

    def _add(self, name: str, obj: T) -> None:
        if name in self._entries:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self._entries[name] = obj

    def _load_entry_points(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for entry in sorted(entry_points(group=self.group), key=lambda e: e.name):
            try:
                self._add(entry.name, self._prepare(entry.name, entry.load()))
            except Exception as error:  # noqa: BLE001  (one broken plug-in must not break the engine)
                reason = f"{type(error).__name__}: {error}"
                self._broken[entry.name] = f"{entry.value} ({reason})"
                logger.warning("could not load %s plug-in %r from %s: %s", self.kind, entry.name, entry.value, reason)


def _space(name: str, obj: Any) -> Any:
    """A space entry may be an instance or a class taking no arguments; its ``name`` must match."""
    space = obj() if isinstance(obj, type) else obj
    if getattr(space, "name", None) != name:
        raise ValueError(f"search space registered as {name!r} calls itself {getattr(space, 'name', None)!r}")
    return space


def _callable(kind: str) -> Callable[[str, Any], Any]:
    def check(name: str, obj: Any) -> Any:
        if not callable(obj):
            raise ValueError(f"{kind} {name!r}: expected a callable, got {type(obj).__name__}")
        return obj

    return check


# The five registries. Their types are given where they are used (nas.space, nas.ops, ...), which
# keeps this module free of imports from the rest of the engine.
spaces: Registry[Any] = Registry("search space", "nas.spaces", _space)
ops: Registry[Callable[..., Any]] = Registry("op", "nas.ops", _callable("op"))
controllers: Registry[Callable[..., Any]] = Registry("controller", "nas.controllers", _callable("controller"))
evaluators: Registry[Callable[..., Any]] = Registry("evaluator", "nas.evaluators", _callable("evaluator"))
datasets: Registry[Callable[..., Any]] = Registry("dataset", "nas.datasets", _callable("dataset"))

ALL: dict[str, Registry[Any]] = {r.group: r for r in (spaces, ops, controllers, evaluators, datasets)}
