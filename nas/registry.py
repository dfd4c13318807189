"""One registry shape for everything a plug-in can add: spaces, ops, controllers, evaluators, datasets,
backends, objectives and kinds of run.

A registry maps names to objects. Entries come from two places, and both take the same path:

- entry points: a package declares ``[project.entry-points."nas.spaces"] name = "pkg.module:object"``
  in its ``pyproject.toml``; the first lookup in a registry loads every entry point of its group.
  The engine's own built-ins are declared this way too (see our ``pyproject.toml``).
- ``registry.register(name, obj)`` (or ``@registry.register(name)``) at run time, for notebooks
  and tests.

A name taken twice raises ``ValueError`` (torchvision's ``_api.py``, not timm's silent overwrite);
an unknown name raises ``ValueError`` listing the valid ones. Names come from the entry points'
metadata, and an entry is imported only when it is first looked up, so listing or checking names
(``nas search --help``, settings validation) imports no plug-in and no torch. A plug-in whose
entry point fails to import is reported by name when it is looked up, never silently dropped.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from importlib.metadata import EntryPoint, entry_points
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
        self._declared: dict[str, EntryPoint] = {}  # entry points not imported yet
        self._broken: dict[str, str] = {}  # name -> why it could not be loaded
        self._scanned = False

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
        self._scan()
        if name in self._entries or name in self._declared or name in self._broken:
            raise ValueError(f"a {self.kind} named {name!r} is already registered")
        self._entries[name] = self._prepare(name, obj)
        return obj

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests and notebooks that re-define a plug-in)."""
        for table in (self._entries, self._declared, self._broken):
            table.pop(name, None)

    def get(self, name: str) -> T:
        """The object registered as ``name``; ``ValueError`` listing the valid names otherwise."""
        self._scan()
        if isinstance(name, str) and name in self._declared:
            self._load(name)
        if isinstance(name, str) and name in self._entries:
            return self._entries[name]
        if name in self._broken:
            raise ValueError(f"{self.kind} {name!r} is declared by a plug-in that failed to load: {self._broken[name]}")
        raise ValueError(f"unknown {self.kind} {name!r}; valid: {self.names()}")

    def check(self, path: str, name: object) -> None:
        """``ValueError`` naming ``path`` unless ``name`` is registered or declared (nothing is imported)."""
        if name not in self:
            raise ValueError(f"{path}: unknown {self.kind} {name!r}; valid: {self.names()}")

    def names(self) -> list[str]:
        """Every registered or declared name, sorted (nothing is imported to list them)."""
        self._scan()
        return sorted({*self._entries, *self._declared, *self._broken})

    def items(self) -> list[tuple[str, T]]:
        """Every loadable entry, imported; broken ones are left out (``get`` names them)."""
        for name in list(self._declared):
            self._load(name)
        return sorted(self._entries.items())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, group={self.group!r})"

    def _scan(self) -> None:
        """Read the group's entry points from the installed distributions' metadata (once)."""
        if self._scanned:
            return
        self._scanned = True
        for entry in entry_points(group=self.group):
            if entry.name in self._entries or entry.name in self._broken:
                continue
            if entry.name in self._declared and self._declared[entry.name].value != entry.value:
                first = self._declared.pop(entry.name)
                self._broken[entry.name] = f"declared twice, by {first.value} and {entry.value}"
                continue
            self._declared[entry.name] = entry

    def _load(self, name: str) -> None:
        entry = self._declared.pop(name)
        try:
            self._entries[name] = self._prepare(name, entry.load())
        except Exception as error:
            reason = f"{type(error).__name__}: {error}"
            self._broken[name] = f"{entry.value} ({reason})"
            logger.warning("could not load %s plug-in %r from %s: %s", self.kind, name, entry.value, reason)


def unknown_options(
    factory: Callable[..., Any], options: Iterable[str], fixed: tuple[str, ...]
) -> tuple[list[str], list[str]]:
    """``(unknown, valid)``: the ``options`` a factory's signature does not take, and those it does
    (without the ``fixed`` arguments the engine passes itself). A factory taking ``**kwargs``, or
    without a readable signature, checks its own options: nothing is unknown here."""
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return [], []
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return [], []
    valid = sorted(n for n, p in parameters.items() if n not in fixed and p.kind is not p.VAR_POSITIONAL)
    return sorted(set(options) - set(parameters)), valid


def _space(name: str, obj: Any) -> Any:
    """A space entry may be an instance or a class taking no arguments; its ``name`` must match."""
    space = obj() if isinstance(obj, type) else obj
    if getattr(space, "name", None) != name:
        raise ValueError(f"search space registered as {name!r} calls itself {getattr(space, 'name', None)!r}")
    return space


def _instance(name: str, obj: Any) -> Any:
    """An entry may be an instance or a class taking no arguments (a kind of run)."""
    return obj() if isinstance(obj, type) else obj


def _callable(kind: str) -> Callable[[str, Any], Any]:
    def check(name: str, obj: Any) -> Any:
        if not callable(obj):
            raise ValueError(f"{kind} {name!r}: expected a callable, got {type(obj).__name__}")
        return obj

    return check


# The registries. Their types are given where they are used (nas.space, nas.ops, ...), which
# keeps this module free of imports from the rest of the engine.
spaces: Registry[Any] = Registry("search space", "nas.spaces", _space)
ops: Registry[Callable[..., Any]] = Registry("op", "nas.ops", _callable("op"))
controllers: Registry[Callable[..., Any]] = Registry("controller", "nas.controllers", _callable("controller"))
evaluators: Registry[Callable[..., Any]] = Registry("evaluator", "nas.evaluators", _callable("evaluator"))
datasets: Registry[Callable[..., Any]] = Registry("dataset", "nas.datasets", _callable("dataset"))
backends: Registry[Callable[..., Any]] = Registry("backend", "nas.backends", _callable("backend"))
objectives: Registry[Callable[..., Any]] = Registry("objective", "nas.objectives", _callable("objective"))
runs: Registry[Any] = Registry("kind of run", "nas.runs", _instance)
# Torch-free checks declared beside a dataset or an evaluator, run while settings are validated so that a
# user's mistake is refused before torch is imported: ``check(data_dir, download)`` of a dataset, and
# ``check(space, options)`` of an evaluator's options.
dataset_checks: Registry[Callable[..., Any]] = Registry(
    "dataset check", "nas.dataset_checks", _callable("dataset check")
)
evaluator_options: Registry[Callable[..., Any]] = Registry(
    "evaluator options", "nas.evaluator_options", _callable("evaluator options")
)

ALL: dict[str, Registry[Any]] = {
    r.group: r
    for r in (
        spaces,
        ops,
        controllers,
        evaluators,
        datasets,
        backends,
        objectives,
        runs,
        dataset_checks,
        evaluator_options,
    )
}
