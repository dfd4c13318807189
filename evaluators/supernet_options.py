"""The supernet evaluator's options, declared and checked without torch.

``SupernetOptions`` are the proxy's (``evaluators.proxy_options.ProxyOptions``: the reduced network,
batch size, optimizer, image budgets, BatchNorm calibration) with the defaults of a network that is
trained once for every candidate: ``epochs`` are the supernet's (SPOS trains its supernet for as
long as a stand-alone network, arXiv 1904.00420 §4; here ``SUPERNET_EPOCHS`` over every training
image), and each candidate is scored after ``finetune_steps`` steps of its own on a copy of its
shared weights (default: ``SPOS_FINETUNE_STEPS`` with SPOS, none with ENAS, whose controller is
rewarded by the shared weights themselves) with its BatchNorm statistics re-estimated on
``calibration_examples`` training images. Both defaults were chosen on NAS-Bench-201/CIFAR-10, where
a longer-trained supernet and the per-candidate fine-tune each ranked cells better (Spearman 0.45
after 30 epochs, 0.58 after 60, 0.72 after 60 with a 100-step fine-tune: the fine-tune undoes part of
what sharing couples, the bias of shared weights towards the paths that learn fastest;
benchmarks/README.md). ``check`` is registered in the entry-point group ``nas.evaluator_options``.

``training`` picks how the supernet's paths are sampled: ``"spos"`` (uniformly, before the search:
SPOS) or ``"enas"`` (from the search controller's policy, one epoch of shared-weight training
before every ``enas_trials`` trials, which are the controller's own training steps: ENAS, Pham et
al., arXiv 1802.03268 §2.2, which alternates an epoch of shared weights with controller steps
rewarded on validation data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from evaluators.proxy_options import ProxyOptions
from evaluators.proxy_options import check as check_proxy
from nas.space import SearchSpace

SUPERNET_EPOCHS = 60
SPOS_FINETUNE_STEPS = 100
SUPERNET_CALIBRATION = 2048  # SPOS re-estimates BatchNorm on 20,000 ImageNet images; CIFAR's proxies need fewer
TRAININGS = ("spos", "enas")
ENAS_TRIALS = 10  # controller samples between two epochs of shared weights (its REINFORCE batches learn from them)
MAX_ENAS_TRIALS = 1_000_000


@dataclass(frozen=True)
class SupernetOptions(ProxyOptions):
    """The proxy's options with the supernet's defaults, and the per-candidate fine-tune."""

    epochs: int = SUPERNET_EPOCHS
    images_per_class: int | None = None
    calibration_examples: int = SUPERNET_CALIBRATION
    finetune_steps: int | None = None
    training: str = "spos"
    enas_trials: int = ENAS_TRIALS

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.training, str) or self.training not in TRAININGS:
            raise ValueError(f"training: must be one of {list(TRAININGS)}, got {str(self.training)[:200]!r}")
        if self.finetune_steps is None:
            object.__setattr__(self, "finetune_steps", SPOS_FINETUNE_STEPS if self.training == "spos" else 0)
        steps = self.finetune_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"finetune_steps: must be a non-negative integer, got {steps!r}")
        if self.drop_path:
            raise ValueError("drop_path: a supernet trains one path a step; drop-path is not offered")
        trials = self.enas_trials
        if isinstance(trials, bool) or not isinstance(trials, int) or not 1 <= trials <= MAX_ENAS_TRIALS:
            raise ValueError(f"enas_trials: must be an integer from 1 to {MAX_ENAS_TRIALS:,}, got {trials!r}")

    def enas_budget(self) -> int:
        """The trials an ENAS search needs to train its supernet for every epoch: one epoch before each
        ``enas_trials``, the last epoch's weights scoring at least ``enas_trials`` candidates."""
        return self.epochs * self.enas_trials


def check(space: SearchSpace[Any], options: Mapping[str, Any]) -> None:
    """The torch-free check of a run's supernet options, and of the network they lower."""
    check_proxy(space, options, SupernetOptions, "supernet")
