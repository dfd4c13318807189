"""``nas train``: train a found architecture with a standard recipe, then FixRes and Noisy Student.

One run directory ``DIR`` holds a training that survives being killed:

- ``train.json``: the settings (a rerun with other settings is refused) and, when done, the results;
- ``checkpoint.pt``: after every epoch, the ``Trainer`` state with the random-number states and
  the per-epoch history, written atomically and loadable with ``weights_only=True``; the same
  command resumes from it to the same weights as an uninterrupted run (same machine, threads and
  library versions);
- ``log.csv`` and ``curves.png``: loss and accuracy per epoch, training and validation;
- ``model.pt``: the trained network, ``nas.load_model`` opens it (the moving average with ``--ema``);
- ``fixres.json`` and ``model-fixres-R.pt`` (``--fixres R``): accuracy at R_train, at R before and
  after the FixRes fine-tune (``nas.fixres``);
- Noisy Student (``--noisy-student``): ``teacher/`` and ``student-K/`` are such directories, one per
  iteration; ``noisy_student.json`` and ``log.csv`` hold the accuracy of each.

The validation split is held out from the training data exactly as a search holds it out (same
seed, same fraction: the numbers compare with the proxy's); the test split is used only to report.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, TensorDataset

from nas.augment import DEFAULT_CROP_FRACTION, DEFAULT_CROP_SCALE, EvalView, TrainAugment, source_resolution
from nas.data import DEFAULT_VALIDATION_FRACTION, DatasetSplits, load_dataset
from nas.files import atomic_torch_save, atomic_write_text
from nas.noisy_student import BALANCES, DEFAULT_THRESHOLD, load_unlabeled_folder, pseudo_label, teacher_probabilities
from nas.seeds import split_seed, trial_seeds
from nas.training import OPTIMIZERS, Diverged, Recipe, Trainer, evaluate

logger = logging.getLogger(__name__)

SETTINGS_FILE, CHECKPOINT, LOG, CURVES, MODEL = "train.json", "checkpoint.pt", "log.csv", "curves.png", "model.pt"
FIXRES_FILE, NOISY_STUDENT_FILE = "fixres.json", "noisy_student.json"
CHECKPOINT_FORMAT = "nas-train-checkpoint"
DEFAULT_LEARNING_RATE = {"sgd": 0.1, "adamw": 2e-3}
DEFAULT_WEIGHT_DECAY = {"sgd": 5e-4, "adamw": 0.05}
DEFAULT_WARMUP_FRACTION = 0.05  # of the epochs (EfficientNet: 5 of 350; Goyal et al.: 5 of 90)
FIXRES_WEIGHT_DECAY = 1e-4  # the FixRes reference fine-tune: SGD, momentum 0.9, weight decay 1e-4
EVAL_BATCH = 256
SMALL_IMAGES = 64  # px: up to this training size the test view is the whole image (the CIFAR convention)


@dataclass(frozen=True)
class TrainSettings:
    """Everything ``nas train`` takes; ``identity`` is what a resumed run must agree with."""

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

    def validate(self) -> None:
        for name, low in (("epochs", 1), ("batch_size", 1), ("fixres_epochs", 1), ("iterations", 1), ("threads", 1),
                          ("randaugment_ops", 0), ("precise_bn", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"--{name.replace('_', '-')}: must be an integer >= {low}, got {value!r}")
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
        return Recipe(epochs=epochs, batch_size=self.batch_size, optimizer=self.optimizer,  # type: ignore[arg-type]
                      learning_rate=self.learning_rate or DEFAULT_LEARNING_RATE[self.optimizer],
                      weight_decay=(DEFAULT_WEIGHT_DECAY[self.optimizer] if self.weight_decay is None
                                    else self.weight_decay),
                      warmup_epochs=warmup, label_smoothing=self.label_smoothing, decay_norms_and_biases=False,
                      gradient_clip=self.gradient_clip or None, drop_path=drop_path,  # type: ignore[arg-type]
                      ema_decay=self.ema_decay, amp=self.amp)


# --- the network --------------------------------------------------------------------------------------

@dataclass
class Network:
    """A spec resolved for training: its genotype JSON, ``space.lower`` overrides, optional start weights."""

    genotype: dict[str, Any]
    lowering: dict[str, Any]
    start: dict[str, torch.Tensor] | None = None
    label: str = ""

    def build(self, num_classes: int, seed: int) -> tuple[nn.Module, Any]:
        import nas

        ir = nas.lower(self.genotype, num_classes=num_classes, **self.lowering)
        model = nas.compile(ir, seed=seed)
        if self.start is not None:
            own = model.state_dict()
            usable = {k: v for k, v in self.start.items() if k in own and own[k].shape == v.shape}
            model.load_state_dict(usable, strict=False)
            logger.info("%s: %d of %d tensors from the file; the others initialised", self.label, len(usable), len(own))
        return model, ir


def resolve_network(spec: str, lowering: Mapping[str, Any], resolution: int) -> Network:
    """A preset, genotype JSON, search run directory, or a ``.pt`` written by ``nas materialize``/``nas train``."""
    import nas
    from nas.space import lower_keywords

    start = None
    file_lowering: dict[str, Any] = {}
    path = Path(spec)
    if path.suffix == ".pt" and path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # noqa: BLE001  (a corrupt or foreign file is the user's)
            raise ValueError(f"{spec}: not a model file ({type(error).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != nas.api.MODEL_FORMAT:
            raise ValueError(f"{spec}: not a nas model file (nas materialize --out FILE.pt writes one)")
        genotype = nas.resolve(payload["genotype"]).to_json()
        start, file_lowering = payload["state_dict"], dict(payload.get("lowering") or {})
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
    import nas
    from nas.cost import build_on_meta, count_params

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
        return load_dataset(settings.dataset, settings.data_dir, settings.download, size, seed,
                            settings.validation_fraction, augment=False)

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
    from nas.data import iterate_batches

    images, labels = zip(*iterate_batches(dataset, EVAL_BATCH))
    return torch.cat(images), torch.cat(labels)


# --- one training, checkpointed ----------------------------------------------------------------------

def _batches(dataset: Dataset, batch_size: int, generator: torch.Generator | None = None) -> Any:
    from nas.data import iterate_batches

    return iterate_batches(dataset, batch_size, generator is not None, generator, drop_last=generator is not None)


def _with_progress(batches: Any, total: int, label: str, enabled: bool) -> Any:
    if not enabled:
        return batches
    from tqdm import tqdm

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
    except Exception as error:  # noqa: BLE001
        raise ValueError(f"{path}: unreadable checkpoint ({type(error).__name__}); move it away to start "
                         "over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a nas train checkpoint")
    return state


HISTORY_COLUMNS = ("epoch", "learning_rate", "train_loss", "train_accuracy", "validation_loss",
                   "validation_accuracy", "seconds")


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
    ir: Any
    network: Network
    history: list[dict[str, Any]]
    validation_accuracy: float
    test_accuracy: float
    params: int


def train_network(out: Path, network: Network, data: TrainData, train_set: Dataset, settings: TrainSettings,
                  trial: int, echo: Callable[[str], None], epochs: int | None = None) -> Trained:
    """Train ``network`` on ``train_set`` in ``out`` (resuming its checkpoint); write model, log, curves."""
    from nas.compile import CellModule
    from nas.plotting import plot_training

    out.mkdir(parents=True, exist_ok=True)
    epochs = settings.epochs if epochs is None else epochs
    seeds = trial_seeds(settings.seed, trial)
    splits = data.splits
    device = torch.device(settings.device)
    torch.manual_seed(seeds.other)
    model, ir = network.build(splits.num_classes, seeds.init)
    model.to(device)
    schedule = ("off" if not settings.drop_path else "linear" if isinstance(model, CellModule) else "constant")
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
        echo(f"{out}: training {network.label} ({sum(p.numel() for p in model.parameters()):,} parameters) for "
             f"{epochs} epochs on {len(train_set):,} images at {data.resolution} px; {augment}")
    for epoch in range(len(history), epochs):
        started = time.perf_counter()
        batches = _with_progress(_batches(train_set, settings.batch_size, generator), steps_per_epoch,
                                 f"epoch {epoch + 1}/{epochs}", settings.progress)
        try:
            stats = trainer.train_epoch(batches, transform=augment, label=f"epoch {epoch + 1}")
        except Diverged as error:
            raise ValueError(f"{out}: training diverged ({error}); try a lower --learning-rate") from None
        snapshot = precise_batchnorm(copy.deepcopy(trainer.evaluation_model), train_set, settings, seeds.data_order,
                                     view)
        val_loss, val_accuracy = evaluate(snapshot, _batches(splits.validation, EVAL_BATCH), device, view)
        del snapshot
        row = {"epoch": epoch + 1, "learning_rate": trainer.optimizer.param_groups[0]["lr"],
               "train_loss": stats.loss, "train_accuracy": stats.accuracy, "validation_loss": val_loss,
               "validation_accuracy": val_accuracy, "seconds": time.perf_counter() - started}
        history.append(row)
        atomic_torch_save(out / CHECKPOINT, {"format": CHECKPOINT_FORMAT, "epoch": epoch + 1,
                                             "trainer": trainer.state_dict(), "data_order": generator.get_state(),
                                             "rng": _rng_state(device), "history": history})
        write_log(out, history)
        plot_training(history, out / CURVES, title=f"{network.label} on {splits.name}")
        echo(f"epoch {epoch + 1}/{epochs}: train loss {stats.loss:.4f} acc {stats.accuracy:.4f} | validation loss "
             f"{val_loss:.4f} acc {val_accuracy:.4f} | {row['seconds']:.1f} s")
    # Whole even if a kill came between the last checkpoint and them
    write_log(out, history)
    plot_training(history, out / CURVES, title=f"{network.label} on {splits.name}")
    final = precise_batchnorm(trainer.evaluation_model, train_set, settings, seeds.data_order, view)
    _, val_accuracy = evaluate(final, _batches(splits.validation, EVAL_BATCH), device, view)
    _, test_accuracy = evaluate(final, _batches(data.test, EVAL_BATCH), device, view)
    final = final.to("cpu")
    atomic_model_save(out / MODEL, final, network, splits.num_classes)
    return Trained(final, ir, network, history, val_accuracy, test_accuracy, sum(p.numel() for p in final.parameters()))


def precise_batchnorm(model: nn.Module, train_set: Dataset, settings: TrainSettings, seed: int,
                      view: Callable[[torch.Tensor], torch.Tensor]) -> nn.Module:
    """BatchNorm statistics re-estimated on ``settings.precise_bn`` training images at the test view
    ("precise BN", Wu & Johnson, arXiv 2105.07576 §3): running averages with TF's momentum 0.01
    (MobileNetV3, EfficientNet) lag far behind the weights in a short training. Draws no global
    random numbers (its own generator), so it leaves the training's stream as it was."""
    from nas.training import recalibrate_batchnorm

    if settings.precise_bn:
        recalibrate_batchnorm(model, train_set, settings.batch_size, settings.precise_bn, settings.device,
                              torch.Generator().manual_seed(seed), view)
    return model


def train_augment(settings: TrainSettings, data: TrainData) -> TrainAugment:
    """The training transform (``ValueError`` for settings the data cannot take, before anything is written)."""
    mirror = data.splits.mirror if settings.mirror is None else settings.mirror
    return TrainAugment(data.resolution, scale=(settings.crop_scale, 1.0), mirror=mirror,
                        randaugment_ops=settings.randaugment_ops, randaugment_magnitude=settings.randaugment_magnitude,
                        normalization=data.splits.normalization)


def atomic_model_save(path: Path, model: nn.Module, network: Network, num_classes: int) -> None:
    from nas.api import MODEL_FORMAT
    from nas.serialization import FORMAT_VERSION

    atomic_torch_save(path, {"format": MODEL_FORMAT, "version": FORMAT_VERSION, "genotype": network.genotype,
                             "num_classes": num_classes, "state_dict": model.state_dict(),
                             "lowering": dict(network.lowering)})


# --- FixRes -------------------------------------------------------------------------------------------

def run_fixres(out: Path, trained: Trained, data: TrainData, train_set: Dataset, settings: TrainSettings,
               echo: Callable[[str], None]) -> dict[str, Any]:
    """FixRes at every ``settings.fixres`` resolution, from ``trained``, fine-tuned on the labeled
    ``train_set``; resumes per resolution. The adapting BatchNorm layers' statistics are re-estimated
    at the end on ``precise_bn`` images at R_test: what the reference's 56 epochs at momentum 0.1
    converge to, which a short fine-tune at TF's momentum 0.01 would leave half-way."""
    from nas.fixres import FixResMode, fixres_parts, prepare_fixres

    path = out / FIXRES_FILE
    document = json.loads(path.read_text()) if path.exists() else {"train_resolution": data.resolution, "rows": []}
    done = {row["test_resolution"] for row in document["rows"]}
    device = torch.device(settings.device)
    splits = data.splits
    for r in settings.fixres:
        if r in done:
            continue
        seeds = trial_seeds(settings.seed, 0, repeat=r)
        torch.manual_seed(seeds.other)
        model = copy.deepcopy(trained.model).to(device)
        parts = fixres_parts(model)
        prepare_fixres(model, parts)
        view = data.view(r)
        _, before = evaluate(model, _batches(data.test, EVAL_BATCH), device, view)
        _, val_before = evaluate(model, _batches(splits.validation, EVAL_BATCH), device, view)
        learning_rate = settings.fixres_learning_rate or 0.1 * (settings.learning_rate
                                                               or DEFAULT_LEARNING_RATE[settings.optimizer])
        recipe = Recipe(epochs=settings.fixres_epochs, batch_size=settings.batch_size, learning_rate=learning_rate,
                        weight_decay=FIXRES_WEIGHT_DECAY, gradient_clip=None, amp=settings.amp)
        count = len(train_set)  # type: ignore[arg-type]
        steps = max(1, count // settings.batch_size)
        trainer = Trainer(model, recipe, settings.fixres_epochs * steps, device, schedules=False)
        generator = torch.Generator().manual_seed(seeds.data_order)
        mode = FixResMode(parts)
        for epoch in range(settings.fixres_epochs):
            batches = _with_progress(_batches(train_set, settings.batch_size, generator), steps,
                                     f"FixRes {r} px {epoch + 1}/{settings.fixres_epochs}", settings.progress)
            try:
                trainer.train_epoch(batches, transform=view, set_mode=mode, label=f"FixRes epoch {epoch + 1}")
            except Diverged as error:
                raise ValueError(f"FixRes at {r} px diverged ({error}); try a lower --fixres-learning-rate") from None
        if settings.precise_bn:
            from nas.training import recalibrate_batchnorm

            recalibrate_batchnorm(model, train_set, settings.batch_size, settings.precise_bn, device,
                                  torch.Generator().manual_seed(seeds.data_order), view,
                                  within=[model.get_submodule(name) for name in parts.adapting])
        _, after = evaluate(model, _batches(data.test, EVAL_BATCH), device, view)
        _, val_after = evaluate(model, _batches(splits.validation, EVAL_BATCH), device, view)
        fixed = Network(trained.network.genotype, {**trained.network.lowering, "resolution": r}
                        if "resolution" in trained.network.lowering else trained.network.lowering)
        atomic_model_save(out / f"model-fixres-{r}.pt", model.to("cpu"), fixed, splits.num_classes)
        row = {"test_resolution": r, "accuracy_at_train_resolution": trained.test_accuracy,
               "before": before, "after": after, "validation_before": val_before, "validation_after": val_after,
               "rule": parts.family, "trained_parameters": list(parts.trained),
               "adapting_modules": list(parts.adapting)}
        document["rows"].append(row)
        atomic_write_text(path, json.dumps(document, indent=2))
        echo(f"FixRes {data.resolution} -> {r} px ({parts.family}): {data.test_name} accuracy at {data.resolution} px "
             f"{trained.test_accuracy:.4f}; at {r} px {before:.4f} before, {after:.4f} after fine-tuning")
    return document


# --- Noisy Student ------------------------------------------------------------------------------------

def noisy_student_data(data: TrainData, settings: TrainSettings) -> tuple[TensorDataset, torch.Tensor,
                                                                         torch.Tensor | None]:
    """``(labeled, unlabeled images, their hidden labels or None)``; ``ValueError`` for unusable ones."""
    from nas.data import stratified_split

    splits = data.splits
    images, labels = tensors_of(splits.train)
    if settings.unlabeled_fraction is not None:
        labeled, hidden = stratified_split(labels.numpy(), settings.unlabeled_fraction, settings.seed)
        return (TensorDataset(images[torch.as_tensor(labeled)], labels[torch.as_tensor(labeled)]),
                images[torch.as_tensor(hidden)], labels[torch.as_tensor(hidden)])
    if splits.normalization is None:
        raise ValueError(f"--unlabeled: data set {splits.name!r} does not say how its images are normalised")
    unlabeled = load_unlabeled_folder(settings.unlabeled, images.shape[-1], splits.normalization)  # type: ignore[arg-type]
    return TensorDataset(images, labels), unlabeled, None


def smoothed(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Rows of class probabilities with label smoothing applied, as cross-entropy applies it to indices."""
    return targets * (1.0 - smoothing) + smoothing / targets.shape[1]


def run_noisy_student(out: Path, network: Network, data: TrainData, settings: TrainSettings,
                      prepared: tuple[TensorDataset, torch.Tensor, torch.Tensor | None],
                      echo: Callable[[str], None]) -> Trained:
    """Teacher on the labeled images, then ``iterations`` students on labeled + pseudo-labeled ones.

    Label smoothing is applied to the labeled and hard pseudo-labeled targets, not to soft ones
    (google-research/noisystudent ``main.py``)."""
    splits = data.splits
    labeled_set, unlabeled, hidden_labels = prepared
    images, labels = labeled_set.tensors
    student = network if settings.student is None else resolve_network(settings.student, settings.lowering,
                                                                       data.resolution)
    path = out / NOISY_STUDENT_FILE
    document: dict[str, Any] = {"labeled": len(labels), "unlabeled": len(unlabeled), "soft": settings.soft_labels,
                                "threshold": settings.threshold, "balance": settings.balance, "iterations": []}
    echo(f"Noisy Student: {len(labels):,} labeled and {len(unlabeled):,} unlabeled images, "
         f"{settings.iterations} student iteration(s)")
    teacher = train_network(out / "teacher", network, data, labeled_set, settings, 0, echo)
    document["iterations"].append(_iteration_row(0, "teacher", teacher, data, None))
    _write_noisy_student(out, path, document, echo)
    one_hot = smoothed(nn.functional.one_hot(labels, splits.num_classes).float(), settings.label_smoothing)
    for iteration in range(1, settings.iterations + 1):
        probabilities = teacher_probabilities(teacher.model.to(settings.device), unlabeled, data.view(),
                                              device=settings.device)
        pseudo = pseudo_label(probabilities, settings.threshold, settings.balance)  # type: ignore[arg-type]
        teacher.model.to("cpu")
        mixed = TensorDataset(torch.cat([images, unlabeled[torch.as_tensor(pseudo.index, dtype=torch.long)]]),
                              torch.cat([one_hot, pseudo.targets(settings.soft_labels) if settings.soft_labels
                                         else smoothed(pseudo.targets(False), settings.label_smoothing)]))
        trained = train_network(out / f"student-{iteration}", student, data, mixed, settings, iteration, echo)
        confident = probabilities.max(dim=1).values.numpy() >= settings.threshold
        facts = {"unlabeled": len(unlabeled), "kept_at_threshold": pseudo.kept, "used": len(pseudo.index),
                 "per_class_kept": np.bincount(pseudo.classes[confident], minlength=splits.num_classes).tolist(),
                 "per_class_used": np.bincount(pseudo.classes[pseudo.index], minlength=splits.num_classes).tolist()}
        if hidden_labels is not None:  # how right the teacher was about the images whose labels were hidden
            facts["accuracy_on_hidden_labels"] = float((probabilities.argmax(dim=1) == hidden_labels).float().mean())
        document["iterations"].append(_iteration_row(iteration, "student", trained, data, facts))
        _write_noisy_student(out, path, document, echo)
        teacher = trained
    return teacher


def _iteration_row(iteration: int, role: str, trained: Trained, data: TrainData,
                   pseudo: dict[str, Any] | None) -> dict[str, Any]:
    row = {"iteration": iteration, "role": role, "params": trained.params,
           "validation_accuracy": trained.validation_accuracy, "test_accuracy": trained.test_accuracy,
           "test_split": data.test_name}
    if pseudo is not None:
        row["pseudo_labels"] = pseudo
    return row


def _write_noisy_student(out: Path, path: Path, document: dict[str, Any], echo: Callable[[str], None]) -> None:
    atomic_write_text(path, json.dumps(document, indent=2))
    write_log(out, document["iterations"], ("iteration", "role", "params", "validation_accuracy", "test_accuracy"))
    row = document["iterations"][-1]
    extra = ""
    if "pseudo_labels" in row:
        facts = row["pseudo_labels"]
        extra = f" ({facts['used']:,} pseudo-labeled images from {facts['kept_at_threshold']:,} kept)"
    echo(f"Noisy Student iteration {row['iteration']} ({row['role']}{extra}): validation accuracy "
         f"{row['validation_accuracy']:.4f}, test accuracy {row['test_accuracy']:.4f}")


# --- the command --------------------------------------------------------------------------------------

def check_train_directory(out: Path, settings: TrainSettings) -> bool:
    """``True`` if ``out`` holds this training (to resume or report), ``False`` if it is new or empty;
    ``ValueError`` if it holds something else, or a training with other settings."""
    from nas.runs import check_run_directory

    check_run_directory(out)
    if not out.exists() or not any(out.iterdir()):
        return False
    recorded = out / SETTINGS_FILE
    if not recorded.exists():
        raise ValueError(f"{out}: exists and is not a nas train directory; choose a new --out")
    try:
        previous = json.loads(recorded.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ValueError(f"{recorded}: unreadable; move the directory away to start over") from None
    current = settings.identity()
    for key in sorted(set(previous) | set(current)):
        if previous.get(key) != current.get(key):
            raise ValueError(f"{out}: holds a training with {key} {previous.get(key)!r}, not {current.get(key)!r}; "
                             "rerun with the same settings to resume, or choose a new --out")
    return True


def run_train(settings: TrainSettings, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or resume, or report) the training ``settings`` describe; the results as in ``train.json``."""
    from nas.lock import RunLock
    from nas.runs import intra_op_threads

    settings.validate()
    out = Path(settings.out)
    existing = check_train_directory(out, settings)
    if existing:
        document = json.loads((out / SETTINGS_FILE).read_text())
        if document.get("status") == "done":
            echo(f"{out}: finished; the results:")
            _report(document["results"], echo)
            return document["results"]
    try:
        torch.device(settings.device)
        torch.empty(1, device=settings.device)
    except (RuntimeError, AssertionError, TypeError) as error:
        raise ValueError(f"--device: {settings.device!r} is not usable here ({str(error).splitlines()[0]})") from None
    data = load_train_data(settings)
    network = resolve_network(settings.spec, settings.lowering, data.resolution)
    train_augment(settings, data)  # the augmentation's settings, checked before anything is written
    prepared = noisy_student_data(data, settings) if settings.noisy_student else None
    params = count_network(network, data.splits.num_classes)  # size and settings checked now, not after loading
    if settings.noisy_student and settings.student is not None:
        student = count_network(resolve_network(settings.student, settings.lowering, data.resolution),
                                data.splits.num_classes)
        if student < params:
            raise ValueError(f"--student: {student:,} parameters, fewer than the teacher's {params:,}; "
                             "Noisy Student's student is equal or larger")
    out.mkdir(parents=True, exist_ok=True)
    with RunLock(out), intra_op_threads(settings.threads):
        if not existing:
            atomic_write_text(out / SETTINGS_FILE, json.dumps({"settings": settings.identity(),
                                                               "status": "training"}, indent=2))
        started = time.perf_counter()
        if settings.noisy_student:
            assert prepared is not None
            trained = run_noisy_student(out, network, data, settings, prepared, echo)
            atomic_model_save(out / MODEL, trained.model, trained.network, data.splits.num_classes)
            labeled: Dataset = prepared[0]
        else:
            labeled = data.splits.train
            trained = train_network(out, network, data, labeled, settings, 0, echo)
        results: dict[str, Any] = {"params": trained.params, "train_resolution": data.resolution,
                                   "validation_accuracy": trained.validation_accuracy,
                                   "test_accuracy": trained.test_accuracy, "test_split": data.test_name,
                                   "epochs": len(trained.history)}
        if trained.history:
            results["final_train_loss"] = trained.history[-1]["train_loss"]
        if settings.fixres:
            results["fixres"] = run_fixres(out, trained, data, labeled, settings, echo)["rows"]
        if settings.noisy_student:
            results["noisy_student"] = json.loads((out / NOISY_STUDENT_FILE).read_text())["iterations"]
        results["seconds_this_session"] = time.perf_counter() - started
        atomic_write_text(out / SETTINGS_FILE, json.dumps({"settings": settings.identity(), "status": "done",
                                                           "results": results}, indent=2))
    _report(results, echo)
    return results


def _report(results: Mapping[str, Any], echo: Callable[[str], None]) -> None:
    echo(f"validation accuracy {results['validation_accuracy']:.4f}; {results['test_split']} accuracy "
         f"{results['test_accuracy']:.4f} at {results['train_resolution']} px ({results['params']:,} parameters)")
    for row in results.get("fixres", []):
        echo(f"FixRes at {row['test_resolution']} px: {row['before']:.4f} before, {row['after']:.4f} after")

