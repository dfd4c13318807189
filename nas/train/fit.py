"""One ``nas train`` training in a directory: the network, the data, and the checkpointed epochs.

``train_network`` trains with ``nas.training.Trainer``, validates every epoch (BatchNorm re-estimated
on a copy), saves ``checkpoint.pt`` (trainer state, data-order and global random-number states,
history) atomically before anything else, rewrites ``log.csv`` and ``curves.png``, and on the
next call resumes from it. The final network is written to ``model.pt``.
"""

from __future__ import annotations

import copy
import csv
import io
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset
from tqdm import tqdm

import nas
from nas.api import MODEL_FORMAT, read_model_file
from nas.compile import CellModule
from nas.cost import build_on_meta, count_params
from nas.data import DatasetSplits, iterate_batches, load_dataset
from nas.files import atomic_torch_save, atomic_write_text
from nas.seeds import split_seed, trial_seeds
from nas.serialization import FORMAT_VERSION
from nas.space import lower_keywords
from nas.train.augment import DEFAULT_CROP_FRACTION, EvalView, TrainAugment, source_resolution
from nas.train.settings import TrainSettings
from nas.training import Diverged, Trainer, evaluate, recalibrate_batchnorm

logger = logging.getLogger(__name__)

CHECKPOINT, LOG, CURVES, MODEL = "checkpoint.pt", "log.csv", "curves.png", "model.pt"
CHECKPOINT_FORMAT = "nas-train-checkpoint"
EVAL_BATCH = 256
SMALL_IMAGES = 64  # px: up to this training size the test view is the whole image (the CIFAR convention)


@dataclass
class Network:
    """A spec resolved for training: its genotype JSON, ``space.lower`` overrides, optional start weights."""

    genotype: dict[str, Any]
    lowering: dict[str, Any]
    start: dict[str, torch.Tensor] | None = None
    label: str = ""

    def build(self, num_classes: int, seed: int) -> nn.Module:
        ir = nas.lower(self.genotype, num_classes=num_classes, **self.lowering)
        model = nas.compile(ir, seed=seed)
        if self.start is not None:
            own = model.state_dict()
            usable = {k: v for k, v in self.start.items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(usable, strict=False)
            logger.info("%s: %d of %d tensors from the file; the others initialised", self.label, len(usable), len(own))
        return model


def resolve_network(spec: str, lowering: Mapping[str, Any], resolution: int) -> Network:
    """A preset, genotype JSON, search run directory, or a ``.pt`` written by ``nas materialize``/``nas train``."""
    start = None
    file_lowering: dict[str, Any] = {}
    path = Path(spec)
    if path.suffix == ".pt" and path.is_file():
        payload = read_model_file(path)  # every field checked, one line naming the bad one
        genotype, start, file_lowering = payload["genotype"], dict(payload["state_dict"]), dict(payload["lowering"])
    else:
        genotype = nas.resolve(spec).to_json()
    space = nas.resolve(genotype).space
    merged = {**file_lowering, **lowering}
    keywords = lower_keywords(space)
    for key in merged:
        if keywords is not None and key not in keywords:
            raise ValueError(f"--set {key}: not a setting of space {space.name!r}; valid: {sorted(keywords)}")
    if keywords is None or "resolution" in keywords:
        merged["resolution"] = resolution
    return Network(genotype, merged, start, spec)


def count_network(network: Network, num_classes: int) -> int:
    """Parameters of ``network`` for ``num_classes``, counted on the meta device (``ValueError`` if too big)."""
    ir = nas.lower(network.genotype, num_classes=num_classes, **network.lowering)
    return count_params(build_on_meta(lambda: nas.compile(ir)))


# --- the data ---------------------------------------------------------------------------------------


@dataclass
class TrainData:
    """The splits at the source resolution, and the training resolution."""

    splits: DatasetSplits
    resolution: int
    crop_fraction: float

    def view(self, resolution: int | None = None) -> EvalView:
        """The test-time transform at ``resolution`` (default: the training resolution)."""
        return EvalView(self.resolution if resolution is None else resolution, self.crop_fraction)

    @property
    def test(self) -> Dataset:
        return self.splits.test if self.splits.test is not None else self.splits.validation

    @property
    def test_name(self) -> str:
        return "test" if self.splits.test is not None else "validation (the data set has no test split)"


def load_train_data(settings: TrainSettings) -> TrainData:
    """Load the data once, at a size that serves the training crop and every test view."""
    seed = split_seed(settings.seed, 0)  # the validation split of a search's repeat 0

    def load(size: int | None) -> DatasetSplits:
        return load_dataset(
            settings.dataset,
            settings.data_dir,
            settings.download,
            size,
            seed,
            settings.validation_fraction,
            augment=False,
        )

    resolution = settings.resolution
    if resolution is None:
        native = load(None)
        resolution = native.resolution
    crop = settings.test_crop
    if crop is None:  # CIFAR-sized images are tested whole; ImageNet-sized ones on the central 87.5%
        crop = 1.0 if resolution <= SMALL_IMAGES else DEFAULT_CROP_FRACTION
    splits = load(source_resolution([resolution, *settings.fixres], crop))
    return TrainData(splits, resolution, crop)


def tensors_of(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All images and labels of ``dataset`` in memory (Noisy Student re-mixes them)."""
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[0], dataset.tensors[1]
    images, labels = zip(*iterate_batches(dataset, EVAL_BATCH))
    return torch.cat(images), torch.cat(labels)


# --- one training, checkpointed ----------------------------------------------------------------------


def batches_of(dataset: Dataset, batch_size: int, generator: torch.Generator | None = None) -> Any:
    """Shuffled full batches with a ``generator`` (training), else every example in order (evaluation)."""
    return iterate_batches(dataset, batch_size, generator is not None, generator, drop_last=generator is not None)


def with_progress(batches: Any, total: int, label: str, enabled: bool) -> Any:
    if not enabled:
        return batches

    return tqdm(batches, total=total, desc=label, leave=False, disable=None, unit="batch")


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path``, or ``None``; ``ValueError`` for a file that is not one."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"{path}: unreadable checkpoint ({type(error).__name__}); move it away to start over"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a nas train checkpoint")
    return state


HISTORY_COLUMNS = (
    "epoch",
    "learning_rate",
    "train_loss",
    "train_accuracy",
    "validation_loss",
    "validation_accuracy",
    "seconds",
)


def write_log(out: Path, rows: list[dict[str, Any]], columns: tuple[str, ...] = HISTORY_COLUMNS) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / LOG, buffer.getvalue())


@dataclass
class Trained:
    """The outcome of one training: the model to keep, its accuracies, and the per-epoch history."""

    model: nn.Module
    network: Network
    history: list[dict[str, Any]]
    validation_accuracy: float
    test_accuracy: float
    params: int


def train_network(
    out: Path,
    network: Network,
    data: TrainData,
    train_set: Dataset,
    settings: TrainSettings,
    trial: int,
    echo: Callable[[str], None],
) -> Trained:
    """Train ``network`` on ``train_set`` in ``out`` (resuming its checkpoint); write model, log, curves."""
    from nas.plotting import plot_training  # lazy: matplotlib only to draw curves.png

    out.mkdir(parents=True, exist_ok=True)
    epochs = settings.epochs
    seeds = trial_seeds(settings.seed, trial)
    splits = data.splits
    device = torch.device(settings.device)
    torch.manual_seed(seeds.other)
    model = network.build(splits.num_classes, seeds.init)
    model.to(device)
    schedule = "off" if not settings.drop_path else "linear" if isinstance(model, CellModule) else "constant"
    count = len(train_set)  # type: ignore[arg-type]
    steps_per_epoch = count // settings.batch_size if count >= settings.batch_size else 1
    recipe = settings.recipe(schedule, epochs)
    trainer = Trainer(model, recipe, epochs * steps_per_epoch, device)
    generator = torch.Generator().manual_seed(seeds.data_order)
    augment = train_augment(settings, data)
    view = data.view()
    history: list[dict[str, Any]] = []
    state = read_checkpoint(out / CHECKPOINT)
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        generator.set_state(state["data_order"])
        _set_rng_state(state["rng"])
        history = list(state["history"])
        echo(f"{out}: resuming after epoch {state['epoch']} of {epochs}")
    else:
        echo(
            f"{out}: training {network.label} ({sum(p.numel() for p in model.parameters()):,} parameters) for "
            f"{epochs} epochs on {len(train_set):,} images at {data.resolution} px; {augment}"
        )
    for epoch in range(len(history), epochs):
        started = time.perf_counter()
        batches = with_progress(
            batches_of(train_set, settings.batch_size, generator),
            steps_per_epoch,
            f"epoch {epoch + 1}/{epochs}",
            settings.progress,
        )
        try:
            stats = trainer.train_epoch(batches, transform=augment, label=f"epoch {epoch + 1}")
        except Diverged as error:
            raise ValueError(f"{out}: training diverged ({error}); try a lower --learning-rate") from None
        snapshot = precise_batchnorm(
            copy.deepcopy(trainer.evaluation_model), train_set, settings, seeds.data_order, view
        )
        val_loss, val_accuracy = evaluate(snapshot, batches_of(splits.validation, EVAL_BATCH), device, view)
        del snapshot
        row = {
            "epoch": epoch + 1,
            "learning_rate": trainer.optimizer.param_groups[0]["lr"],
            "train_loss": stats.loss,
            "train_accuracy": stats.accuracy,
            "validation_loss": val_loss,
            "validation_accuracy": val_accuracy,
            "seconds": time.perf_counter() - started,
        }
        history.append(row)
        atomic_torch_save(
            out / CHECKPOINT,
            {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch + 1,
                "trainer": trainer.state_dict(),
                "data_order": generator.get_state(),
                "rng": _rng_state(device),
                "history": history,
            },
        )
        write_log(out, history)
        plot_training(history, out / CURVES, title=f"{network.label} on {splits.name}")
        echo(
            f"epoch {epoch + 1}/{epochs}: train loss {stats.loss:.4f} acc {stats.accuracy:.4f} | validation loss "
            f"{val_loss:.4f} acc {val_accuracy:.4f} | {row['seconds']:.1f} s"
        )
    # Whole even if a kill came between the last checkpoint and them
    write_log(out, history)
    plot_training(history, out / CURVES, title=f"{network.label} on {splits.name}")
    final = precise_batchnorm(trainer.evaluation_model, train_set, settings, seeds.data_order, view)
    _, val_accuracy = evaluate(final, batches_of(splits.validation, EVAL_BATCH), device, view)
    _, test_accuracy = evaluate(final, batches_of(data.test, EVAL_BATCH), device, view)
    final = final.to("cpu")
    atomic_model_save(out / MODEL, final, network, splits.num_classes)
    return Trained(final, network, history, val_accuracy, test_accuracy, sum(p.numel() for p in final.parameters()))


def precise_batchnorm(
    model: nn.Module,
    train_set: Dataset,
    settings: TrainSettings,
    seed: int,
    view: Callable[[torch.Tensor], torch.Tensor],
) -> nn.Module:
    """BatchNorm statistics re-estimated on ``settings.precise_bn`` training images at the test view
    ("precise BN", Wu & Johnson, arXiv 2105.07576 §3): running averages with TF's momentum 0.01
    (MobileNetV3, EfficientNet) lag far behind the weights in a short training. Draws no global
    random numbers (its own generator), so it leaves the training's stream as it was."""

    if settings.precise_bn:
        recalibrate_batchnorm(
            model,
            train_set,
            settings.batch_size,
            settings.precise_bn,
            settings.device,
            torch.Generator().manual_seed(seed),
            view,
        )
    return model


def train_augment(settings: TrainSettings, data: TrainData) -> TrainAugment:
    """The training transform (``ValueError`` for settings the data cannot take, before anything is written)."""
    mirror = data.splits.mirror if settings.mirror is None else settings.mirror
    return TrainAugment(
        data.resolution,
        scale=(settings.crop_scale, 1.0),
        mirror=mirror,
        randaugment_ops=settings.randaugment_ops,
        randaugment_magnitude=settings.randaugment_magnitude,
        normalization=data.splits.normalization,
    )


def atomic_model_save(path: Path, model: nn.Module, network: Network, num_classes: int) -> None:
    atomic_torch_save(
        path,
        {
            "format": MODEL_FORMAT,
            "version": FORMAT_VERSION,
            "genotype": network.genotype,
            "num_classes": num_classes,
            "state_dict": model.state_dict(),
            "lowering": dict(network.lowering),
        },
    )
