"""What every run's settings share: typed fields from flags or a YAML file, checked in one line each.

Settings are validated before anything is built or written, and without torch, so that a
mistake is refused in well under two seconds. A kind of run (``nas.run``) declares its settings
as a dataclass deriving ``RunSettings``: the type of every field (``TYPES``: YAML can hold
anything), the fields a resumed run must share (``IDENTITY``), and how runs recorded by older
versions read (``IDENTITY_DEFAULTS``, ``RENAMED``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from nas import registry
from nas.evaluator import Evaluator, make_evaluator
from nas.registry import Registry
from nas.space import SearchSpace

MAX_SEED = 2**63 - 1  # journals store the seed as a 64-bit integer
MAX_THREADS = 1024
MAX_REPEATS = 1000
DEFAULT_VALIDATION_FRACTION = 0.2  # of the training images, held out to validate candidates


class RunSettings:
    """The settings of one kind of run: ``validate`` (types, then ``check``) and ``identity``."""

    TYPES: ClassVar[Mapping[str, Any]] = {}
    IDENTITY: ClassVar[tuple[str, ...]] = ()
    # Identity settings added after runs were first written: a run that lacks one was made with this value.
    IDENTITY_DEFAULTS: ClassVar[Mapping[str, Any]] = {}
    # Identity settings that were renamed: old name -> name now.
    RENAMED: ClassVar[Mapping[str, str]] = {}
    out: str

    def validate(self) -> None:
        """``ValueError`` naming the first bad setting: its type, then the kind's own ``check``."""
        check_types(self, self.TYPES)
        if not self.out:
            raise ValueError("out: a run directory is required")
        self.check()

    def check(self) -> None:
        """The kind's checks beyond the types."""

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share."""
        values = asdict(self)  # type: ignore[call-overload]
        return {name: values[name] for name in self.IDENTITY}


@dataclass(kw_only=True)
class EvaluationSettings:
    """The evaluator of a run that evaluates candidates, and the data it trains on (``nas search``,
    ``nas scale``): ``evaluator_options`` are the evaluator's own (``epochs`` overrides its training
    length), ``threads`` the intra-op threads of one evaluation (one: proxy networks are too small
    to gain from more)."""

    EVALUATION_TYPES: ClassVar[dict[str, Any]] = {
        "evaluator": str,
        "dataset": str,
        "data_dir": (str, type(None)),
        "download": bool,
        "epochs": (int, type(None)),
        "seed": int,
        "threads": int,
        "evaluator_options": dict,
    }

    evaluator: str = "proxy"
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    epochs: int | None = None
    seed: int = 0
    threads: int = 1
    evaluator_options: dict[str, Any] = field(default_factory=dict)

    def check_evaluation(self) -> None:
        """``ValueError`` naming the first bad evaluation setting (registered names against the registries)."""
        check_registered(self, {"evaluator": registry.evaluators, "dataset": registry.datasets})
        check_counts(self, ("epochs", "threads"))
        check_counts(self, ("threads",), high=MAX_THREADS)
        check_seed(self.seed)
        check_option_names(self, ("evaluator_options",))

    def options_with(self, epochs: int | None) -> dict[str, Any]:
        """The evaluator's options, ``epochs`` (if not None) overriding its training length."""
        return {**self.evaluator_options, **({} if epochs is None else {"epochs": epochs})}

    def build_evaluator(self, space: SearchSpace[Any], epochs: int | None) -> Evaluator[Any]:
        """The registered evaluator of these settings for ``space`` (see ``options_with``)."""
        return self.evaluator_on_data(self.evaluator, space, **self.options_with(epochs))

    def evaluator_on_data(self, name: str, space: SearchSpace[Any], **options: Any) -> Evaluator[Any]:
        """The registered evaluator ``name`` with ``options``, on these settings' data and seed."""
        return make_evaluator(
            name,
            space,
            seed=self.seed,
            dataset=self.dataset,
            data_dir=self.data_dir,
            download=self.download,
            **options,
        )


def check_types(settings: Any, types: Mapping[str, Any]) -> None:
    """``ValueError`` naming the first setting whose value is not of its type in ``types`` (a bool is
    not a number here, though Python says it is; YAML can hold anything)."""
    for name, kind in types.items():
        value = getattr(settings, name)
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            expected = " or ".join(
                "null" if k is type(None) else "a number" if k is float else k.__name__
                for k in kinds
                if not (k is int and float in kinds)
            )
            raise ValueError(f"{name}: expected {expected}, got {value!r}")


def check_counts(settings: Any, names: tuple[str, ...], low: int = 1, high: int | None = None) -> None:
    """``ValueError`` unless each of ``names`` is None or an integer in ``[low, high]``."""
    for name in names:
        value = getattr(settings, name)
        if value is None:
            continue
        if value < low or (high is not None and value > high):
            bound = f"in [{low}, {high}]" if high is not None else ("a positive integer" if low == 1 else f">= {low}")
            raise ValueError(f"{name}: must be {bound}, got {value!r}")


def check_seed(seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed: must be in [0, 2**63 - 1] (journals store it as a 64-bit integer), got {seed}")


def check_registered(settings: Any, registries: Mapping[str, Registry[Any]]) -> None:
    """``ValueError`` unless each setting names an entry of its registry (nothing is imported)."""
    for name, known in registries.items():
        known.check(name, getattr(settings, name))


def check_option_names(settings: Any, names: tuple[str, ...]) -> None:
    """``ValueError`` unless the keys of each mapping setting in ``names`` are strings."""
    for name in names:
        keys = [key for key in getattr(settings, name) if not isinstance(key, str)]
        if keys:
            raise ValueError(f"{name}: option names must be strings, got {keys[0]!r}")


def check_data(dataset: str, data_dir: str | None, download: bool) -> None:
    """The torch-free check a dataset declares (entry-point group ``nas.dataset_checks``), if it declares one:
    a missing or malformed data folder is refused before torch is imported."""
    if dataset in registry.dataset_checks:
        registry.dataset_checks.get(dataset)(data_dir, download)
