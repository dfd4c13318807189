"""The zero-cost evaluator's options, declared and checked without torch.

``ZeroCostOptions`` is the one place the options of ``evaluators.zero_cost.ZeroCostEvaluator`` are
written down: which scores to compute (``scores``, default all of ``SCORES``), the network they
score (``size``: the space's proxy network, or its full-size one), the batch the data-dependent
scores see (``batch_size``, NASLib's 64) and the initialisation (``init``: PyTorch's default, as
NASLib scores its networks, or the engine's own ``nas.compile.init_weights``). Keys that are not
options are ``lower`` overrides of the scored network, checked against the space, as the proxy
evaluator's are (``resolution`` of every space, ``C``/``N`` of ``nb201``, ...). ``check`` is
registered in the entry-point group ``nas.evaluator_options``: a bad option is refused while a
run's settings are validated, before torch is imported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from evaluators.proxy_options import ProxyOptions, proxy_reduction
from nas.space import SearchSpace

# The scores, each returned as its own metric (``--objective metric:NAME``); see evaluators.zero_cost.
SCORES: tuple[str, ...] = ("synflow", "nwot", "jacov", "snip", "grad_norm", "plain", "l2_norm", "params", "flops")
DATA_SCORES: frozenset[str] = frozenset({"nwot", "jacov", "snip", "grad_norm", "plain"})  # they read a batch of images
SIZES: tuple[str, ...] = ("proxy", "full")
INITS: tuple[str, ...] = ("pytorch", "engine")
DEFAULT_BATCH_SIZE = 64  # NASLib's zero-cost batch (NAS-Bench-Suite-Zero; Abdelfattah et al. 2021, arXiv 2101.08134 §4)
MAX_BATCH_SIZE = 4096  # nwot and jacov form batch x batch matrices
OPTIONS = ["scores", "size", "batch_size", "init", "<lower overrides: resolution, ...>"]
# The proxy's training options: keys that are neither ours nor lower overrides.
PROXY_ONLY = frozenset(f.name for f in dataclasses.fields(ProxyOptions)) - {"batch_size", "reduction"}


@dataclass(frozen=True)
class ZeroCostOptions:
    """What a zero-cost evaluation computes, every value checked (see the module docstring)."""

    scores: tuple[str, ...] = SCORES
    size: Literal["proxy", "full"] = "proxy"
    batch_size: int = DEFAULT_BATCH_SIZE
    init: Literal["pytorch", "engine"] = "pytorch"
    reduction: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.scores, tuple) or not self.scores:
            raise ValueError(f"scores: expected a non-empty list of score names or 'all', got {self.scores!r}")
        for score in self.scores:
            if score not in SCORES:
                raise ValueError(f"scores: {score!r} is not a zero-cost score; valid: {list(SCORES)} or 'all'")
        if len(set(self.scores)) != len(self.scores):
            raise ValueError(f"scores: {list(self.scores)} names a score twice")
        if self.size not in SIZES:
            raise ValueError(f"size: expected one of {list(SIZES)}, got {self.size!r}")
        if self.init not in INITS:
            raise ValueError(f"init: expected one of {list(INITS)}, got {self.init!r}")
        count = self.batch_size
        if isinstance(count, bool) or not isinstance(count, int) or not 2 <= count <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size: must be an integer in [2, {MAX_BATCH_SIZE}], got {count!r}")

    @property
    def needs_data(self) -> bool:
        """Whether a score reads images (synflow, l2_norm, params and flops do not)."""
        return any(score in DATA_SCORES for score in self.scores)

    def base_reduction(self, space: SearchSpace[Any]) -> dict[str, Any]:
        """The ``lower`` settings of the scored network: the proxy's (or none at full size), then the overrides."""
        base = proxy_reduction(space) if self.size == "proxy" else {}
        return {**base, **self.reduction}

    @classmethod
    def of(cls, space: SearchSpace[Any], options: Mapping[str, Any]) -> ZeroCostOptions:
        """The options in ``options``; the other keys are ``lower`` overrides, checked against ``space``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"reduction"}
        given = {key: value for key, value in options.items() if key in names}
        scores = given.get("scores", SCORES)
        if scores == "all":
            scores = SCORES
        elif isinstance(scores, str):
            scores = (scores,)
        elif isinstance(scores, list):
            scores = tuple(scores)
        given["scores"] = scores
        overrides = {key: value for key, value in options.items() if key not in names}
        for key in overrides:
            if key in PROXY_ONLY:
                raise ValueError(
                    f"{key}: not an option of the zero-cost evaluator (it trains nothing); valid: {OPTIONS}"
                )
        reduction = ProxyOptions.of(space, overrides).reduction  # the proxy's check of lower overrides
        return cls(**given, reduction=reduction)


def check(space: SearchSpace[Any], options: Mapping[str, Any]) -> None:
    """The torch-free check of a run's zero-cost options: every option, and the network they lower."""
    parsed = ZeroCostOptions.of(space, options)
    reduction = parsed.base_reduction(space)
    sample = space.decode({d.name: d.choices[0] for d in space.decisions()})
    try:
        space.lower(sample, num_classes=2, **reduction)
    except (ValueError, TypeError) as error:
        lines = str(error).strip().splitlines()
        raise ValueError(f"zero-cost network {reduction}: {lines[0] if lines else type(error).__name__}") from None
