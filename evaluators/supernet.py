"""Weight-shared evaluation: one supernet trained once, every candidate scored with its weights.

Single-path one-shot (SPOS, Guo et al., arXiv 1904.00420 §3): the supernet (a ``nas.supernet.WeightBank``
holding every op of every edge once, for any space whose networks lower to the IR) is trained by
sampling one candidate uniformly at random per step and training only its path; a candidate is
then scored by its validation accuracy with the shared weights, after its BatchNorm statistics are
re-estimated on training images (SPOS §3.3: the statistics a path sees during training are those
of every path mixed), optionally after a few steps of its own on a copy (``finetune_steps``).

The supernet is trained once per run, in the run directory (``attach``, which the search runner
calls once it holds the directory, before the first trial): a checkpoint at the end of every
epoch (weights, optimizer, random-number state, and the candidates that created the bank's
modules, so that it is rebuilt from plain data and loads with ``weights_only=True``), written
atomically, so a killed run resumes at the last epoch and ends with the same weights as one never
killed. Parallel workers attach to the same directory and load the finished supernet.

Weight sharing is known to mislead (the NB201 paper found ENAS and DARTS collapsing to
parameter-free cells): ``benchmarks/supernet_fidelity.py`` measures how this one ranks.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from evaluators.proxy import COST_METRICS, ProxyEvaluator
from evaluators.supernet_options import SupernetOptions
from nas import progress
from nas.data import iterate_batches
from nas.errors import first_line
from nas.files import atomic_torch_save
from nas.seeds import trial_rng, trial_seed
from nas.space import sample_choices
from nas.supernet import WeightBank

logger = logging.getLogger(__name__)

CHECKPOINT = "supernet.pt"
_PATH_STREAM = 11  # trial_rng stream of the path sampled at each training step
_ORDER_STREAM = 12  # trial_seed stream of each epoch's data order
_SCORE_STREAM = 13  # trial_seed stream of the calibration images and a candidate's fine-tune


class SupernetEvaluator(ProxyEvaluator):
    """Score candidates with the weights of one supernet trained by SPOS (see the module docstring).

    Options: those of ``evaluators.supernet_options.SupernetOptions``. ``attach(out)`` trains the
    supernet in ``out`` (or resumes or loads it); without it, the first ``evaluate`` trains it in
    memory (``train()``, no checkpoint).
    Metrics: ``accuracy`` with the shared weights, the proxy network's cost, ``weight_shared``.
    """

    OPTIONS = SupernetOptions
    repeatable = True  # repeat r: other calibration images and another validation split
    reports_epochs = False
    final_evaluator = "proxy"  # --final-top trains the best candidates on their own

    def __init__(self, space: Any, **options: Any) -> None:
        super().__init__(space, **options)
        self.finetune_steps = self.options.finetune_steps  # type: ignore[attr-defined]
        self.bank: WeightBank | None = None
        self.trained_epochs = 0
        self.training_seconds = 0.0
        self.losses: list[float] = []

    def metrics(self) -> tuple[str, ...]:
        return (
            "accuracy",
            *COST_METRICS,
            "seconds",
            "cpu_seconds",
            "validation_images",
            "weight_shared",
            "supernet_epochs",
        )

    def final_options(self) -> dict[str, Any]:
        """The proxy of the final stage reduces the network as the supernet does."""
        return dict(self.options.reduction)

    def attach(self, out: Path) -> None:
        """Train the supernet with its checkpoint in ``out``: resume it, or load it once trained."""
        self.train(Path(out) / CHECKPOINT)

    # ------------------------------------------------------------------------------------ training

    def train(self, checkpoint: Path | None = None) -> WeightBank:
        """The trained supernet: loaded from ``checkpoint`` if it is finished, else trained from where
        it stopped (or from scratch), with a checkpoint after every epoch.

        The global generator (augmentation, dropout) is seeded from the evaluator's seed, or restored
        from the checkpoint, inside a fork: the caller's random state is left as it was."""
        with torch.random.fork_rng(devices=[], device_type="cuda"):
            torch.manual_seed(trial_seed(self.seed, 0, _SCORE_STREAM + 1))
            return self._train_supernet(checkpoint)

    def _train_supernet(self, checkpoint: Path | None) -> WeightBank:
        splits = self.splits
        if checkpoint is not None:
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
        state = _load(checkpoint) if checkpoint is not None and checkpoint.exists() else None
        bank = WeightBank(self.seed, torch.channels_last if self.options.channels_last else None)
        history: list[dict[str, Any]] = []
        optimizer: torch.optim.Optimizer | None = None
        for choices in state["history"] if state else []:
            self._path(bank, choices, history)
        optimizer = self._add_groups(optimizer, bank)
        start, losses = 0, list[float]()
        if state:
            bank.load_state_dict(state["bank"])
            if optimizer is not None:
                optimizer.load_state_dict(state["optimizer"])
            torch.set_rng_state(state["rng"])
            start, losses, self.training_seconds = state["epoch"], list(state["losses"]), float(state["seconds"])
        steps_per_epoch = max(1, len(splits.train) // self.batch_size)  # type: ignore[arg-type]
        epochs = self.options.epochs
        total = epochs * steps_per_epoch
        for epoch in range(start, epochs):
            began, seen, summed = time.perf_counter(), 0, 0.0
            order = torch.Generator().manual_seed(trial_seed(self.seed, epoch, _ORDER_STREAM))
            batches = iterate_batches(splits.train, self.batch_size, True, order, drop_last=True)
            for index, (images, labels) in enumerate(batches):
                step = epoch * steps_per_epoch + index
                model = self._path(
                    bank, sample_choices(self._decisions, trial_rng(self.seed, step, _PATH_STREAM)), history
                )
                optimizer = self._add_groups(optimizer, bank)
                assert optimizer is not None, "a network without parameters cannot be trained"
                for group in optimizer.param_groups:  # single-period cosine decay over every step (SGDR)
                    group["lr"] = 0.5 * self.learning_rate * (1 + math.cos(math.pi * step / total))
                loss = self._step(model, optimizer, images, labels)
                if not math.isfinite(loss):
                    raise ValueError(
                        f"supernet: the training loss is {loss} at epoch {epoch + 1}; lower learning_rate "
                        f"(now {self.learning_rate:g})"
                    )
                seen, summed = seen + 1, summed + loss
                if progress.listened():
                    progress.tell(f"supernet: epoch {epoch + 1}/{epochs}", (step + 1) / total)
            losses.append(summed / max(1, seen))
            self.training_seconds += time.perf_counter() - began
            logger.info("supernet epoch %d/%d: train loss %.4f", epoch + 1, epochs, losses[-1])
            if checkpoint is not None:
                _save(checkpoint, bank, optimizer, history, epoch + 1, losses, self.training_seconds)
        self.bank, self.trained_epochs, self.losses = bank, epochs, losses
        return bank

    @property
    def _decisions(self) -> list[Any]:
        return list(self.space.decisions())

    def _path(self, bank: WeightBank, choices: Mapping[str, Any], history: list[dict[str, Any]]) -> nn.Module:
        """The network of ``choices`` assembled from ``bank``; the choices join ``history`` if they
        created modules (rebuilding the bank replays them in order)."""
        ir = self.space.lower(self.space.decode(dict(choices)), num_classes=self.splits.num_classes, **self.macro())
        before = len(bank.parts)
        model = bank.assemble(ir)
        if len(bank.parts) > before:
            history.append(dict(choices))
        return model

    def _add_groups(self, optimizer: torch.optim.Optimizer | None, bank: WeightBank) -> torch.optim.Optimizer | None:
        """``optimizer`` with one parameter group per module the bank created since the last call."""
        for module in bank.take_new():
            params = [p for p in module.parameters() if p.requires_grad]
            if not params:
                continue
            if optimizer is None:
                optimizer = (
                    torch.optim.SGD(
                        params, lr=self.learning_rate, momentum=0.9, nesterov=True, weight_decay=self.weight_decay
                    )
                    if self.optimizer == "sgd"
                    else torch.optim.AdamW(params, lr=self.learning_rate, weight_decay=self.weight_decay)
                )
            else:
                optimizer.add_param_group({"params": params})
        return optimizer

    def _step(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, images: torch.Tensor, labels: torch.Tensor
    ) -> float:
        model.train()
        images, labels = images.to(self.device), labels.to(self.device)
        if self.options.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.gradient_clip:
            nn.utils.clip_grad_norm_(model.parameters(), self.gradient_clip)
        optimizer.step()
        return float(loss.detach())

    # ------------------------------------------------------------------------------------- scoring

    def evaluate(self, genotype: Any, trial_id: int, repeat: int = 0, report: Any = None) -> dict[str, Any]:
        """Score one candidate with the supernet's weights. Never raises for a bad candidate.

        The calibration images are the same for every candidate of a repeat (drawn by the seed and
        the repeat, not the trial), so candidates differ by their weights alone.
        """
        bank = self.bank if self.bank is not None else self.train()  # not attached: trained in memory, once
        started, cpu_started = time.perf_counter(), time.process_time()
        splits = self.splits_of(repeat)
        metrics: dict[str, Any] = {"weight_shared": True, "supernet_epochs": self.trained_epochs}
        try:
            ir = self.space.lower(genotype, num_classes=splits.num_classes, **self.macro())
            metrics.update(self._cost(genotype, ir, splits.num_classes))
            model = bank.assemble(ir)
            if bank.take_new():
                metrics["untrained_parts"] = True  # a part no training step ever sampled (possible in large spaces)
            seed = trial_seed(self.seed, repeat, _SCORE_STREAM)
            with torch.random.fork_rng(devices=[], device_type="cuda"):
                torch.manual_seed(seed)
                if self.finetune_steps:
                    model = self._finetune(copy.deepcopy(model), splits, trial_seed(self.seed, trial_id, _SCORE_STREAM))
                metrics["accuracy"] = self.validated(model, splits, seed)
            metrics["validation_images"] = len(splits.validation)  # type: ignore[arg-type]
        except Exception as error:
            logger.debug("trial %d failed", trial_id, exc_info=True)
            metrics["error"] = f"{type(error).__name__}: {first_line(error)}"
        metrics["seconds"] = time.perf_counter() - started
        metrics["cpu_seconds"] = time.process_time() - cpu_started
        return metrics

    def _finetune(self, model: nn.Module, splits: Any, seed: int) -> nn.Module:
        """``finetune_steps`` steps of the candidate alone (a copy), at the supernet's final learning rate
        scale (a tenth of its initial one)."""
        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(params, lr=self.learning_rate / 10, momentum=0.9, nesterov=True)
        order = torch.Generator().manual_seed(seed)
        for index, (images, labels) in enumerate(iterate_batches(splits.train, self.batch_size, True, order, True)):
            if index >= self.finetune_steps:
                break
            self._step(model, optimizer, images, labels)
        return model

    def describe(self) -> dict[str, str]:
        facts = super().describe()
        facts["training"] = (
            f"weight-shared: one supernet trained for {self.epochs} epochs by single-path uniform sampling "
            f"(SPOS), batch {self.batch_size}, {self.optimizer} lr {self.learning_rate:g}, "
            f"{self.training_seconds:.0f} s; every candidate scored with its weights, BatchNorm re-estimated "
            f"on {self.calibration_examples} training images"
            + (f", after {self.finetune_steps} steps of its own" if self.finetune_steps else "")
        )
        return facts

    def cheaper(self, metrics: Mapping[str, Any], factor: float) -> dict[str, Any] | None:
        return None  # scoring costs seconds; the supernet's training is paid once


def _save(
    path: Path,
    bank: WeightBank,
    optimizer: torch.optim.Optimizer | None,
    history: list[dict[str, Any]],
    epoch: int,
    losses: list[float],
    seconds: float,
) -> None:
    """The checkpoint of ``bank`` after ``epoch`` epochs, written atomically (tensors and plain data only)."""
    state = {
        "bank": bank.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "history": history,
        "epoch": epoch,
        "losses": losses,
        "seconds": seconds,
        "rng": torch.get_rng_state(),
    }
    atomic_torch_save(path, state)


def _load(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"{path}: not a readable supernet checkpoint ({first_line(error)}); move it away") from None
    if not isinstance(state, dict) or not {"bank", "history", "epoch", "rng"} <= set(state):
        raise ValueError(f"{path}: not a supernet checkpoint; move it away")
    return state
