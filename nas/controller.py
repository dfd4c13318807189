"""The controller protocol: ask for a trial, tell its result, save and restore state.

Pull-based, as Optuna's ask/tell: the controller issues trial ids, the caller evaluates and tells.
``ask()`` returns ``None`` while a synchronous controller waits for pending results (an RL batch,
an evolution generation); ``finished`` says when it has nothing more to propose. No sentinels, no
stop-by-exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from nas import registry

if TYPE_CHECKING:
    from nas.space import SearchSpace

G = TypeVar("G")


@dataclass(frozen=True)
class Trial(Generic[G]):
    """One proposed architecture. ``id`` is issued by the controller, counting from 0."""

    id: int
    genotype: G


@dataclass(frozen=True)
class Result:
    """The outcome of evaluating a trial. ``error`` set means the evaluation failed."""

    reward: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def __post_init__(self) -> None:
        if self.error is None and (self.reward is None or not math.isfinite(float(self.reward))):
            raise ValueError(f"a successful Result needs a finite reward, got {self.reward!r}")

    @property
    def failed(self) -> bool:
        return self.error is not None

    @classmethod
    def failure(cls, reason: str, metrics: dict[str, Any] | None = None) -> Result:
        return cls(reward=None, metrics=dict(metrics or {}), error=reason)


@runtime_checkable
class Controller(Protocol[G]):
    """What every controller implements (see ``controllers/``; ``nas.controller_base`` does the bookkeeping)."""

    seed: int

    def ask(self) -> Trial[G] | None: ...

    def tell(self, trial_id: int, result: Result) -> None: ...

    @property
    def finished(self) -> bool: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def split_controller_name(name: str) -> tuple[str, str | None]:
    """``"optuna:TPESampler"`` -> ``("optuna", "TPESampler")``; ``"random"`` -> ``("random", None)``.

    ``ValueError`` for a name that is not a string, or whose base or variant is empty.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"controller: must be a non-empty string, got {name!r}")
    base, colon, variant = name.partition(":")
    if not base or (colon and not variant):
        raise ValueError(f"controller: {name!r} must be a registered name or 'name:variant' (e.g. 'optuna:TPESampler')")
    return base, variant if colon else None


@runtime_checkable
class TakesVariant(Protocol):
    """A controller factory that declares whether a name ``base:variant`` (``optuna:TPESampler``) may name it:
    with ``takes_variant`` it is built with ``variant=...``, and ``check_variant(variant)`` refuses an
    unknown one in one line, importing no torch (``ControllerBase`` declares both: no variants)."""

    takes_variant: bool

    def check_variant(self, variant: str) -> None: ...


def controller_factory(name: str) -> tuple[Callable[..., Any], dict[str, Any]]:
    """The factory of the controller ``name`` and the options its name carries.

    A name ``base:variant`` names the registered controller ``base`` built with
    ``variant="..."`` (``optuna:NSGAIISampler``: the ``optuna`` controller running Optuna's
    NSGA-II sampler); only a factory with a ``variant`` keyword takes one. ``ValueError`` for an
    unknown name (listing the valid ones) or a variant given to a factory that takes none.
    """
    base, variant = split_controller_name(name)
    factory = registry.controllers.get(base)
    if variant is None:
        return factory, {}
    if not (isinstance(factory, TakesVariant) and factory.takes_variant):
        raise ValueError(
            f"controller {base!r} takes no variant (got {name!r}); "
            f"use {base!r} alone, or a controller that does, e.g. 'optuna:TPESampler'"
        )
    return factory, {"variant": variant}


def check_controller_name(name: str) -> None:
    """``ValueError`` (one line, starting ``controller:``) unless ``name`` names a controller.

    For the validation of settings before anything is built: a plain name is checked against the
    registry's entry-point metadata, importing nothing. A ``base:variant`` name also loads the
    factory of ``base`` (ours imports Optuna, not torch) to see that it takes a variant (``TakesVariant``)
    and that the variant is valid (``optuna:NoSuchSampler``
    fails here, before the run directory is touched).
    """
    base, variant = split_controller_name(name)
    registry.controllers.check("controller", base)
    if variant is None:
        return
    try:
        factory, _ = controller_factory(name)
        if isinstance(factory, TakesVariant):  # controller_factory refused one that takes none
            factory.check_variant(variant)
    except ValueError as error:
        message = str(error)
        raise ValueError(message if message.startswith("controller") else f"controller {name!r}: {message}") from None


def make_controller(name: str, space: SearchSpace[G], seed: int = 0, **options: Any) -> Controller[G]:
    """Build the registered controller ``name`` on ``space``; ``options`` go to its factory.

    A factory is called as ``factory(space, seed=seed, **options)``; a name ``base:variant`` (see
    ``controller_factory``) adds ``variant="..."``. ``ValueError`` for an unknown name (listing the
    valid ones), an option the factory does not take (listing those it does), or a ``variant``
    option that contradicts the name, before anything is built.
    """
    factory, from_name = controller_factory(name)
    if "variant" in options and from_name and options["variant"] != from_name["variant"]:
        raise ValueError(f"controller {name!r}: option variant={options['variant']!r} contradicts the name")
    unknown, valid = registry.unknown_options(factory, options, ("space", "seed"))
    if unknown:
        raise ValueError(f"controller {name!r} takes no option {', '.join(map(repr, unknown))}; valid: {valid}")
    return factory(space, seed=seed, **{**options, **from_name})
