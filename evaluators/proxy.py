"""Proxy training: train a reduced candidate for a few epochs and report its validation accuracy.

NASNet trained every child for 20 epochs on CIFAR-10 with a small N = 2, momentum 0.9, L2
weight decay and a single-period cosine learning-rate decay, and rewarded the controller with the
accuracy on 5,000 held-out training images (arXiv 1707.07012 App. A.1, A.6). MnasNet trained
children for 5 epochs on ImageNet (arXiv 1807.11626 §4.2). ``ProxyEvaluator`` is the same recipe,
sized for a laptop CPU: the network is reduced (NASNet ``num_cells``/``penultimate_filters``,
chain spaces ``width_multiplier``), the images are small, and a candidate takes seconds.

The default settings, and the measurements behind each, are in ``benchmarks/README.md``.
The reduced network is the space's ``proxy_reduction``, with any override given here.

All randomness of one evaluation (initial weights, data order, dropout and drop-path) is derived
from ``(seed, trial_id)`` (``base.trial_seeds``), so re-running a trial gives the same metrics on
the same machine, thread count and library versions.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evaluators.datasets import iterate_batches
from evaluators.images import skipped_files
from evaluators.proxy_options import ProxyOptions, proxy_reduction
from nas import progress, registry
from nas import space as space_registry
from nas.compile import compile as compile_ir
from nas.cost import build_on_meta, count_cost, count_params
from nas.data import DatasetSplits, cap_per_class, load_dataset
from nas.errors import first_line
from nas.evaluator import EvaluatorBase
from nas.recipe import Recipe
from nas.seeds import TrialSeeds, split_seed, trial_seeds
from nas.space import SearchSpace, lower_keywords
from nas.training import Diverged, Trainer, recalibrate_batchnorm

logger = logging.getLogger(__name__)


COST_METRICS = ("params", "macs", "memory_access", "resolution")  # of the network evaluated (``_cost``)


class CandidateFailure(Exception):
    """A candidate could not be evaluated (NaN loss, time limit); the message is the reason."""


class ProxyEvaluator(EvaluatorBase[Any]):
    """Train the reduced candidate for ``epochs`` epochs; report validation accuracy and cost.

    ``space`` is a ``SearchSpace`` or its registered name. ``dataset`` is a registered dataset name
    (loaded once, by ``prepare`` or the first ``evaluate``) or ready ``DatasetSplits``. ``options``
    are ``evaluators.proxy_options.ProxyOptions`` (epochs, batch size, optimizer, time limit, ...);
    the other keys are overrides of ``space.lower`` on top of ``space.proxy_reduction``
    (``num_cells``, ``penultimate_filters``, ``aux_head`` for NASNet; ``width_multiplier`` for chain
    spaces; ``resolution`` for all, also used to load the data). A time limit ``"auto"`` (the
    default) scales with the candidate's proxy cost (``auto_time_limit``), so that one huge
    candidate cannot stall a search. The caller sets the thread count (``torch.set_num_threads``);
    the search runner does.
    """

    def __init__(
        self,
        space: SearchSpace[Any] | str,
        dataset: str | DatasetSplits | None = "digits",
        data_dir: str | Path | None = None,
        download: bool = False,
        seed: int = 0,
        **options: Any,
    ) -> None:
        self.space = space_registry.get(space) if isinstance(space, str) else space
        dataset = "digits" if dataset is None else dataset
        if isinstance(dataset, str) and dataset not in registry.datasets:
            raise ValueError(f"dataset: unknown dataset {dataset!r}; valid: {registry.datasets.names()}")
        reduction = proxy_reduction(self.space)
        trial_seeds(seed, 0)  # validates ``seed``
        self.options = self.OPTIONS.of(self.space, options)
        try:
            self.device = torch.device(self.options.device)
        except (RuntimeError, TypeError):
            raise ValueError(
                f"device: {self.options.device!r} is not a torch device; valid: 'cpu', 'cuda', 'cuda:0', 'mps', ..."
            ) from None
        self.dataset, self.data_dir, self.download, self.seed = dataset, data_dir, download, seed
        self.epochs, self.batch_size, self.optimizer = (
            self.options.epochs,
            self.options.batch_size,
            self.options.optimizer,
        )
        self.learning_rate, self.weight_decay = self.options.rate, self.options.decay
        self.time_limit, self.validation_fraction = self.options.time_limit, self.options.validation_fraction
        self.gradient_clip, self.full_cost = self.options.gradient_clip, self.options.full_cost
        self.drop_path, self.calibration_examples = self.options.drop_path, self.options.calibration_examples
        self.reduction = {**reduction, **self.options.reduction}
        # Repeat r of a trial validates on the split seeded by ``split_seed(seed, r)`` (loaded once
        # each); splits given as ``dataset`` serve every repeat (key (-1, None)).
        self._splits: dict[tuple[int, int | None], DatasetSplits] = {}

    repeatable = True  # repeat r: other seeds and another validation split (``prepare_repeats``)
    reports_epochs = True  # early stopping: the validation accuracy after every epoch
    OPTIONS: type[ProxyOptions] = ProxyOptions  # the options class (a subclass changes defaults: the supernet)

    def metrics(self) -> tuple[str, ...]:
        """The metrics a successful evaluation returns (the ``full_*`` costs with ``full_cost``).

        Besides the validation ``accuracy``, two estimators from the training trajectory (Ru et al.,
        "Speedy Performance Estimation for NAS", arXiv 2006.04492): ``final_train_loss``, the mean
        training loss of the last epoch (their SoTL-E with E = 1, up to the step count every
        candidate shares), and ``sotl``, the sum of every epoch's mean training loss (SoTL); a search
        ranks by one with ``--objective metric:sotl:min``.
        """
        full = ("full_params", "full_macs", "full_memory_access") if self.full_cost else ()
        return (
            "accuracy",
            *COST_METRICS,
            "epochs",
            "final_train_loss",
            "sotl",
            "train_seconds",
            "time_limit",
            "seconds",
            "cpu_seconds",
            "validation_images",
            *full,
        )

    @property
    def splits(self) -> DatasetSplits:
        """The dataset splits, loaded on first use (``ValueError`` if the data is missing)."""
        return self.splits_of(0)

    def prepare_repeats(self, repeats: int) -> None:
        """Load and check the validation splits of repeats 1 ... ``repeats - 1`` now (``--repeats``,
        the final stage), so that a split the data cannot give fails before the first trial."""
        for repeat in range(1, repeats):
            self.splits_of(repeat)

    def splits_of(self, repeat: int, resolution: int | None = None) -> DatasetSplits:
        """The splits of repeat ``repeat``: the same images, another seeded validation split.

        ``resolution`` (default: the proxy's) serves a network that asks for another input size
        (``nas scale`` trains its points at the proxy resolution times gamma): the images are
        loaded again at that size, from the source, not upsampled from the proxy's.
        """
        if isinstance(self.dataset, DatasetSplits):
            if resolution is not None and resolution != self.dataset.resolution:
                raise ValueError(
                    f"resolution: the network asks for {resolution} px images, and the evaluator was "
                    f"given ready splits of {self.dataset.resolution} px; give it a dataset name instead"
                )
            if (-1, None) not in self._splits:
                self._splits[(-1, None)] = self._budgeted(self.dataset, self.seed)
            return self._splits[(-1, None)]
        key = (repeat, resolution)
        if key not in self._splits:
            size = self.reduction.get("resolution") if resolution is None else resolution
            seed = split_seed(self.seed, repeat)
            splits = load_dataset(self.dataset, self.data_dir, self.download, size, seed, self.validation_fraction)
            self._splits[key] = self._budgeted(splits, seed)
        return self._splits[key]

    def _budgeted(self, splits: DatasetSplits, seed: int) -> DatasetSplits:
        """``splits`` with the training and validation images capped per class (drawn by ``seed``)."""
        train, validation = self.options.images_per_class, self.options.validation_images_per_class
        return dataclasses.replace(
            splits,
            train=splits.train if train is None else cap_per_class(splits.train, train, seed),
            validation=splits.validation if validation is None else cap_per_class(splits.validation, validation, seed),
        )

    def prepare_inputs(self, genotypes: Iterable[Any], repeats: int = 1) -> None:
        """Load now the images every one of ``genotypes`` will train on, for repeats 0 ... ``repeats - 1``.

        A network may ask for another input size than the proxy's (``nas scale`` multiplies it by
        gamma); this loads each such size once, so one the data cannot give fails before the first trial.
        """
        sizes = {
            self.space.lower(genotype, num_classes=self.splits.num_classes, **self.macro()).resolution
            for genotype in genotypes
        }
        for size in sorted(sizes - {self.splits.resolution}):
            for repeat in range(repeats):
                self.splits_of(repeat, size)

    def prepare(self) -> None:
        """Load the data and build one sample proxy network (shapes only), so that a missing dataset
        or a proxy setting the space refuses fails before the first trial, not as every trial."""
        sample = self.space.decode({d.name: d.choices[0] for d in self.space.decisions()})
        self._check_sample(sample, 2, self.reduction)  # the space's bounds first: before any data is read
        try:
            torch.empty(1, device=self.device)
        except (RuntimeError, AssertionError) as error:
            raise ValueError(f"device: {str(self.device)!r} is not usable here ({first_line(error)})") from None
        splits = self.splits
        self._check_sample(sample, splits.num_classes, self.macro())

    def _check_sample(self, sample: Any, num_classes: int, macro: dict[str, Any]) -> None:
        try:
            ir = self.space.lower(sample, num_classes=num_classes, **macro)
            build_on_meta(lambda: compile_ir(ir))
        except (ValueError, TypeError) as error:
            raise ValueError(f"proxy settings {self.reduction}: {first_line(error)}") from None

    def describe(self) -> dict[str, str]:
        """Facts for the run's report: the data each candidate trains and validates on, and the
        image files left out as unreadable (named in a warning when the data was loaded)."""
        splits = self.splits
        facts = {
            "dataset": f"{splits.name}, {splits.num_classes} classes at {splits.resolution} px",
            "images": f"{len(splits.train)} train, {len(splits.validation)} validation "  # type: ignore[arg-type]
            "(held out from the training data; the test split is not used)",
            "proxy network": f"{self.space.name} lowered with {self.macro()}",
            "training": f"{self.epochs} epochs, batch {self.batch_size}, {self.optimizer} lr {self.learning_rate:g}",
        }
        skipped = skipped_files(splits)
        if skipped:
            shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
            facts["unreadable images skipped"] = f"{len(skipped)}: {shown}"
        return facts

    def cheaper(self, metrics: Mapping[str, Any], factor: float) -> dict[str, Any] | None:
        """Image budgets that make a candidate like the measured one about ``factor`` times cheaper.

        Training time grows with the training images (``train_seconds``); the rest of ``seconds`` is
        mostly validation, which grows with the validation images. When the rest alone is more than
        half the target, the validation images are capped too (to half the target), else only the
        training images. None when ``metrics`` lack the timings or nothing needs to shrink.
        """
        total, train = metrics.get("seconds"), metrics.get("train_seconds")
        if not isinstance(total, (int, float)) or not isinstance(train, (int, float)) or train <= 0 or factor <= 1:
            return None
        splits, target, rest = self.splits, total / factor, max(0.0, total - train)
        classes = splits.num_classes
        capped = rest > target / 2  # validation is too slow by itself: half the target each
        train_target = target / 2 if capped else target - rest
        options = {"images_per_class": max(1, math.floor(len(splits.train) / classes * train_target / train))}  # type: ignore[arg-type]
        if capped:
            per_class = len(splits.validation) / classes  # type: ignore[arg-type]
            options["validation_images_per_class"] = max(10, math.floor(per_class * target / 2 / rest))
        return options

    def macro(self) -> dict[str, Any]:
        """The keyword arguments given to ``space.lower`` for the proxy network."""
        macro, keywords = dict(self.reduction), lower_keywords(self.space)
        if keywords is None or "resolution" in keywords:
            macro["resolution"] = self.splits.resolution
        return macro

    def evaluate(
        self, genotype: Any, trial_id: int, repeat: int = 0, report: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """Train and validate one candidate. Never raises for a bad candidate: see ``nas.evaluator``.

        ``repeat`` > 0 trains again with independent seeds and validates on an independent split
        (``nas.seeds.trial_seeds``, ``split_seed``): ``nas search --repeats``. ``report``, if given,
        is called after every epoch but the last with the metrics so far and the validation
        accuracy of a copy of the network (BatchNorm re-estimated as at the end), which early
        stopping (ASHA) ranks; the training itself, and so the final metrics, are unchanged by it.
        """
        splits = self.splits_of(repeat)  # a missing dataset is the user's mistake and raises
        seeds = trial_seeds(self.seed, trial_id, repeat)
        started, cpu_started = time.perf_counter(), time.process_time()
        metrics: dict[str, Any] = {"epochs": 0}
        interim = 0.0  # seconds of per-epoch validation for ``report``: outside the time limit and train_seconds
        try:
            ir = self.space.lower(genotype, num_classes=splits.num_classes, **self.macro())
            if ir.resolution != splits.resolution:  # the network asks for another input size: serve it
                splits = self.splits_of(repeat, ir.resolution)
            metrics.update(self._cost(genotype, ir, splits.num_classes))
            limit = (
                auto_time_limit(
                    metrics["macs"], self.epochs, len(splits.train) + self.calibration_examples, len(splits.validation)
                )
                if self.time_limit == "auto"
                else self.time_limit
            )
            metrics["time_limit"] = limit
            with torch.random.fork_rng(
                devices=[self.device] if self.device.type == "cuda" else [],
                device_type=self.device.type if self.device.type != "cpu" else "cuda",
            ):
                torch.manual_seed(seeds.other)
                model = compile_ir(ir, seed=seeds.init).to(self.device)
                if self.options.channels_last:
                    model = model.to(memory_format=torch.channels_last)  # oneDNN's faster CPU convolutions
                interim = self._train(model, splits, seeds, started, metrics, report, trial_id)
                metrics["accuracy"] = self.validated(model, splits, seeds.data_order)
                metrics["validation_images"] = len(splits.validation)  # type: ignore[arg-type]  (the reward's noise)
            self._check_time(started + interim, limit, "after validation")
        except CandidateFailure as failure:
            metrics["error"] = str(failure)
        except torch.OutOfMemoryError as error:
            metrics["error"] = f"out of memory: {first_line(error)}"
        except Exception as error:
            logger.debug("trial %d failed", trial_id, exc_info=True)
            metrics["error"] = f"{type(error).__name__}: {first_line(error)}"
        metrics["seconds"] = time.perf_counter() - started
        metrics["cpu_seconds"] = time.process_time() - cpu_started  # the cost on a busy machine, where seconds grow
        if "error" in metrics:
            metrics.pop("accuracy", None)
            logger.warning("trial %d failed after %.1f s: %s", trial_id, metrics["seconds"], metrics["error"])
        else:
            logger.info(
                "trial %d: accuracy %.4f, %d params, %.2f M MACs, %.1f s",
                trial_id,
                metrics["accuracy"],
                metrics["params"],
                metrics["macs"] / 1e6,
                metrics["seconds"],
            )
        return metrics

    def _cost(self, genotype: Any, ir: Any, num_classes: int) -> dict[str, Any]:
        meta = build_on_meta(lambda: compile_ir(ir))
        # Memory access next to MACs (ShuffleNet V2's G1-G4): what MACs miss about speed.
        macs, _, memory_access = count_cost(meta, ir.resolution)
        cost = {"params": count_params(meta), "macs": macs, "memory_access": memory_access, "resolution": ir.resolution}
        if self.full_cost:
            full_ir = self.space.lower(genotype, num_classes=num_classes)
            full = build_on_meta(lambda: compile_ir(full_ir))
            full_macs, _, full_memory_access = count_cost(full, full_ir.resolution)
            cost.update(full_params=count_params(full), full_macs=full_macs, full_memory_access=full_memory_access)
        return cost

    def recipe(self) -> Recipe:
        """The proxy's training settings as a ``nas.training.Recipe``: the loop is the one ``nas train`` runs."""
        return Recipe(
            epochs=self.epochs,
            batch_size=self.batch_size,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            weight_decay=self.weight_decay,
            gradient_clip=self.gradient_clip or None,
            drop_path="linear" if self.drop_path else "off",
        )

    def _train(
        self,
        model: nn.Module,
        splits: DatasetSplits,
        seeds: TrialSeeds,
        started: float,
        metrics: dict[str, Any],
        report: Callable[[dict[str, Any]], None] | None = None,
        trial_id: int = 0,
    ) -> float:
        """Train ``model`` in place; the seconds spent validating for ``report`` (0 without one).

        A display that listens (``nas.progress``) is told the epoch and the images per second every
        ``PROGRESS_SECONDS`` once the training has run ``PROGRESS_AFTER`` seconds."""
        count = len(splits.train)  # type: ignore[arg-type]
        steps_per_epoch = count // self.batch_size if count >= self.batch_size else 1
        # Single-period cosine decay over all steps (NASNet App. A.6; Loshchilov & Hutter, SGDR).
        trainer = Trainer(model, self.recipe(), self.epochs * steps_per_epoch, self.device)
        generator = torch.Generator().manual_seed(seeds.data_order)
        train_started, interim = time.perf_counter(), 0.0
        shown = [train_started]  # when progress was last told (``nas.progress``: a display on a terminal)
        total_steps = self.epochs * steps_per_epoch
        for epoch in range(self.epochs):
            where = f"at epoch {epoch + 1} of {self.epochs}"

            def after_step(interim: float = interim, where: str = where, epoch: int = epoch) -> None:
                now = time.perf_counter()
                self._check_time(started + interim, metrics.get("time_limit"), where)
                if now - train_started >= PROGRESS_AFTER and now - shown[0] >= PROGRESS_SECONDS and progress.listened():
                    shown[0] = now
                    rate = trainer.step * self.batch_size / max(1e-9, now - train_started - interim)
                    progress.tell(
                        f"trial {trial_id}: epoch {epoch + 1}/{self.epochs}, {rate:,.0f} images/s",
                        trainer.step / total_steps,
                    )

            try:
                stats = trainer.train_epoch(
                    iterate_batches(splits.train, self.batch_size, True, generator, drop_last=True),
                    after_step=after_step,
                    label=f"epoch {epoch + 1}",
                )
            except Diverged as error:
                raise CandidateFailure(str(error)) from None
            metrics.update(
                epochs=epoch + 1,
                final_train_loss=stats.loss,
                sotl=metrics.get("sotl", 0.0) + stats.loss,
                train_seconds=time.perf_counter() - train_started - interim,
            )
            logger.debug("epoch %d: train loss %.4f", epoch + 1, metrics["final_train_loss"])
            if report is not None and epoch + 1 < self.epochs:
                paused = time.perf_counter()
                value = self._interim_accuracy(model, splits, seeds)
                interim += time.perf_counter() - paused
                report({**metrics, "accuracy": value})
        return interim

    def _interim_accuracy(self, model: nn.Module, splits: DatasetSplits, seeds: TrialSeeds) -> float:
        """Validation accuracy of a copy of ``model`` as the final one is measured (its BatchNorm re-estimated).

        Under ``fork_rng``: the training transforms of the re-estimation (random crops, flips) and the
        loaders draw from the global generator, which the remaining epochs' augmentation, dropout and
        drop-path must find as they left it.
        """
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, device_type=self.device.type if self.device.type != "cpu" else "cuda"):
            return self.validated(copy.deepcopy(model), splits, seeds.data_order)

    def validated(self, model: nn.Module, splits: DatasetSplits, seed: int) -> float:
        """The validation accuracy of ``model`` after its BatchNorm statistics are re-estimated on
        ``calibration_examples`` training images drawn by ``seed``."""
        generator = torch.Generator().manual_seed(seed)
        recalibrate_batchnorm(model, splits.train, self.batch_size, self.calibration_examples, self.device, generator)
        return accuracy(model, splits.validation, self.device)

    @staticmethod
    def _check_time(started: float, limit: float | None, where: str) -> None:
        if limit is not None and time.perf_counter() - started > limit:
            raise CandidateFailure(f"time limit {limit:g} s exceeded {where}")

    def __repr__(self) -> str:
        name = self.dataset if isinstance(self.dataset, str) else self.dataset.name
        return (
            f"ProxyEvaluator(space={self.space.name!r}, dataset={name!r}, epochs={self.epochs}, "
            f"batch_size={self.batch_size}, optimizer={self.optimizer!r}, reduction={self.reduction})"
        )


PROGRESS_AFTER = 2.0  # seconds of training before a listening display is told (a quick candidate: never)
PROGRESS_SECONDS = 0.5  # how often, after that, it is told how far the candidate's training is
AUTO_LIMIT_FLOOR = 120.0  # seconds: start-up, data loading and a tiny network's whole training
AUTO_LIMIT_FACTOR = 20.0  # how many times its expected time a candidate may take
AUTO_LIMIT_THROUGHPUT = 1e9  # MACs per second assumed: a slow single CPU thread, so no GPU run is cut short


def auto_time_limit(macs: int, epochs: int, train_images: int, validation_images: int) -> float:
    """A candidate's time limit from its proxy cost: ``floor + factor * expected`` seconds.

    Expected time counts a training step as 3 forward passes (forward, backward for inputs and
    weights) over ``epochs`` x ``train_images``, plus one forward pass over the validation images,
    at ``AUTO_LIMIT_THROUGHPUT``. On digits (1 thread, this project's CPU): NASNet proxies of
    0.3-0.5 M MACs get 250-330 s and take 4-18 s; chain proxies of 2-19 M MACs get 1,000-7,900 s
    and take 20-100 s.
    """
    expected = macs * (3 * epochs * train_images + validation_images) / AUTO_LIMIT_THROUGHPUT
    return AUTO_LIMIT_FLOOR + AUTO_LIMIT_FACTOR * expected


@torch.no_grad()
def accuracy(model: nn.Module, dataset: Any, device: torch.device | str = "cpu", batch_size: int = 256) -> float:
    """Top-1 accuracy of ``model`` (in eval mode) on ``dataset``, a float in [0, 1]."""
    model.eval()
    correct, seen = 0, 0
    for images, labels in iterate_batches(dataset, batch_size):
        predictions = model(images.to(device)).argmax(dim=1)
        correct += int((predictions == labels.to(device)).sum())
        seen += len(labels)
    if seen == 0:
        raise ValueError("accuracy: the dataset is empty")
    return correct / seen
