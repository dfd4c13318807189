"""The proxy evaluator's options, declared and checked without torch.

``ProxyOptions`` is the one place the options of ``evaluators.proxy.ProxyEvaluator`` are written
down, with their defaults and ranges: the evaluator is built from it, and ``check`` (registered in
the entry-point group ``nas.evaluator_options``) refuses a bad one while a run's settings are
validated, before torch is imported. Keys that are not options are the ``lower`` overrides of the
proxy network, checked against the space (``num_cells`` of NASNet, ``width_multiplier`` of a chain
space, ``resolution`` of every space).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from nas.recipe import OPTIMIZERS, OptimizerName
from nas.settings import DEFAULT_VALIDATION_FRACTION
from nas.space import SearchSpace, lower_keywords

# Re-derived on CIFAR-10 against NAS-Bench-201's 200-epoch accuracy (benchmarks/nb201_fidelity.py,
# 60 cells): 20 epochs over 500 images a class rank the cells at Spearman 0.91 by the last epoch's
# training loss (the search's default reward with this evaluator) in 36 CPU s; 4 epochs over the
# same images at 0.49, 1 epoch at -0.10. A small image budget trained longer ranks better than a
# large one trained briefly at equal cost (EcoNAS, arXiv 2001.01431, found the same); it caps
# nothing on small data sets (digits: 144 a class).
DEFAULT_EPOCHS = 20
DEFAULT_IMAGES_PER_CLASS = 500
DEFAULT_BATCH_SIZE = 64
DEFAULT_LEARNING_RATE: dict[str, float] = {"sgd": 0.1, "adamw": 2e-3}
DEFAULT_WEIGHT_DECAY: dict[str, float] = {"sgd": 5e-4, "adamw": 0.05}
GRADIENT_CLIP = 5.0  # TF-slim NASNet CIFAR ``clip_gradient_norm``
CALIBRATION_EXAMPLES = 512  # training images that re-estimate the BatchNorm statistics


@dataclass(frozen=True)
class ProxyOptions:
    """How a candidate is trained and validated (``ProxyEvaluator``), every value checked.

    ``time_limit`` is in seconds per candidate; ``"auto"`` scales it with the candidate's proxy
    cost (``evaluators.proxy.auto_time_limit``), ``None`` sets none. ``learning_rate`` and
    ``weight_decay`` ``None``: the optimizer's default. ``gradient_clip`` 0 or ``None``: no clipping.
    ``images_per_class``: train on at most this many images of every class (seeded, stratified, the
    same ones for every candidate: the image budget, one of EcoNAS's fidelity dimensions, arXiv
    2001.01431; default ``DEFAULT_IMAGES_PER_CLASS``); ``None`` trains on all.
    ``validation_images_per_class`` caps the held-out images a candidate is validated on alike (their
    count sets the noise of the accuracy: about sqrt(p (1 - p) / n), 0.5 points at 10,000 images and
    70% accuracy).
    ``channels_last``: the network's weights in channels-last memory order, which oneDNN's CPU
    convolutions run faster (one thread, batch 64, 32 px: NASNet's proxy 1.5x, MobileNetV3's 2.5x,
    NB201's 1.45x the images per second of the default order, ``benchmarks/proxy_throughput.py``);
    the results differ from the default order's in the last bits only.
    ``reduction``: ``lower`` overrides on top of ``space.proxy_reduction``.
    """

    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    optimizer: OptimizerName = "sgd"
    learning_rate: float | None = None
    weight_decay: float | None = None
    time_limit: float | Literal["auto"] | None = "auto"
    device: Any = "cpu"
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    gradient_clip: float | None = GRADIENT_CLIP
    drop_path: bool = False
    calibration_examples: int = CALIBRATION_EXAMPLES
    full_cost: bool = False
    images_per_class: int | None = DEFAULT_IMAGES_PER_CLASS
    validation_images_per_class: int | None = None
    channels_last: bool = True
    reduction: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction: must be in (0, 1), got {self.validation_fraction!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown optimizer {self.optimizer!r}; valid: {list(OPTIMIZERS)}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        limit = self.time_limit
        if limit != "auto" and limit is not None and (isinstance(limit, (str, bool)) or not limit > 0):
            raise ValueError(f"time_limit: must be a positive number of seconds, 'auto' or None, got {limit!r}")
        for name in ("learning_rate", "weight_decay", "gradient_clip"):
            _check_number(name, getattr(self, name))
        if self.gradient_clip is not None and self.gradient_clip < 0:
            raise ValueError(f"gradient_clip: must be >= 0 (0 or null: no clipping), got {self.gradient_clip!r}")
        for name in ("drop_path", "full_cost", "channels_last"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: expected true or false, got {getattr(self, name)!r}")
        for name in ("images_per_class", "validation_images_per_class"):
            cap = getattr(self, name)
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int) or cap < 1):
                raise ValueError(f"{name}: must be a positive integer or null (every image), got {cap!r}")
        count = self.calibration_examples
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"calibration_examples: must be a non-negative integer, got {count!r}")
        if not (self.rate > 0 and self.decay >= 0):
            raise ValueError(f"learning_rate must be > 0 and weight_decay >= 0, got {self.rate!r}, {self.decay!r}")

    @property
    def rate(self) -> float:
        """The learning rate, the optimizer's default unless given."""
        return DEFAULT_LEARNING_RATE[self.optimizer] if self.learning_rate is None else float(self.learning_rate)

    @property
    def decay(self) -> float:
        """The weight decay, the optimizer's default unless given."""
        return DEFAULT_WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else float(self.weight_decay)

    @classmethod
    def of(cls, space: SearchSpace[Any], options: Mapping[str, Any]) -> ProxyOptions:
        """The options in ``options``; the other keys are ``lower`` overrides, checked against ``space``."""
        names = {f.name for f in dataclasses.fields(cls)} - {"reduction"}
        reduction = {key: value for key, value in options.items() if key not in names}
        valid = lower_keywords(space)
        if valid is not None:
            for key in reduction:
                if key not in valid:
                    raise ValueError(f"{key}: not a proxy setting of space {space.name!r}; valid: {sorted(valid)}")
        if "resolution" in reduction and reduction["resolution"] is None:
            del reduction["resolution"]
        return cls(**{key: value for key, value in options.items() if key in names}, reduction=reduction)


def check(
    space: SearchSpace[Any], options: Mapping[str, Any], kind: type[ProxyOptions] | None = None, what: str = "proxy"
) -> None:
    """The torch-free check of a run's proxy options (or those of ``kind``, a subclass): every option,
    and the network they lower."""
    parsed = (kind or ProxyOptions).of(space, options)
    reduction = {**proxy_reduction(space), **parsed.reduction}
    sample = space.decode({d.name: d.choices[0] for d in space.decisions()})
    try:
        space.lower(sample, num_classes=2, **reduction)
    except (ValueError, TypeError) as error:
        lines = str(error).strip().splitlines()
        raise ValueError(f"{what} settings {reduction}: {lines[0] if lines else type(error).__name__}") from None


def proxy_reduction(space: SearchSpace[Any]) -> dict[str, Any]:
    """The ``lower`` settings of ``space``'s proxy network (``ValueError`` if it declares none)."""
    try:
        reduction = space.proxy_reduction
    except AttributeError:
        reduction = None
    if not isinstance(reduction, Mapping):
        raise ValueError(
            f"space {space.name!r} declares no proxy_reduction (the lower() settings of its proxy "
            "network); give it one, {} to train at full size"
        )
    return dict(reduction)


def _check_number(name: str, value: Any) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name}: expected a finite number or null, got {value!r}")
