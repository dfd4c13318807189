"""``nas train``'s settings: every flag, the recipe they make, and what a resumed run must share."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from nas.recipe import OPTIMIZERS, Recipe
from nas.settings import DEFAULT_VALIDATION_FRACTION, MAX_THREADS, RunSettings

DEFAULT_CROP_SCALE = (0.08, 1.0)  # RandomResizedCrop's area range: torchvision / Inception; EfficientNet the same
BALANCES: tuple[str, ...] = (
    "both",
    "duplicate",
    "filter",
    "none",
)  # Noisy Student's per-class balancing of pseudo-labels (§3)
DEFAULT_THRESHOLD = 0.3  # confidence a pseudo-label needs (Noisy Student, §3: 0.3 on ImageNet)

DEFAULT_LEARNING_RATE = {"sgd": 0.1, "adamw": 2e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}
DEFAULT_WARMUP_FRACTION = 0.05  # of the epochs (EfficientNet: 5 of 350; Goyal et al.: 5 of 90)
MAX_ITERATIONS = 100  # Noisy Student iterations: the paper ran 3; each is a whole training
MAX_OPS = 14  # RandAugment operations per image: its 14 kinds (the paper uses 1 to 3)


@dataclass(frozen=True)
class TrainSettings(RunSettings):
    """Everything ``nas train`` takes (its flags, typed by argparse); ``identity`` is what a resumed run
    must agree with."""

    spec: str
    out: str
    dataset: str = "digits"
    data_dir: str | None = None
    download: bool = False
    epochs: int = 30
    batch_size: int = 64
    optimizer: str = "sgd"
    learning_rate: float | None = None
    weight_decay: float | None = None
    warmup_epochs: float | None = None
    label_smoothing: float = 0.1
    randaugment_ops: int = 2
    randaugment_magnitude: int = 9
    crop_scale: float = DEFAULT_CROP_SCALE[0]
    mirror: bool | None = None
    drop_path: bool = True
    ema_decay: float | None = None
    amp: bool = True
    gradient_clip: float | None = 5.0
    resolution: int | None = None
    lowering: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION
    fixres: tuple[int, ...] = ()
    fixres_epochs: int = 3
    fixres_learning_rate: float | None = None
    noisy_student: bool = False
    unlabeled: str | None = None
    unlabeled_fraction: float | None = None
    student: str | None = None
    iterations: int = 2
    soft_labels: bool = True
    threshold: float = DEFAULT_THRESHOLD
    balance: str = "both"
    precise_bn: int = 512
    test_crop: float | None = None
    threads: int = 1
    device: str = "cpu"
    progress: bool = True

    def check(self) -> None:
        for name, low in (
            ("epochs", 1),
            ("batch_size", 1),
            ("fixres_epochs", 1),
            ("iterations", 1),
            ("threads", 1),
            ("randaugment_ops", 0),
            ("precise_bn", 0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"--{name.replace('_', '-')}: must be an integer >= {low}, got {value!r}")
        for name, high in (("threads", MAX_THREADS), ("iterations", MAX_ITERATIONS), ("randaugment_ops", MAX_OPS)):
            if getattr(self, name) > high:  # far past any use, and each unit costs a thread or a whole training
                raise ValueError(f"--{name.replace('_', '-')}: must be at most {high}, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"--optimizer: unknown optimizer {self.optimizer!r}; valid: {list(OPTIMIZERS)}")
        if self.resolution is not None and not 1 <= self.resolution <= 4096:
            raise ValueError(f"--resolution: must be in [1, 4096], got {self.resolution}")
        for r in self.fixres:
            if not 1 <= r <= 4096:
                raise ValueError(f"--fixres: test resolutions must be in [1, 4096], got {r}")
        if self.gradient_clip is not None and not (math.isfinite(self.gradient_clip) and self.gradient_clip >= 0):
            raise ValueError(f"--gradient-clip: must be >= 0 (0: no clipping), got {self.gradient_clip!r}")
        if self.test_crop is not None and not 0.0 < self.test_crop <= 1.0:
            raise ValueError(f"--test-crop: must be in (0, 1], got {self.test_crop!r}")
        if not 0.0 < self.crop_scale <= 1.0:
            raise ValueError(f"--crop-scale: must be in (0, 1], got {self.crop_scale!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"--validation-fraction: must be in (0, 1), got {self.validation_fraction!r}")
        for name in ("learning_rate", "fixres_learning_rate"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"--{name.replace('_', '-')}: must be a positive number, got {value!r}")
        if not self.noisy_student and (self.unlabeled or self.unlabeled_fraction is not None or self.student):
            raise ValueError("--unlabeled, --unlabeled-fraction and --student belong to --noisy-student")
        if self.noisy_student:
            if (self.unlabeled is None) == (self.unlabeled_fraction is None):
                raise ValueError("--noisy-student: give exactly one of --unlabeled DIR and --unlabeled-fraction F")
            if self.unlabeled_fraction is not None and not 0.0 < self.unlabeled_fraction < 1.0:
                raise ValueError(f"--unlabeled-fraction: must be in (0, 1), got {self.unlabeled_fraction!r}")
            if self.balance not in BALANCES:
                raise ValueError(f"--balance: expected one of {list(BALANCES)}, got {self.balance!r}")
            if not 0.0 <= self.threshold < 1.0:
                raise ValueError(f"--threshold: must be in [0, 1), got {self.threshold!r}")
        # The recipe's own checks (label smoothing, EMA decay, warm-up, clipping), as one line each.
        self.recipe(drop_path="off")

    def identity(self) -> dict[str, Any]:
        """The settings a resumed run must share (threads, device and the progress bar may change)."""
        data = asdict(self)
        for key in ("threads", "device", "progress", "out"):
            data.pop(key)
        data["fixres"] = list(self.fixres)
        return json.loads(json.dumps(data))

    def recipe(self, drop_path: str, epochs: int | None = None) -> Recipe:
        epochs = self.epochs if epochs is None else epochs
        warmup = DEFAULT_WARMUP_FRACTION * epochs if self.warmup_epochs is None else self.warmup_epochs
        return Recipe(
            epochs=epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,  # type: ignore[arg-type]
            learning_rate=self.learning_rate or DEFAULT_LEARNING_RATE[self.optimizer],
            weight_decay=(DEFAULT_WEIGHT_DECAY[self.optimizer] if self.weight_decay is None else self.weight_decay),
            warmup_epochs=warmup,
            label_smoothing=self.label_smoothing,
            decay_norms_and_biases=False,
            gradient_clip=self.gradient_clip or None,
            drop_path=drop_path,  # type: ignore[arg-type]
            ema_decay=self.ema_decay,
            amp=self.amp,
        )
