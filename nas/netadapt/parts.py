"""What one NetAdapt run works with: its start, width space and evaluators, and the evaluation of a proposal."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nas.api import Resolved
from nas.backend import EvaluationJob
from nas.compile import compile as compile_ir
from nas.errors import first_line
from nas.evaluator import Evaluator, make_evaluator
from nas.files import atomic_torch_save
from nas.netadapt.settings import NetAdaptSettings
from nas.seeds import trial_seeds
from nas.spaces.widths import WidthSpace

START_STREAM = 100_000  # the seed stream of the start's training (``trial_seeds``): no trial uses it


@dataclass
class NetAdaptParts:
    """The resolved start, its width space, the two evaluators, the given weights, and the evaluation's job."""

    start: Resolved
    space: WidthSpace
    finetune: Any
    latency: Any
    weights: dict[str, Any] | None
    job: EvaluationJob | None = None


def build_parts(settings: NetAdaptSettings) -> NetAdaptParts:
    """Resolve the start, load the data and given weights, build the evaluators (``ValueError`` for a mistake)."""
    start = settings.resolve_start()
    space = WidthSpace(start.space, start.genotype, settings.granularity)
    finetune = make_finetune(settings, space)
    try:
        latency = make_evaluator(
            "latency",
            space,
            seed=settings.seed,
            table=settings.table,
            resolution=settings.resolution,
            threads=settings.latency_threads,
            num_classes=finetune.splits.num_classes,
            measure=True,
            **settings.latency,
        )
    except TypeError as error:
        raise ValueError(f"latency: {error}") from None
    latency.prepare()
    weights = None if settings.weights is None else load_weights(settings.weights, start, finetune)
    return NetAdaptParts(start, space, finetune, latency, weights)


def make_finetune(settings: NetAdaptSettings, space: WidthSpace) -> Evaluator[Any]:
    finetune = make_evaluator(
        "finetune",
        space,
        seed=settings.seed,
        dataset=settings.dataset,
        data_dir=settings.data_dir,
        download=settings.download,
        steps=settings.short_term_steps,
        batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        resolution=settings.train_resolution,
    )
    finetune.prepare()
    return finetune


class NetAdaptEvaluation:
    """One proposal's short-term fine-tune from its parent's weights, in the driver's process or a Ray worker.

    The parent (the iteration's current network, ``parent``: its choices) and the trial whose
    weights it has (``parent_trial``; None: the start) come from the controller through the
    driver (``Driver(inputs=...)``); the weights are read from ``weights_dir`` (or are the
    start's), and the proposal's own are written there before its result is returned.
    """

    def __init__(self, space: WidthSpace, finetune: Any, weights_dir: Path, start_state: dict[str, Any]) -> None:
        self.space, self.finetune, self.weights_dir, self.start_state = space, finetune, weights_dir, start_state
        self.finetune.weights_dir = weights_dir
        self._cache: dict[int | None, dict[str, Any]] = {}

    def state(self, trial: int | None) -> dict[str, Any]:
        """The weights of the network of ``trial`` (None: the start); the last one asked is kept."""
        if trial not in self._cache:
            self._cache.clear()
            self._cache[trial] = (
                self.start_state
                if trial is None
                else read_state(
                    self.weights_dir / f"trial-{trial}.pt",
                    f"the fine-tuned weights of trial {trial}, which the run continues from, are lost: "
                    "start a new run (another --out)",
                )
            )
        return self._cache[trial]

    def __call__(
        self, genotype: Any, trial_id: int, parent: dict[str, Any] | None = None, parent_trial: int | None = None
    ) -> dict[str, Any]:
        parent_genotype = self.space.decode(parent if parent is not None else self.space.start_widths)
        self.finetune.set_parent(parent_genotype, self.state(parent_trial))
        return self.finetune.evaluate(genotype, trial_id, steps=0 if trial_id == 0 else None)


def netadapt_evaluation(settings: NetAdaptSettings, out: Path) -> NetAdaptEvaluation:
    """A run's evaluation built from its settings and run directory alone (in a Ray worker: the
    run directory must be on a file system the workers share, for the weights)."""
    start = settings.resolve_start()
    space = WidthSpace(start.space, start.genotype, settings.granularity)
    finetune = make_finetune(settings, space)
    if settings.weights is not None:
        state = load_weights(settings.weights, start, finetune)
    else:
        state = read_state(out / "start.pt", START_HINT)
    return NetAdaptEvaluation(space, finetune, out / "weights", state)


START_HINT = "delete it and the same command trains the start again (seeded: the same network)"


def read_state(path: Path, hint: str) -> dict[str, Any]:
    """A state dict the run wrote (``start.pt``, ``weights/trial-N.pt``), or a one-line ``ValueError`` naming
    the file, why it cannot be read, and ``hint``: what the user can do."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: missing; {hint}") from None
    except Exception as error:  # truncated, overwritten, not torch's format: torch raises many kinds
        detail = first_line(error, with_type=True, limit=160).split(". ")[0]
        raise ValueError(f"{path}: unreadable ({detail}); {hint}") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors; {hint}")
    return state


def load_weights(path: str, start: Resolved, finetune: Any) -> dict[str, Any]:
    """The state dict in ``path`` (a ``nas materialize`` .pt file or a plain state dict) for the start network."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"weights: {path}: no such file") from None
    except Exception as error:
        raise ValueError(f"weights: {path}: not a weights file ({type(error).__name__})") from None
    if isinstance(payload, dict) and "state_dict" in payload:
        if payload.get("genotype") != start.to_json():
            raise ValueError(f"weights: {path} holds another network than --from {start.name or 'the start'}")
        payload = payload["state_dict"]
    check_fits(payload, start, finetune, f"weights: {path}")
    return payload


def check_fits(state: Any, start: Resolved, finetune: Any, where: str) -> None:
    """``ValueError`` (``where`` first) unless ``state`` loads into the starting network."""
    try:
        compile_ir(finetune.lower(start.genotype)).load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0] if lines else type(error).__name__)[:200]
        raise ValueError(
            f"{where} does not fit the starting network with {finetune.splits.num_classes} classes ({detail})"
        ) from None


def trained_start(out: Path, settings: NetAdaptSettings, parts: NetAdaptParts) -> dict[str, Any]:
    """The starting network trained for ``initial_steps`` from scratch, kept in ``OUT/start.pt``."""
    path = out / "start.pt"
    if path.exists():
        state = read_state(path, START_HINT)
        check_fits(state, parts.start, parts.finetune, f"{path}: it")
        return state
    seeds = trial_seeds(settings.seed, START_STREAM)  # a stream no trial uses
    model = compile_ir(parts.finetune.lower(parts.start.genotype), seed=seeds.init)
    parts.finetune.train(model, settings.initial_steps, seeds.data_order, learning_rate=settings.initial_learning_rate)
    state = model.state_dict()
    atomic_torch_save(path, state)
    return state
