"""The one training loop: the proxy evaluator, NetAdapt's fine-tune and ``nas train`` all run ``Trainer``.

A ``Recipe`` holds the settings; the proxy's (SGD with Nesterov momentum, weight decay on every
weight, cosine decay, gradient clipping, NASNet aux loss) is one setting of it, the standard
recipe of ``nas train`` another: linear warm-up then cosine decay (Goyal et al., arXiv 1706.02677
§2.2; Loshchilov & Hutter, SGDR), label smoothing 0.1 (Inception-v3 §7, arXiv 1512.00567), no
weight decay on norms and biases (Goyal et al. §4.1 "no bias decay"), stochastic depth and
dropout from the genotype with NASNet's ScheduledDropPath (arXiv 1707.07012 App. A.5, the rate
rising linearly with the step), an exponential moving average of the weights (EfficientNet,
decay 0.9999 at ImageNet scale) and mixed precision on CUDA.

``Trainer.state_dict`` holds everything a step depends on (weights, optimizer moments, EMA,
scaler, the step count): saved with the random-number states between epochs it resumes a
training bit for bit (``nas.train.fit``). Every value in it loads with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import nn

from nas.data import iterate_batches
from nas.ops import set_drop_path_progress
from nas.recipe import Recipe


@runtime_checkable
class ScheduledLayer(Protocol):
    """A layer whose behaviour follows training progress (CondenseNet's condensing stages, arXiv
    1711.09224 §3.1): the trainer calls ``set_training_progress(fraction)`` before every step."""

    def set_training_progress(self, progress: float) -> None: ...


@runtime_checkable
class AuxiliaryOutput(Protocol):
    """A network with an auxiliary classifier (NASNet's, weighted 0.4 in the loss, arXiv 1707.07012
    App. A.1): ``forward_with_aux`` returns the logits and the auxiliary logits (None in eval mode)."""

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...


class Diverged(Exception):
    """The loss became NaN or infinite; the message says when."""


def parameter_groups(model: nn.Module, weight_decay: float, decay_norms_and_biases: bool) -> list[dict[str, Any]]:
    """The trainable parameters, in one group, or two: 0-/1-dimensional ones (biases, norm scales and
    shifts) without weight decay (Goyal et al. §4.1; timm's ``param_groups_weight_decay``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if decay_norms_and_biases:
        return [{"params": params, "weight_decay": weight_decay}]
    decay = [p for p in params if p.ndim > 1]
    plain = [p for p in params if p.ndim <= 1]
    return [
        group
        for group in ({"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0})
        if group["params"]
    ]


def learning_rate_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warm-up from ``1 / warmup_steps`` to 1, then a single cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


class WeightAverage:
    """Exponential moving average of the weights; buffers (BatchNorm statistics) are copied.

    ``decay`` is adjusted early as TF's ``ExponentialMovingAverage(num_updates=...)``:
    ``min(decay, (1 + n) / (10 + n))``, so the average is not dominated by the initial weights.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        averaged: list[torch.Tensor] = [p for p in self.model.parameters() if p.dtype.is_floating_point]
        current = [p.detach() for p in model.parameters() if p.dtype.is_floating_point]
        torch._foreach_lerp_(averaged, current, 1.0 - decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)
        for own, layer in zip(self.model.modules(), model.modules()):
            if isinstance(layer, ScheduledLayer):  # its Python state (CondenseNet's stage) is not a buffer
                for key, value in vars(layer).items():
                    if key != "training" and isinstance(value, (bool, int, float)):
                        setattr(own, key, value)

    def state_dict(self) -> dict[str, Any]:
        return {"updates": self.updates, "model": self.model.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.updates = int(state["updates"])
        self.model.load_state_dict(state["model"])


@dataclass
class EpochStats:
    """Mean loss and accuracy (argmax of the targets for soft ones) over an epoch's steps."""

    loss: float = 0.0
    accuracy: float = 0.0
    steps: int = 0
    losses: list[float] = field(default_factory=list)


class Trainer:
    """Trains ``model`` in place with ``recipe`` over ``total_steps`` optimizer steps.

    Targets are class indices or, for distillation (Noisy Student's soft pseudo-labels), rows of
    class probabilities. ``transform`` maps each batch of images before the forward pass (the
    augmentation of ``nas train``). Layers with a schedule over training (CondenseNet's condensing
    stages) hear its progress through ``set_training_progress`` every step. Label smoothing applies
    to class-index targets; probability targets are used as given (Noisy Student smooths the
    one-hot rows it wants smoothed, not the teacher's soft labels).
    """

    def __init__(
        self,
        model: nn.Module,
        recipe: Recipe,
        total_steps: int,
        device: torch.device | str = "cpu",
        schedules: bool = True,
    ) -> None:
        self.model, self.recipe, self.device = model, recipe, torch.device(device)
        self.total_steps = max(1, int(total_steps))
        self.steps_per_epoch = max(1, math.ceil(self.total_steps / recipe.epochs))
        self.warmup_steps = int(round(recipe.warmup_epochs * self.steps_per_epoch))
        groups = parameter_groups(model, recipe.weight_decay, recipe.decay_norms_and_biases)
        if not groups:
            raise ValueError("the model has no trainable parameters")
        if recipe.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                groups, lr=recipe.learning_rate, momentum=recipe.momentum, nesterov=recipe.momentum > 0
            )
        else:
            self.optimizer = torch.optim.AdamW(groups, lr=recipe.learning_rate)
        self.parameters = [p for group in groups for p in group["params"]]
        self.amp = recipe.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.amp else None
        self.ema = WeightAverage(model, recipe.ema_decay) if recipe.ema_decay is not None else None
        self.step = 0
        # ``schedules`` False: a fine-tune (FixRes) leaves the trained network's schedules where training left them.
        self._scheduled = [layer for layer in model.modules() if isinstance(layer, ScheduledLayer)] if schedules else []

    @property
    def evaluation_model(self) -> nn.Module:
        """The weights to evaluate and keep: the moving average when there is one."""
        return self.ema.model if self.ema is not None else self.model

    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps)

    def train_epoch(
        self,
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
        transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        after_step: Callable[[], None] | None = None,
        max_steps: int | None = None,
        keep_losses: bool = False,
        label: str = "epoch",
        set_mode: Callable[[nn.Module], None] | None = None,
    ) -> EpochStats:
        """One pass over ``batches`` (at most ``max_steps`` steps); ``Diverged`` on a non-finite loss.

        ``set_mode`` puts the model in its training mode (default ``model.train()``; FixRes trains
        with most of the network in eval mode).
        """
        recipe, model, stats = self.recipe, self.model, EpochStats()
        forward_with_aux = model.forward_with_aux if isinstance(model, AuxiliaryOutput) else None
        if set_mode is None:
            model.train()
        else:
            set_mode(model)
        total, correct, seen = 0.0, 0, 0
        iterator = iter(batches)
        while max_steps is None or stats.steps < max_steps:
            try:  # not one batch more than needed: a data loader's transforms draw random numbers
                images, targets = next(iterator)
            except StopIteration:
                break
            images, targets = images.to(self.device, non_blocking=True), targets.to(self.device, non_blocking=True)
            if transform is not None:
                images = transform(images)
            self._set_progress()
            for group in self.optimizer.param_groups:
                group["lr"] = recipe.learning_rate * learning_rate_factor(
                    self.step, self.total_steps, self.warmup_steps
                )
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                logits, aux = forward_with_aux(images) if forward_with_aux else (model(images), None)
                smoothing = recipe.label_smoothing if targets.dim() == 1 else 0.0
                loss = F.cross_entropy(logits, targets, label_smoothing=smoothing)
                value = loss.item()  # also a sync point on accelerators
                total += value
                if not math.isfinite(total):
                    raise Diverged(f"nan loss at {label}")
                if aux is not None:
                    loss = loss + recipe.aux_weight * F.cross_entropy(aux, targets, label_smoothing=smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            if self.scaler is not None:
                self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
                self.scaler.unscale_(self.optimizer)
            else:
                loss.backward()  # type: ignore[no-untyped-call]
            if recipe.gradient_clip:
                nn.utils.clip_grad_norm_(self.parameters, recipe.gradient_clip)
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
            if self.ema is not None:
                self.ema.update(model)
            self.step += 1
            stats.steps += 1
            with torch.no_grad():
                labels = targets if targets.dim() == 1 else targets.argmax(dim=1)
                correct += int((logits.argmax(dim=1) == labels).sum())
                seen += len(labels)
            if keep_losses:
                stats.losses.append(value)
            if after_step is not None:
                after_step()
        stats.loss = total / max(1, stats.steps)
        stats.accuracy = correct / max(1, seen)
        return stats

    def _set_progress(self) -> None:
        progress = self.progress()
        schedule = self.recipe.drop_path
        set_drop_path_progress(self.model, progress if schedule == "linear" else float(schedule == "constant"))
        for layer in self._scheduled:
            layer.set_training_progress(progress)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        self._set_progress()  # layers whose state is a Python attribute (CondenseNet's stage) catch up


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    device: torch.device | str = "cpu",
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[float, float]:
    """``(mean cross-entropy, top-1 accuracy)`` of ``model`` in eval mode; ``ValueError`` if empty."""
    model.eval()
    loss, correct, seen = 0.0, 0, 0
    for images, labels in batches:
        images, labels = images.to(device), labels.to(device)
        if transform is not None:
            images = transform(images)
        logits = model(images).float()
        loss += float(F.cross_entropy(logits, labels, reduction="sum"))
        correct += int((logits.argmax(dim=1) == labels).sum())
        seen += len(labels)
    if seen == 0:
        raise ValueError("evaluate: the dataset is empty")
    return loss / seen, correct / seen


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    dataset: Any,
    batch_size: int,
    examples: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    within: Iterable[nn.Module] | None = None,
) -> None:
    """Recompute BatchNorm running statistics as exact averages over ``examples`` training images.

    After a few hundred steps the running averages lag far behind the weights, above all with
    TF-style momentum 0.01 (MobileNetV3, EfficientNet-B5+): evaluated as trained, those proxies
    score chance. Re-estimating the statistics with the final weights is what one-shot NAS does
    before it ranks candidates (SPOS, arXiv 1904.00420 §3.3; once-for-all, arXiv 1908.09791 §3.2).
    ``transform`` maps each batch first (``nas train``: the test-time view). ``within``: only the
    BatchNorm layers inside these modules are re-estimated (FixRes), the others kept.
    """
    parts = [model] if within is None else list(within)
    norms = [m for part in parts for m in part.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or examples <= 0:
        return
    model.eval()  # dropout and drop-path off; only the BatchNorm layers collect statistics
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average: every batch counts equally
        norm.train()
    seen = 0
    for images, _ in iterate_batches(dataset, batch_size, shuffle=True, generator=generator, drop_last=True):
        images = images.to(device)
        model(transform(images) if transform is not None else images)
        seen += len(images)
        if seen >= examples:
            break
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()
