"""The zero-cost evaluator: score an untrained candidate in about a second instead of training it.

Zero-cost proxies rank architectures from one pass (or one batch) through the network at
initialisation (Abdelfattah et al. 2021, arXiv 2101.08134; Mellor et al. 2021, arXiv 2006.04647).
``ZeroCostEvaluator`` lowers a genotype with the space's ``lower`` (at the space's
``proxy_reduction``, or at full size with ``size: full``), compiles it with ``nas.compile``, and
returns each requested score as its own metric, so the objective registry reads any of them
(``--objective metric:synflow``): ``synflow``, ``nwot``, ``jacov``, ``snip``, ``grad_norm``,
``plain``, ``l2_norm``, ``params`` and ``flops`` (definitions, and what each follows of NASLib's
reference, in ``evaluators.zero_cost_scores``; options in ``evaluators.zero_cost_options``).

One evaluator with a ``scores`` option rather than one per score: a candidate is built once and
its data-dependent scores share one forward pass, and a trial's record holds every score side by
side for the report. As NASLib scores its networks: PyTorch's default initialisation (``init:
engine`` takes ``nas.compile``'s), training mode (BatchNorm with the batch's statistics; dropout and
drop-path are switched off, so no random mask enters a score), one batch of 64 training images of
the run's dataset (loaded as the proxy evaluator loads it, ``ProxyEvaluator.splits_of``, with the
training split's augmentation), the cross-entropy loss. ``params`` is the trainable parameter count
(``nas.cost.count_params``, the engine's ``params`` everywhere: NASLib's column is in millions);
``flops`` is in MFLOPs, NASLib's unit.

Everything random in an evaluation is drawn from ``(seed, trial_id, repeat)`` (``nas.seeds``):
the weights from the ``init`` seed, the images of the batch from ``data_order``, their augmentation
from ``other``. The scores are repeatable: ``repeat`` r draws new weights and a new batch. The
caller sets the thread count (one per evaluation in a search).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import TensorDataset

from evaluators.proxy import ProxyEvaluator
from evaluators.zero_cost_options import DATA_SCORES, ZeroCostOptions
from evaluators.zero_cost_scores import RECTIFIERS, data_scores, flops, l2_norm, synflow
from nas import space as space_registry
from nas.compile import compile as compile_ir
from nas.cost import build_on_meta, count_params
from nas.data import DatasetSplits
from nas.errors import first_line
from nas.evaluator import EvaluatorBase
from nas.ops import DropPath
from nas.seeds import TrialSeeds, trial_seeds
from nas.space import SearchSpace

logger = logging.getLogger(__name__)


class ZeroCostEvaluator(EvaluatorBase[Any]):
    """The zero-cost scores of a candidate at initialisation (see the module docstring).

    ``space`` is a ``SearchSpace`` or its registered name; ``dataset``, ``data_dir``, ``download``
    and ``seed`` are the run's, as the proxy evaluator takes them. Options: ``scores`` (a list of
    names or ``all``, the default), ``size`` (``proxy`` or ``full``), ``batch_size`` (64),
    ``init`` (``pytorch`` or ``engine``); any other key is a ``lower`` override of the scored network
    (``resolution``, NB201's ``C``/``N``, ...), on top of the proxy's reduction or of the full size.
    """

    repeatable = True  # repeat r: new weights and a new batch

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
        self.options = ZeroCostOptions.of(self.space, options)
        self.scores = self.options.scores
        self.seed = seed
        # The proxy evaluator's data: the same loading, splits and resolution handling; the network
        # it lowers is ours (the proxy's reduction, or none at full size, with the overrides).
        self._data = ProxyEvaluator(self.space, dataset, data_dir, download, seed, **self.options.reduction)
        self._data.reduction = self.options.base_reduction(self.space)

    def metrics(self) -> tuple[str, ...]:
        """The chosen scores, the network's input size and the evaluation's seconds."""
        return (*self.scores, "resolution", "seconds")

    def prepare(self) -> None:
        """Load the data and build one sample network (shapes only), so that a missing dataset or a
        ``lower`` setting the space refuses fails before the first trial."""
        self._data.prepare()
        if "nwot" in self.scores:
            sample = self.space.decode({d.name: d.choices[0] for d in self.space.decisions()})
            ir = self.space.lower(sample, num_classes=self._data.splits.num_classes, **self._data.macro())
            if not any(isinstance(layer, RECTIFIERS) for layer in build_on_meta(lambda: compile_ir(ir)).modules()):
                logger.warning(
                    "nwot: the %s network has no ReLU layers, so no activation codes: its nwot is -1e8 "
                    "(NASLib's score for an undefined one)",
                    self.space.name,
                )

    def describe(self) -> dict[str, str]:
        """Facts for the run's report: the data, the batch, the network and the scores."""
        facts = self._data.describe()
        scored = {
            "dataset": facts["dataset"],
            "scores": ", ".join(self.scores),
            "network": f"{self.space.name} lowered with {self._data.macro()}, {self.options.init} initialisation",
        }
        if self.options.needs_data:
            scored["batch"] = (
                f"{min(self.options.batch_size, len(self._data.splits.train))} training images per candidate "  # type: ignore[arg-type]
                "(seeded by the trial), BatchNorm in training mode"
            )
        skipped = {key: value for key, value in facts.items() if key.startswith("unreadable")}
        return {**scored, **skipped}

    def evaluate(self, genotype: Any, trial_id: int, repeat: int = 0) -> dict[str, Any]:
        """The chosen scores of one candidate. Never raises for a bad candidate: see ``nas.evaluator``."""
        splits = self._data.splits_of(0)  # a missing dataset is the user's mistake and raises
        seeds = trial_seeds(self.seed, trial_id, repeat)
        started = time.perf_counter()
        metrics: dict[str, Any] = {}
        try:
            ir = self.space.lower(genotype, num_classes=splits.num_classes, **self._data.macro())
            if ir.resolution != splits.resolution:  # the network asks for another input size: serve it
                splits = self._data.splits_of(0, ir.resolution)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seeds.other)
                model = self.network(ir, seeds.init)
                batch = self.batch(splits, seeds) if self.options.needs_data else None
                metrics.update(self._scores(model, ir, batch))
            metrics["resolution"] = ir.resolution
        except torch.OutOfMemoryError as error:
            metrics = {"error": f"out of memory: {first_line(error)}"}
        except Exception as error:
            logger.debug("trial %d failed", trial_id, exc_info=True)
            metrics = {"error": f"{type(error).__name__}: {first_line(error)}"}
        metrics["seconds"] = time.perf_counter() - started
        if "error" in metrics:
            logger.warning("trial %d failed after %.1f s: %s", trial_id, metrics["seconds"], metrics["error"])
        return metrics

    def network(self, ir: Any, seed: int) -> nn.Module:
        """The compiled network, initialised from ``seed``, in the mode the scores read it in.

        ``init: pytorch`` re-initialises every layer with its own ``reset_parameters`` (PyTorch's
        defaults, which NASLib's networks keep) from a generator seeded by ``seed``; call it under
        ``torch.random.fork_rng``, as ``evaluate`` does.
        """
        model = compile_ir(ir, seed=seed)
        if self.options.init == "pytorch":
            torch.manual_seed(seed)
            for layer in model.modules():
                reset = getattr(layer, "reset_parameters", None)
                if callable(reset):
                    reset()
        model.train()
        for layer in model.modules():
            if isinstance(layer, (nn.modules.dropout._DropoutNd, DropPath)):
                layer.eval()
        return model

    def batch(self, splits: DatasetSplits, seeds: TrialSeeds) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` training images and labels drawn without replacement by ``seeds.data_order``
        (all of them if there are fewer), through the training split's transform."""
        train = splits.train
        count = len(train)  # type: ignore[arg-type]
        order = torch.randperm(count, generator=torch.Generator().manual_seed(seeds.data_order))
        order = order[: min(self.options.batch_size, count)]
        if isinstance(train, TensorDataset):
            images, labels = train.tensors
            return images[order], labels[order]
        items = [train[int(index)] for index in order]
        return torch.stack([image for image, _ in items]), torch.as_tensor([label for _, label in items])

    def _scores(self, model: nn.Module, ir: Any, batch: tuple[torch.Tensor, torch.Tensor] | None) -> dict[str, float]:
        wanted, values = self.scores, {}
        shape = (3, ir.resolution, ir.resolution)  # every stem takes RGB (nas.data)
        if batch is not None:
            values.update(data_scores(model, *batch, [name for name in wanted if name in DATA_SCORES]))
        if "synflow" in wanted:
            values["synflow"] = synflow(model, shape)
        if "l2_norm" in wanted:
            values["l2_norm"] = l2_norm(model)
        if "params" in wanted:
            values["params"] = count_params(model)
        if "flops" in wanted:
            values["flops"] = flops(model, shape)
        return {name: values[name] for name in wanted}

    def __repr__(self) -> str:
        return (
            f"ZeroCostEvaluator(space={self.space.name!r}, scores={list(self.scores)}, size={self.options.size!r}, "
            f"batch_size={self.options.batch_size}, init={self.options.init!r}, reduction={self._data.reduction})"
        )
