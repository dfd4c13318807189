"""``nas train``: train a spec with the standard recipe, optionally FixRes and Noisy Student (``nas.train.run``)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from nas import registry
from nas.cli.common import listed
from nas.train.run import run_train
from nas.train.settings import BALANCES, TrainSettings


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def add_train_command(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train a spec: warm-up + cosine, label smoothing, RandAugment, EMA; FixRes; Noisy Student"
    )
    train.add_argument(
        "spec",
        help="preset name, genotype JSON file, architecture string (or a file of it: nb201), search run directory, "
        "or a .pt from "
        "nas materialize (its weights are the start)",
    )
    train.add_argument("--out", required=True, metavar="DIR", help="run directory; the same command resumes it")
    data = train.add_argument_group("data")
    data.add_argument("--dataset", default="digits", help=listed(registry.datasets, "digits") + "; digits is bundled")
    data.add_argument("--data-dir", help="folder of the data set (cifar10, imagefolder)")
    data.add_argument("--download", action="store_true", help="allow downloading CIFAR-10")
    data.add_argument("--resolution", type=int, help="training resolution R_train (default: the data's own)")
    data.add_argument(
        "--test-crop",
        type=float,
        help="central fraction of the image the test view keeps "
        "(default: 1 up to 64 px, the CIFAR convention; 0.875 above, the ImageNet one)",
    )
    data.add_argument(
        "--validation-fraction",
        type=float,
        default=0.2,
        help="held out from the training data (default 0.2, as a search)",
    )
    recipe = train.add_argument_group("recipe")
    recipe.add_argument("--epochs", type=int, default=30)
    recipe.add_argument("--batch-size", type=int, default=64)
    recipe.add_argument("--optimizer", choices=("sgd", "adamw"), default="sgd")
    recipe.add_argument("--learning-rate", type=float, help="peak learning rate (default 0.1 sgd, 0.002 adamw)")
    recipe.add_argument(
        "--weight-decay", type=float, help="on weights, not on norms and biases (default 5e-4 sgd, 0.05 adamw)"
    )
    recipe.add_argument("--warmup-epochs", type=float, help="linear warm-up, then cosine (default 5%% of the epochs)")
    recipe.add_argument("--label-smoothing", type=float, default=0.1)
    recipe.add_argument("--randaugment-ops", type=int, default=2, help="RandAugment operations per image, 0 = off")
    recipe.add_argument("--randaugment-magnitude", type=int, default=9, help="RandAugment magnitude, 0-30")
    recipe.add_argument("--crop-scale", type=float, default=0.08, help="smallest area of RandomResizedCrop")
    recipe.add_argument(
        "--mirror",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="random horizontal flips (default: unless the data set says no, as digits does)",
    )
    recipe.add_argument(
        "--no-drop-path",
        dest="drop_path",
        action="store_false",
        help="no stochastic depth / drop-path (default: the genotype's rate)",
    )
    recipe.add_argument(
        "--ema",
        dest="ema_decay",
        type=float,
        metavar="DECAY",
        help="keep and evaluate an exponential moving average of the weights, e.g. 0.999",
    )
    recipe.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    recipe.add_argument("--gradient-clip", type=float, default=5.0, help="largest gradient norm (0: no clipping)")
    recipe.add_argument(
        "--set",
        dest="lowering",
        type=_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a setting of the space's lower(), e.g. width_multiplier=0.5 or num_cells=2",
    )
    recipe.add_argument(
        "--precise-bn",
        type=int,
        default=512,
        metavar="N",
        help="re-estimate BatchNorm statistics on N training images before validating and at the end (0 = off)",
    )
    recipe.add_argument("--seed", type=int, default=0)
    fixres = train.add_argument_group("FixRes")
    fixres.add_argument(
        "--fixres",
        type=int,
        nargs="+",
        default=[],
        metavar="R_TEST",
        help="fine-tune at these test resolutions after training",
    )
    fixres.add_argument("--fixres-epochs", type=int, default=3)
    fixres.add_argument("--fixres-learning-rate", type=float, help="default: a tenth of the training's")
    student = train.add_argument_group("Noisy Student")
    student.add_argument("--noisy-student", action="store_true", help="teacher, pseudo-labels, noised students")
    student.add_argument("--unlabeled", metavar="DIR", help="folder of unlabeled images")
    student.add_argument(
        "--unlabeled-fraction",
        type=float,
        metavar="F",
        help="hide the labels of this fraction of the training split and use its images as the unlabeled ones",
    )
    student.add_argument("--student", metavar="SPEC", help="the student (default: the spec); equal or larger")
    student.add_argument("--iterations", type=int, default=2, help="students, each the next one's teacher")
    student.add_argument(
        "--hard-labels",
        dest="soft_labels",
        action="store_false",
        help="one-hot pseudo-labels (default: the teacher's probabilities)",
    )
    student.add_argument("--threshold", type=float, default=0.3, help="confidence a pseudo-label needs")
    student.add_argument(
        "--balance",
        choices=BALANCES,
        default="both",
        help="per-class balancing of the pseudo-labels: duplicate, filter, both, none",
    )
    run = train.add_argument_group("execution")
    run.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    run.add_argument("--device", default="cpu")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    train.set_defaults(run=cmd_train)


def cmd_train(args: argparse.Namespace) -> None:
    names = set(TrainSettings.__dataclass_fields__)
    values = {key: value for key, value in vars(args).items() if key in names}
    values["lowering"] = dict(args.lowering)
    values["fixres"] = tuple(args.fixres)
    run_train(TrainSettings(**values))
