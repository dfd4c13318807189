"""How to train, as data: ``Recipe`` (optimizer, schedule, regularisation), shared by the proxy
evaluator, NetAdapt's fine-tunes and ``nas train``; torch-free, so settings that make one are
checked before torch is imported (``nas.training`` runs it)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

OptimizerName = Literal["sgd", "adamw"]
OPTIMIZERS: tuple[str, ...] = get_args(OptimizerName)
DropPathSchedule = Literal["off", "linear", "constant"]
AUX_LOSS_WEIGHT = 0.4  # NASNet App. A.7, TF-slim ``aux_head`` loss weight


@dataclass(frozen=True)
class Recipe:
    """How to train: optimizer, schedule, regularisation. The defaults are the proxy evaluator's.

    ``drop_path``: ``"off"`` (rate 0), ``"linear"`` (NASNet ScheduledDropPath: the genotype's rate
    times the fraction of steps done) or ``"constant"`` (the genotype's rate throughout: stochastic
    depth as EfficientNet trains it). ``ema_decay`` ``None``: no weight average. ``amp`` applies on
    CUDA only (float16 with a gradient scaler).
    """

    epochs: int
    batch_size: int
    optimizer: OptimizerName = "sgd"
    learning_rate: float = 0.1
    weight_decay: float = 5e-4
    momentum: float = 0.9
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    decay_norms_and_biases: bool = True
    gradient_clip: float | None = 5.0
    drop_path: DropPathSchedule = "off"
    ema_decay: float | None = None
    amp: bool = False
    aux_weight: float = AUX_LOSS_WEIGHT

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer: unknown optimizer {self.optimizer!r}; valid: {list(OPTIMIZERS)}")
        if self.drop_path not in get_args(DropPathSchedule):
            raise ValueError(f"drop_path: expected one of {list(get_args(DropPathSchedule))}, got {self.drop_path!r}")
        checks = (
            ("learning_rate", self.learning_rate, 0.0, False),
            ("weight_decay", self.weight_decay, 0.0, True),
            ("warmup_epochs", self.warmup_epochs, 0.0, True),
            ("momentum", self.momentum, 0.0, True),
        )
        for name, value, low, inclusive in checks:
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < low
                or (value == low and not inclusive)
            ):
                raise ValueError(f"{name}: must be a finite number {'>=' if inclusive else '>'} {low:g}, got {value!r}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs: {self.warmup_epochs:g} is more than the {self.epochs} epochs")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing: must be in [0, 1), got {self.label_smoothing!r}")
        if self.ema_decay is not None and not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay: must be in (0, 1), got {self.ema_decay!r}")
        if self.gradient_clip is not None and not self.gradient_clip > 0:
            raise ValueError(f"gradient_clip: must be > 0 or None, got {self.gradient_clip!r}")
