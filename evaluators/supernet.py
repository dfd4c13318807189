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

With ``training: enas`` the paths come from the search controller's policy instead (ENAS, Pham
et al., arXiv 1802.03268 §2.2: shared weights and controller trained in turn): the search's trials
are the controller's steps, and before every ``enas_trials`` of them the supernet trains one more
epoch on paths the controller's current policy draws (``follow``), until its ``epochs`` are done;
the trials after that score candidates with the final weights (ENAS's derivation). Every epoch
keeps its checkpoint (``enas/epoch-NNN.pt``): a resumed search evaluates its next trial with the
weights that trial had, whatever the journal lost, and the policy that trains the next epoch is
the one restored with the controller, so a killed ENAS search resumes exactly too.

Weight sharing is known to mislead (the NB201 paper found ENAS and DARTS collapsing to
parameter-free cells): ``benchmarks/supernet_fidelity.py`` measures how this one ranks.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
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
ENAS_CHECKPOINTS = "enas"  # folder of an ENAS search's per-epoch checkpoints, in the run directory
LEGACY_PLAN = {"epochs": 30, "finetune_steps": 0}  # the defaults of checkpoints saved before they recorded a plan
_PATH_STREAM = 11  # trial_rng stream of the path sampled at each training step
_ORDER_STREAM = 12  # trial_seed stream of each epoch's data order
_SCORE_STREAM = 13  # trial_seed stream of the calibration images and a candidate's fine-tune


@dataclass
class _Training:
    """The supernet's training as it stands: its modules, optimizer, the candidates that created its
    modules (a checkpoint rebuilds the bank from them), epochs done, mean losses, seconds, and the
    global generator's state (augmentation, dropout) to continue from."""

    bank: WeightBank
    optimizer: torch.optim.Optimizer | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epoch: int = 0
    losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    rng: torch.Tensor | None = None


class SupernetEvaluator(ProxyEvaluator):
    """Score candidates with the weights of one supernet trained by SPOS or ENAS (see the module docstring).

    Options: those of ``evaluators.supernet_options.SupernetOptions``. SPOS: ``attach(out)`` trains
    the supernet in ``out`` (or resumes or loads it); without it, the first ``evaluate`` trains it in
    memory (``train()``, no checkpoint). ENAS: ``follow(controller, ...)`` gives the policy, and each
    ``evaluate`` trains the epochs its trial needs first.
    Metrics: ``accuracy`` with the shared weights, the proxy network's cost, ``weight_shared``.
    """

    OPTIONS = SupernetOptions
    repeatable = True  # repeat r: other calibration images and another validation split
    reports_epochs = False
    final_evaluator = "proxy"  # --final-top trains the best candidates on their own

    def __init__(self, space: Any, **options: Any) -> None:
        super().__init__(space, **options)
        self.finetune_steps = self.options.finetune_steps  # type: ignore[attr-defined]
        self.enas = self.options.training == "enas"  # type: ignore[attr-defined]
        self.bank: WeightBank | None = None
        self.trained_epochs = 0
        self.training_seconds = 0.0
        self.losses: list[float] = []
        self.policy: Callable[[int], Mapping[str, Any]] | None = None  # ENAS: the controller's draw(seed)
        self._training: _Training | None = None
        self._folder: Path | None = None  # ENAS: where each epoch's checkpoint goes

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
        """SPOS: train the supernet with its checkpoint in ``out`` (resume it, or load it once trained).
        ENAS: keep each epoch's checkpoint in ``out`` as the search trains them."""
        if self.enas:
            self._folder = Path(out) / ENAS_CHECKPOINTS
            return
        self.train(Path(out) / CHECKPOINT)

    def controller_defaults(self) -> dict[str, Any]:
        """ENAS: the controller's trials are its policy's samples (``dedup: false``), as ENAS's REINFORCE
        needs; a controller that skips the classes it has tried draws off its policy once it settles
        (measured on NAS-Bench-201: benchmarks/README.md, "ENAS")."""
        return {"dedup": False} if self.enas else {}

    def follow(self, controller: Any, budget: int, sequential: bool) -> None:
        """ENAS: draw the supernet's training paths from ``controller``'s policy (its ``draw(seed)``).

        ``ValueError`` (one line) for a search ENAS cannot run: a controller without a policy, trials
        evaluated side by side (each epoch needs the policy every earlier trial trained), or a budget
        that ends before the supernet's last epoch. SPOS: nothing to do."""
        if not self.enas:
            return
        draw = getattr(controller, "draw", None)
        if not callable(draw):
            raise ValueError(
                f"evaluator_options: training 'enas' draws the supernet's paths from the controller's policy; "
                f"controller {type(controller).__name__} has none (use --controller reinforce)"
            )
        if not sequential:
            raise ValueError(
                "workers: training 'enas' trains the supernet between the controller's trials, one at a time; "
                "run it with the local backend and one worker"
            )
        needed = self.options.enas_budget()  # type: ignore[attr-defined]
        if budget < needed:
            raise ValueError(
                f"budget: training 'enas' trains the supernet one epoch before every {self.options.enas_trials} "  # type: ignore[attr-defined]
                f"trials; its {self.epochs} epochs need --budget {needed} or more (or fewer evaluator_options "
                "epochs or enas_trials)"
            )
        self.policy = draw

    # ------------------------------------------------------------------------------------ training

    def train(self, checkpoint: Path | None = None, epochs: int | None = None) -> WeightBank:
        """The supernet trained for ``epochs`` (default: all of them): loaded from ``checkpoint`` if that
        is as far, else trained on from the training in memory, the checkpoint, or scratch, with a
        checkpoint after every epoch (ENAS: one file per epoch, in the attached folder).

        The global generator (augmentation, dropout) is seeded from the evaluator's seed, or restored
        from the checkpoint or the training in memory, inside a fork: the caller's random state is left
        as it was."""
        with torch.random.fork_rng(devices=[], device_type="cuda"):
            torch.manual_seed(trial_seed(self.seed, 0, _SCORE_STREAM + 1))
            return self._train_supernet(checkpoint, self.options.epochs if epochs is None else epochs)

    def _train_supernet(self, checkpoint: Path | None, until: int) -> WeightBank:
        splits = self.splits
        training = self._training
        if training is None or training.epoch > until or training.epoch < self._saved_epoch(until):
            training = self._restore(checkpoint, until)
        if training.rng is not None:
            torch.set_rng_state(training.rng)
        bank = training.bank
        training.optimizer = self._add_groups(training.optimizer, bank)
        steps_per_epoch = max(1, len(splits.train) // self.batch_size)  # type: ignore[arg-type]
        epochs = self.options.epochs
        total = epochs * steps_per_epoch
        for epoch in range(training.epoch, until):
            began, seen, summed = time.perf_counter(), 0, 0.0
            order = torch.Generator().manual_seed(trial_seed(self.seed, epoch, _ORDER_STREAM))
            batches = iterate_batches(splits.train, self.batch_size, True, order, drop_last=True)
            for index, (images, labels) in enumerate(batches):
                step = epoch * steps_per_epoch + index
                model = self._path(bank, self._draw(step), training.history)
                training.optimizer = optimizer = self._add_groups(training.optimizer, bank)
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
            training.losses.append(summed / max(1, seen))
            training.seconds += time.perf_counter() - began
            training.epoch, training.rng = epoch + 1, torch.get_rng_state()
            logger.info("supernet epoch %d/%d: train loss %.4f", epoch + 1, epochs, training.losses[-1])
            path = self._checkpoint(checkpoint, epoch + 1)
            if path is not None:
                _save(path, training, self._plan())
        self._training = training
        self.bank, self.trained_epochs, self.losses = bank, training.epoch, list(training.losses)
        self.training_seconds = training.seconds
        return bank

    def _checkpoint(self, checkpoint: Path | None, epoch: int) -> Path | None:
        """Where the training after ``epoch`` epochs is kept: SPOS's one file, or ENAS's file of that epoch."""
        if self.enas and self._folder is not None:
            return self._folder / f"epoch-{epoch:03d}.pt"
        return checkpoint

    def _saved_epoch(self, until: int) -> int:
        """ENAS: the most epochs a kept checkpoint holds, up to ``until`` (0: none). SPOS: 0 (it reads its
        one checkpoint when it has no training in memory)."""
        if not self.enas or self._folder is None:
            return 0
        saved = (int(path.stem[6:]) for path in self._folder.glob("epoch-*.pt") if path.stem[6:].isdigit())
        return max((epoch for epoch in saved if epoch <= until), default=0)

    def _restore(self, checkpoint: Path | None, until: int) -> _Training:
        """The training from the checkpoint that holds the most epochs up to ``until``, else a new one."""
        if self.enas:
            epoch = self._saved_epoch(until)
            path = self._checkpoint(checkpoint, epoch) if epoch else None
            if self._folder is not None:
                self._folder.mkdir(parents=True, exist_ok=True)
        else:
            path = checkpoint
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
        if self._training is not None and self._training.epoch > until and path is None:
            raise ValueError(
                f"supernet: a trial needs the weights after {until} epochs, but the supernet has trained "
                f"{self._training.epoch} and keeps no checkpoint of epoch {until}"
            )
        state = _load(path) if path is not None and path.exists() else None
        training = _Training(WeightBank(self.seed, torch.channels_last if self.options.channels_last else None))
        if state is None:
            return training
        planned = {**LEGACY_PLAN, **dict(state.get("plan") or {})}
        for key, value in self._plan().items():
            if planned.get(key) != value:
                raise ValueError(
                    f"{path}: this supernet was made with {key} {planned.get(key)!r}, this run asks for {value!r} "
                    f"(a default may have changed): set evaluator_options {key}: {planned.get(key)!r} to resume it, "
                    "or use another --out"
                )
        for choices in state["history"]:
            self._path(training.bank, choices, training.history)
        training.optimizer = self._add_groups(None, training.bank)
        training.bank.load_state_dict(state["bank"])
        if training.optimizer is not None:
            training.optimizer.load_state_dict(state["optimizer"])
        training.epoch, training.rng = int(state["epoch"]), state["rng"]
        training.losses, training.seconds = list(state["losses"]), float(state["seconds"])
        return training

    def _plan(self) -> dict[str, int]:
        """What a checkpoint's weights and its run's scores depend on beyond the run's identity (whose
        options are kept as given): a resumed run with other values would mix two supernets."""
        return {"epochs": int(self.epochs), "finetune_steps": int(self.finetune_steps)}

    def _draw(self, step: int) -> Mapping[str, Any]:
        """The path of training step ``step``: uniform (SPOS), or the controller policy's draw (ENAS)."""
        if not self.enas:
            return sample_choices(self._decisions, trial_rng(self.seed, step, _PATH_STREAM))
        if self.policy is None:
            raise ValueError("training 'enas': no controller policy to draw paths from (the search gives it: follow)")
        return self.policy(trial_seed(self.seed, step, _PATH_STREAM))

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

        The calibration images and the fine-tune's batches are the same for every candidate of a
        repeat (drawn by the seed and the repeat, not the trial), so candidates differ by their
        weights alone.
        """
        if self.enas:  # the epochs this trial's place in the search calls for (ENAS: one per enas_trials)
            bank = self.train(epochs=min(self.epochs, trial_id // self.options.enas_trials + 1))  # type: ignore[attr-defined]
        else:  # not attached: trained in memory, once
            bank = self.bank if self.bank is not None else self.train()
        started, cpu_started = time.perf_counter(), time.process_time()
        splits = self.splits_of(repeat)
        metrics: dict[str, Any] = {"weight_shared": True, "supernet_epochs": self.trained_epochs}
        if self.enas:
            metrics["supernet_training"] = "enas"
        try:
            ir = self.space.lower(genotype, num_classes=splits.num_classes, **self.macro())
            metrics.update(self._cost(genotype, ir, splits.num_classes))
            before = len(bank.parts)
            if self.enas:  # a part created here is trained by the next epochs: it joins the bank's history
                assert self._training is not None
                model = self._path(bank, self.space.encode(genotype), self._training.history)
            else:
                model = bank.assemble(ir)
                bank.take_new()
            if len(bank.parts) > before:
                metrics["untrained_parts"] = True  # a part no training step ever sampled (possible in large spaces)
            seed = trial_seed(self.seed, repeat, _SCORE_STREAM)
            with torch.random.fork_rng(devices=[], device_type="cuda"):
                torch.manual_seed(seed)
                if self.finetune_steps:
                    model = self._finetune(copy.deepcopy(model), splits, seed)
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
        sampling = (
            f"paths drawn from the controller's policy, one epoch before every {self.options.enas_trials} "  # type: ignore[attr-defined]
            "trials (ENAS)"
            if self.enas
            else "single-path uniform sampling (SPOS)"
        )
        facts["training"] = (
            f"weight-shared: one supernet trained for {self.epochs} epochs by {sampling}, "
            f"batch {self.batch_size}, {self.optimizer} lr {self.learning_rate:g}, "
            f"{self.training_seconds:.0f} s; every candidate scored with its weights, BatchNorm re-estimated "
            f"on {self.calibration_examples} training images"
            + (f", after {self.finetune_steps} steps of its own" if self.finetune_steps else "")
        )
        return facts

    def cheaper(self, metrics: Mapping[str, Any], factor: float) -> dict[str, Any] | None:
        return None  # scoring costs seconds; the supernet's training is paid once


def _save(path: Path, training: _Training, plan: Mapping[str, int]) -> None:
    """The checkpoint of ``training`` under ``plan``, written atomically (tensors and plain data only)."""
    state = {
        "plan": dict(plan),
        "bank": training.bank.state_dict(),
        "optimizer": training.optimizer.state_dict() if training.optimizer is not None else {},
        "history": training.history,
        "epoch": training.epoch,
        "losses": training.losses,
        "seconds": training.seconds,
        "rng": training.rng if training.rng is not None else torch.get_rng_state(),
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
