"""``nas search``'s settings: every flag and config key, checked without torch, and the run's identity."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from nas import registry
from nas.backend import BACKEND_TYPES, BackendSettings, check_backend_settings
from nas.controller import check_controller_name
from nas.evaluator import check_evaluator_options
from nas.objective import DEFAULT_LATENCY_WEIGHT, TABLE_LATENCY, Objective, check_objective_name, make_objective
from nas.settings import (
    MAX_REPEATS,
    EvaluationSettings,
    RunSettings,
    check_counts,
    check_option_names,
    check_registered,
)
from nas.storage import check_storage

DEFAULT_FINAL_REPEATS = 3
WARM_START_EVALUATOR = "zero-cost"  # the cheap estimator of --warm-start (nas.search.warm_start)
WARM_START_SCORES = ("jacov", "params")  # = nas.search.warm_start.DEFAULT_SCORES (kept torch- and numpy-free here)
# The reward when no objective is named: the validation accuracy, except with the proxy, whose short
# trainings rank by the last epoch's training loss (SoTL-E, Ru et al., arXiv 2006.04492): on CIFAR-10
# against NAS-Bench-201's 200-epoch accuracy it ranked better than the same training's validation
# accuracy at 4 of the 5 proxy settings measured (20 epochs: Spearman 0.91 against 0.51), since a
# training loss averages every training image where the accuracy counts a validation sample.
DEFAULT_OBJECTIVE = "accuracy"
EVALUATOR_OBJECTIVES: dict[str, str] = {"proxy": "metric:final_train_loss:min"}
MAX_STUDY_NAME = 512  # Optuna's studies.study_name column
_OPTIONAL_STR = (str, type(None))
_OPTIONAL_INT = (int, type(None))


@dataclass
class SearchSettings(BackendSettings, EvaluationSettings, RunSettings):
    """Everything ``nas search`` takes (CLI flags or a YAML ``--config``).

    ``evaluator_options`` holds the evaluator's options (for ``proxy``: epochs, batch size, the
    ``lower`` overrides of the proxy network; config files written before it was named read their
    ``proxy:`` key into it); ``threads`` is the intra-op thread count of the evaluations (one: proxy
    networks are too small to gain from more, docs/design.md: the search loop).

    ``repeats`` evaluates every candidate that many times with independent seeds and validation
    splits; its reward is the mean (``nas.evaluator.repeated``). ``budget`` counts candidates, so
    a search costs ``budget * repeats`` evaluations. ``final_top`` > 0 adds the final selection
    stage (``nas.search.final``): the best ``final_top`` candidates are evaluated again,
    ``final_repeats`` times each with fresh seeds and ``final_epochs`` epochs (default: the
    search's), and best.json is the best of that stage.

    ``objective`` names the reward (``nas.objective``): ``accuracy``, ``metric:NAME[:min|max]`` or
    ``mnas``; unset, the evaluator's (``EVALUATOR_OBJECTIVES``, else ``accuracy``). The options of
    ``mnas`` are ``latency_target_ms``, ``latency_weight`` and ``latency_metric``. A metric
    ``latency_ms`` that the evaluator does not return is the registered ``latency`` evaluator's
    lookup-table latency of the full-size network; ``latency`` holds that evaluator's options
    (``table``, ``threads``, ``batch_size``, ``resolution``, ``num_classes``, ``device``).

    Execution (``BackendSettings``): ``backend`` ``local`` evaluates one trial at a time with
    ``threads`` threads; ``ray`` runs ``workers`` at once, each with ``cpus_per_trial`` threads,
    optionally on a cluster (``address``) and with early stopping (``early_stop: asha``).
    """

    TYPES: ClassVar[dict[str, Any]] = {
        "out": str,
        "space": str,
        "controller": str,
        "budget": int,
        "storage": _OPTIONAL_STR,
        "study_name": _OPTIONAL_STR,
        "controller_options": dict,
        "repeats": int,
        "final_top": int,
        "final_epochs": _OPTIONAL_INT,
        "final_repeats": int,
        "objective": str,
        "latency_target_ms": (float, int, type(None)),
        "latency_weight": (float, int),
        "latency_metric": str,
        "latency": dict,
        "warm_start": int,
        "warm_start_top": _OPTIONAL_INT,
        "warm_start_scores": (list, type(None)),
        **BACKEND_TYPES,
        **EvaluationSettings.EVALUATION_TYPES,
    }
    # Settings that define a search; resuming with any of them changed is refused. ``budget`` may
    # grow (continue a search), and data location, storage and threads may change.
    IDENTITY: ClassVar[tuple[str, ...]] = (
        "space",
        "controller",
        "evaluator",
        "dataset",
        "epochs",
        "seed",
        "evaluator_options",
        "controller_options",
        "repeats",
        "objective",
        "latency_target_ms",
        "latency_weight",
        "latency_metric",
        "latency",
        "early_stop",
        "early_stop_options",
        "warm_start",
        "warm_start_top",
        "warm_start_scores",
    )
    IDENTITY_DEFAULTS: ClassVar[dict[str, Any]] = {
        "evaluator": "proxy",
        "repeats": 1,
        "objective": "accuracy",
        "latency_target_ms": None,
        "latency_weight": DEFAULT_LATENCY_WEIGHT,
        "latency_metric": TABLE_LATENCY,
        "latency": {},
        "early_stop": None,
        "early_stop_options": {},
        "warm_start": 0,
        "warm_start_top": None,
        "warm_start_scores": None,
    }
    RENAMED: ClassVar[dict[str, str]] = {"proxy": "evaluator_options"}

    out: str
    space: str = "nasnet"
    controller: str = "reinforce"
    budget: int = 20
    storage: str | None = None
    study_name: str | None = None
    controller_options: dict[str, Any] = field(default_factory=dict)
    repeats: int = 1
    final_top: int = 0
    final_epochs: int | None = None
    final_repeats: int = DEFAULT_FINAL_REPEATS
    objective: str | None = None  # resolved to the evaluator's default when the settings are made
    latency_target_ms: float | None = None
    latency_weight: float = DEFAULT_LATENCY_WEIGHT
    latency_metric: str = TABLE_LATENCY
    latency: dict[str, Any] = field(default_factory=dict)
    warm_start: int = 0
    warm_start_top: int | None = None
    warm_start_scores: list[str] | None = None

    def __post_init__(self) -> None:
        if self.objective is None:
            self.objective = default_objective(self.evaluator)

    def check(self) -> None:
        """``ValueError`` naming the first bad setting; registered names are checked against the registries."""
        check_controller_name(self.controller)  # 'optuna:TPESampler' names the controller 'optuna' with a variant
        check_registered(self, {"space": registry.spaces})
        self.check_evaluation()
        check_option_names(self, ("controller_options", "latency"))
        check_counts(self, ("budget", "repeats", "final_epochs", "final_repeats"))
        check_counts(self, ("repeats", "final_repeats"), high=MAX_REPEATS)
        if self.final_top < 0:
            raise ValueError(f"final_top: must be 0 (no final stage) or a positive integer, got {self.final_top}")
        if not self.final_top and (self.final_epochs is not None or self.final_repeats != DEFAULT_FINAL_REPEATS):
            raise ValueError("final_epochs / final_repeats: they set the final selection stage; add --final-top K")
        if self.storage is not None:
            check_storage(self.storage)
        if self.study_name is not None and not 0 < len(self.study_name) <= MAX_STUDY_NAME:
            raise ValueError(
                f"study_name: 1 to {MAX_STUDY_NAME} characters (Optuna's column), got {len(self.study_name)}"
            )
        check_backend_settings(self)
        if self.early_stop is not None and self.repeats > 1:
            raise ValueError(
                "early_stop: a candidate evaluated --repeats times has no single sequence of epochs "
                "to stop early; use repeats 1"
            )
        self.make_objective()  # its name and options, checked now
        self.check_warm_start()

    def check_warm_start(self) -> None:
        """The warm start's counts, and its scores as options of the ``zero-cost`` evaluator (torch-free)."""
        if self.warm_start < 0:
            raise ValueError(f"warm_start: must be 0 (none) or a number of candidates to score, got {self.warm_start}")
        if not self.warm_start:
            if self.warm_start_top is not None or self.warm_start_scores is not None:
                raise ValueError("warm_start_top / warm_start_scores: they set the warm start; add --warm-start N")
            return
        top = self.warm_start_size()
        if not 1 <= top <= min(self.warm_start, self.budget):
            raise ValueError(
                f"warm_start_top: {top} must be between 1 and the smaller of --warm-start ({self.warm_start}) "
                f"and --budget ({self.budget})"
            )
        scores = self.warm_start_scores
        if scores is not None and (not scores or not all(isinstance(name, str) for name in scores)):
            raise ValueError(f"warm_start_scores: a list of zero-cost score names, got {scores!r}")
        space = registry.spaces.get(self.space)
        check_evaluator_options(WARM_START_EVALUATOR, space, {"scores": self.warm_start_score_names()})

    def warm_start_size(self) -> int:
        """How many of the warm start's candidates the search evaluates first (default: a tenth of the budget)."""
        return self.warm_start_top if self.warm_start_top is not None else max(1, self.budget // 10)

    def warm_start_score_names(self) -> list[str]:
        return list(self.warm_start_scores) if self.warm_start_scores is not None else list(WARM_START_SCORES)

    def make_objective(self) -> Objective:
        """The objective the settings name, with the latency settings as the options of ``mnas``."""
        name = self.objective if self.objective is not None else default_objective(self.evaluator)
        check_objective_name(name)
        if name == "mnas":
            objective = make_objective(
                name,
                target_ms=self.latency_target_ms,
                weight=self.latency_weight,
                latency_metric=self.latency_metric,
            )
        elif (
            self.latency_target_ms is not None
            or self.latency_weight != DEFAULT_LATENCY_WEIGHT
            or self.latency_metric != TABLE_LATENCY
        ):
            raise ValueError(
                "latency_target_ms / latency_weight / latency_metric: they set the latency objective; "
                "add --objective mnas"
            )
        else:
            objective = make_objective(name)
        if self.latency and TABLE_LATENCY not in objective.metrics:
            raise ValueError(
                f"latency: the options of the lookup-table latency ({TABLE_LATENCY}), which objective "
                f"{objective.name!r} does not read; add --objective mnas"
            )
        return objective

    def identity(self) -> dict[str, Any]:
        values = asdict(self)
        values["latency"] = {key: value for key, value in self.latency.items() if key not in ("table", "device")}
        return {key: values[key] for key in self.IDENTITY}


def default_objective(evaluator: Any) -> str:
    """The reward of a search that names none: ``evaluator``'s in ``EVALUATOR_OBJECTIVES``, else the accuracy."""
    return EVALUATOR_OBJECTIVES.get(evaluator, DEFAULT_OBJECTIVE) if isinstance(evaluator, str) else DEFAULT_OBJECTIVE
