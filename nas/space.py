"""The search-space protocol, the flat decision list every controller works on, and the registry.

A space turns a flat mapping of categorical choices into a typed genotype (``decode``) and back
(``encode``), lowers a genotype to the IR (``lower``) and names its published architectures
(``presets``). Controllers see nothing but ``decisions()``, ``decode``, ``encode`` and ``mutate``,
so random search, evolution and the RNN controller work on every space without space-specific code
(the lesson of NNI's space-agnostic ``ReinforceController``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, runtime_checkable

import numpy as np

from nas import registry
from nas.cell_ir import Network
from nas.registry import Registry

Choice = Hashable
G = TypeVar("G")
G_in = TypeVar("G_in", contravariant=True)  # a genotype a protocol only takes


@dataclass(frozen=True)
class Decision:
    """One categorical decision: a name and the tuple of values it may take."""

    name: str
    choices: tuple[Choice, ...]

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("Decision.name must be a non-empty string")
        if len(self.choices) < 1:
            raise ValueError(f"Decision {self.name!r} has no choices")
        if len(set(self.choices)) != len(self.choices):
            raise ValueError(f"Decision {self.name!r} has duplicate choices: {self.choices}")

    def index(self, value: Choice) -> int:
        """Position of ``value`` among the choices; ``ValueError`` naming the decision if absent."""
        try:
            return self.choices.index(value)
        except ValueError:
            raise ValueError(f"{self.name}: {value!r} is not a valid choice; valid: {list(self.choices)}") from None


@runtime_checkable
class SearchSpace(Protocol[G]):
    """What a search space provides; ``G`` is its genotype class. See ``search_spaces/`` for ours.

    ``proxy_reduction`` holds the keyword arguments of ``lower`` that shrink a candidate for proxy
    training (NASNet: fewer cells and filters; chain spaces: narrower and at a lower resolution).
    The space owns it because only the space knows what can shrink; ``{}`` trains at full size.

    ``lower(genotype, *, num_classes=..., resolution=None, **macro)``: ``num_classes`` has a
    default (reports lower the best genotype without one); a ``resolution`` keyword, if ``lower``
    takes it, receives the input size of the data a proxy evaluator trains on.
    """

    name: str
    genotype_class: type[G]
    proxy_reduction: Mapping[str, Any]

    def decisions(self) -> Sequence[Decision]: ...

    def decode(self, choices: Mapping[str, Choice]) -> G: ...

    def encode(self, genotype: G) -> dict[str, Choice]: ...

    # ``lower(genotype, *, num_classes=..., resolution=None, <the space's own keywords>) -> Network``:
    # each space declares its own keywords, so the protocol types it as any callable giving an IR.
    @property
    def lower(self) -> Callable[..., Network]: ...

    def presets(self) -> dict[str, G]: ...

    def mutate(self, genotype: G, rng: np.random.Generator) -> G: ...

    def genotype_from_dict(self, data: Mapping[str, Any]) -> G: ...


@runtime_checkable
class Scalable(Protocol[G]):
    """A space whose genotypes scale in width, depth and resolution (``nas scale``, ``nas.scaling``).

    ``scale(genotype, *, width, depth, resolution)`` returns the same kind of network with every
    width multiplied by ``width`` (rounded as the space rounds), every stage's depth by ``depth``
    and the input size by ``resolution`` (EfficientNet's compound scaling, arXiv 1905.11946 eq. 3);
    ``ValueError`` if the result leaves the space's bounds.
    """

    def scale(self, genotype: G, *, width: float, depth: float, resolution: float) -> G: ...


@runtime_checkable
class Prunable(Protocol[G]):
    """A space whose channel widths a pruner may shrink (``nas netadapt``, ``nas.spaces.widths``).

    ``prunable_widths(genotype)`` names the widths (each one layer's filters, or a group that must
    shrink together: the blocks a residual connection ties); ``with_widths(genotype, widths)`` is
    the same network with those widths (``ValueError`` if a layer or a residual would change).
    """

    def prunable_widths(self, genotype: G) -> dict[str, int]: ...

    def with_widths(self, genotype: G, widths: Mapping[str, int]) -> G: ...


@runtime_checkable
class Describable(Protocol[G_in]):
    """A space that names an architecture in one line for reports (the block families of a network, say)."""

    def describe(self, genotype: G_in) -> str: ...


@runtime_checkable
class Notated(Protocol[G]):
    """A space whose architectures a benchmark's own notation names in one string.

    ``to_string(genotype)`` writes it (NAS-Bench-201: ``|nor_conv_3x3~0|+|none~0|skip_connect~1|+|...|``,
    arXiv 2001.00326 §2.1) and ``from_string(text)`` reads it back (``ValueError`` naming what is
    wrong): tabular evaluators look rows up by it, and a genotype file may hold it instead of JSON.
    """

    def to_string(self, genotype: G) -> str: ...

    def from_string(self, text: str) -> G: ...


@runtime_checkable
class Canonical(Protocol[G_in]):
    """A space that knows when two genotypes compute the same function (isomorphic cells, dead edges).

    ``canonical(genotype)`` is a string equal for exactly the genotypes of one class (NAS-Bench-201:
    6,466 classes over its 15,625 cells), so controllers need not evaluate a class twice and
    reports can group equal networks. A space without it: every genotype is its own class.
    """

    def canonical(self, genotype: G_in) -> str: ...


def canonical_key(space: SearchSpace[Any], genotype: Any) -> Hashable:
    """The class of ``genotype``: the space's ``canonical`` form if it declares one, else its choices."""
    if isinstance(space, Canonical):
        return space.canonical(genotype)
    return tuple(sorted(space.encode(genotype).items(), key=lambda item: item[0]))


def check_choices(decisions: Sequence[Decision], choices: Mapping[str, Choice]) -> None:
    """Validate a full choice mapping against ``decisions``; the error names the bad key."""
    names = [decision.name for decision in decisions]
    missing = [name for name in names if name not in choices]
    if missing:
        raise ValueError(f"missing decision(s): {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    unknown = sorted(set(choices) - set(names))
    if unknown:
        raise ValueError(f"unknown decision(s): {unknown[:5]}; valid names look like {names[0]!r}")
    for decision in decisions:
        decision.index(choices[decision.name])


def mutate_one_decision(space: SearchSpace[G], genotype: G, rng: np.random.Generator) -> G:
    """Change one decision of ``genotype`` to another of its values (Real et al. 2019, §2).

    Decisions with a single choice cannot change and are never picked, so the result always
    differs from the parent in exactly one decision.
    """
    decisions = [decision for decision in space.decisions() if len(decision.choices) > 1]
    if not decisions:
        raise ValueError(f"space {space.name!r} has no decision with more than one choice")
    choices = space.encode(genotype)
    decision = decisions[int(rng.integers(len(decisions)))]
    current = decision.index(choices[decision.name])
    offset = int(rng.integers(1, len(decision.choices)))
    choices[decision.name] = decision.choices[(current + offset) % len(decision.choices)]
    return space.decode(choices)


def sample_choices(decisions: Sequence[Decision], rng: np.random.Generator) -> dict[str, Choice]:
    """Uniformly random choices for every decision."""
    return {d.name: d.choices[int(rng.integers(len(d.choices)))] for d in decisions}


SPACES: Registry[SearchSpace[Any]] = registry.spaces


def register(space: SearchSpace[Any]) -> SearchSpace[Any]:
    """Add a space instance under its ``name``; a second space under the same name raises ``ValueError``."""
    return SPACES.register(space.name, space)


def get(name: str) -> SearchSpace[Any]:
    """The registered space called ``name``; ``ValueError`` listing the valid names otherwise."""
    return SPACES.get(name)


def names() -> list[str]:
    """Names of every registered space."""
    return SPACES.names()


def lower_keywords(space: SearchSpace[Any]) -> set[str] | None:
    """Keyword arguments of ``space.lower`` (``None`` if it takes ``**macro``: anything goes)."""
    parameters = inspect.signature(space.lower).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY} - {"num_classes"}
