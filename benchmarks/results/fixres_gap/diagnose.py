"""Why FixRes does not fix MobileNetV3-Small on digits (16 -> 24 px): the experiments of ``README.md`` here.

Reads finished ``nas train`` directories (trained at R_train with ``--fixres``) and, on each, without
retraining:

- ``curve``: test accuracy at every resolution from 10 to 28 px, with the feature-map side after
  every block;
- ``taps``: for every k x k convolution, the kernel taps the R_train input reaches and those R_test
  reaches (zero padding: a tap no output position ever multiplies with an input pixel gets no gradient);
  the test accuracy at R_test with the taps never reached at R_train set to zero;
- ``windows``: the test accuracy of the whole R_test view, and of its R_train x R_train corner and
  central windows fed alone (which part of the frame the network reads);
- ``features``: for the same test images at R_train and at R_test, each block's output globally
  average-pooled: per-image cosine similarity of the two vectors, the per-channel mean shift in units
  of the R_train standard deviation, and the standard deviation ratio; hard-swish input ranges and
  squeeze-and-excitation gates at both resolutions;
- ``finetune``: the engine's FixRes step (``nas.train.stages.run_fixres``, same seed, epochs, learning
  rate, weight decay and final BatchNorm re-estimation) with other choices of what trains and what
  adapts its BatchNorm statistics, plus "every BatchNorm re-estimated at R_test, no training".

    .venv/bin/python benchmarks/results/fixres_gap/diagnose.py DIR [DIR ...]
        [--only curve,taps,windows,features,finetune] [--test-resolution 24] [--variants NAME,...]

One intra-op thread; prints markdown tables.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

import nas
from nas.compile import CellModule
from nas.data import iterate_batches
from nas.train import stages
from nas.train.fit import Network, TrainData, Trained, load_train_data
from nas.train.fixres import FixResParts, fixres_parts, reached_taps
from nas.train.settings import TrainSettings
from nas.training import evaluate, recalibrate_batchnorm

BN = nn.modules.batchnorm._BatchNorm


def load(directory: Path) -> tuple[TrainSettings, TrainData, dict[str, Any]]:
    document = json.loads((directory / "train.json").read_text())
    recorded = document["settings"]
    settings = TrainSettings(**{**recorded, "out": str(directory), "fixres": tuple(recorded["fixres"])})
    return settings, load_train_data(settings), document["results"]


def model_of(directory: Path) -> nn.Module:
    return nas.load_model(directory / "model.pt").eval()


def accuracy(model: nn.Module, data: TrainData, r: int) -> float:
    return evaluate(model, iterate_batches(data.test, 256), "cpu", data.view(r))[1]


def blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs are compared: stem, every block (cell), head."""
    if isinstance(model, CellModule):
        return [("stem", model.stem), *((f"cells.{i}", cell) for i, cell in enumerate(model.cells))]
    named = [("stem", model.stem)]
    for i, stage in enumerate(model.stages):
        named += [(f"stages.{i}.{j}", block) for j, block in enumerate(stage)]
    return [*named, ("head", model.head)]


@torch.no_grad()
def pooled_outputs(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each block's output at ``images``, averaged over space: (N, C) per block; also the map side."""
    outputs: dict[str, torch.Tensor] = {}
    hooks = []
    for name, module in blocks(model):

        def hook(_: nn.Module, __: Any, out: Any, name: str = name) -> None:
            out = out[-1] if isinstance(out, (tuple, list)) else out
            outputs[name] = out.mean(dim=(2, 3))
            outputs[name + ":side"] = torch.tensor(out.shape[-1])

        hooks.append(module.register_forward_hook(hook))
    model.eval()
    model(images)
    for handle in hooks:
        handle.remove()
    return outputs


def conv_input_sides(model: nn.Module, r: int) -> dict[str, int]:
    sides: dict[str, int] = {}
    hooks = [
        module.register_forward_pre_hook(lambda _, args, name=name: sides.__setitem__(name, args[0].shape[-1]))
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d)
    ]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(2, 3, r, r))
    for handle in hooks:
        handle.remove()
    return sides


def taps_of(conv: nn.Conv2d, side: int) -> set[int]:
    """Kernel rows (or columns) that multiply an input pixel, not padding, at some output position."""
    padding = conv.padding[0] if isinstance(conv.padding, tuple) else 0
    return set(reached_taps(side, conv.kernel_size[0], conv.stride[0], padding, conv.dilation[0]))


def curve(directory: Path) -> None:
    _, data, _ = load(directory)
    model = model_of(directory)
    print(f"\n{directory.name}: test accuracy by test resolution (trained at {data.resolution} px)\n")
    print("| R_test | test accuracy | map side after stem, each block |\n|---:|---:|---|")
    for r in range(10, 29):
        sides = pooled_outputs(model, torch.zeros(2, 3, r, r))
        shape = " ".join(str(int(v)) for k, v in sides.items() if k.endswith(":side"))
        print(f"| {r} | {accuracy(model, data, r):.4f} | {shape} |")


def taps(directory: Path, r_test: int) -> None:
    settings, data, _ = load(directory)
    model = model_of(directory)
    low, high = conv_input_sides(model, data.resolution), conv_input_sides(model, r_test)
    print(
        f"\n{directory.name}: k x k convolutions whose kernel taps differ between {data.resolution} and {r_test} px\n"
    )
    print("| convolution | k, stride | input side | taps reached (1-D) | 2-D taps reached only at R_test |")
    print("|---|---|---|---|---|")
    masks: dict[str, torch.Tensor] = {}
    never, total = 0, 0
    for name, conv in model.named_modules():
        if not isinstance(conv, nn.Conv2d) or conv.kernel_size[0] == 1:
            continue
        a, b = taps_of(conv, low[name]), taps_of(conv, high[name])
        k = conv.kernel_size[0]
        trained = torch.zeros(k, k, dtype=torch.bool)
        for i in a:
            for j in a:
                trained[i, j] = True
        masks[name] = trained
        used_high = {(i, j) for i in b for j in b}
        only_high = [(i, j) for (i, j) in used_high if not trained[i, j]]
        never += len(only_high) * conv.weight.shape[0] * conv.weight.shape[1]
        total += conv.weight.numel()
        if only_high or a != b:
            print(
                f"| {name} | {k}, {conv.stride[0]} | {low[name]} -> {high[name]} | {sorted(a)} -> {sorted(b)} "
                f"| {len(only_high)} of {k * k} |"
            )
    print(
        f"\nweights of k x k convolutions reached at {r_test} px, never at {data.resolution} px: {never:,} of {total:,}"
    )
    # a tap never reached at R_train received no gradient: it still holds its initialisation (shrunk by weight decay)
    zeroed = model_of(directory)
    with torch.no_grad():
        for name, conv in zeroed.named_modules():
            if name in masks:
                conv.weight.mul_(masks[name].to(conv.weight.dtype))
    before = {r: accuracy(model, data, r) for r in (data.resolution, *settings.fixres)}
    after = {r: accuracy(zeroed, data, r) for r in (data.resolution, *settings.fixres)}
    print("\n| test resolution | as trained | taps never reached at R_train set to 0 |\n|---:|---:|---:|")
    for r in before:
        print(f"| {r} | {before[r]:.4f} | {after[r]:.4f} |")


def windows(directory: Path, r_test: int) -> None:
    """Accuracy on R_train x R_train windows of the R_test view: which part of the image the network reads."""
    _, data, _ = load(directory)
    model = model_of(directory)
    r, side = data.resolution, r_test
    view = data.view(r_test)
    print(f"\n{directory.name}: the {r_test}-px view, whole and in {r} x {r} windows\n")
    print("| input | test accuracy |\n|---|---:|")
    print(f"| whole {r_test} x {r_test} image | {accuracy(model, data, r_test):.4f} |")
    corners = {"top-left": (0, 0), "top-right": (0, side - r), "bottom-left": (side - r, 0)}
    corners |= {"bottom-right": (side - r, side - r), "centre": ((side - r) // 2, (side - r) // 2)}
    for name, (top, left) in corners.items():

        def crop(x: torch.Tensor, top: int = top, left: int = left) -> torch.Tensor:
            return view(x)[..., top : top + r, left : left + r]

        correct = evaluate(model, iterate_batches(data.test, 256), "cpu", crop)[1]
        print(f"| {name} {r} x {r} window of it | {correct:.4f} |")


def features(directory: Path, r_test: int) -> None:
    _, data, _ = load(directory)
    model = model_of(directory)
    images = torch.cat([x for x, _ in iterate_batches(data.test, 256)])
    low = pooled_outputs(model, data.view()(images))
    high = pooled_outputs(model, data.view(r_test)(images))
    print(
        f"\n{directory.name}: each block's pooled output, the {len(images)} test images at {data.resolution} px "
        f"against the same at {r_test} px\n"
    )
    print(
        "| block | map side | per-image cosine | mean shift / sd (channel median) | sd ratio (channel median) |\n"
        "|---|---|---:|---:|---:|"
    )
    for name, _ in blocks(model):
        x, y = low[name], high[name]
        cosine = nn.functional.cosine_similarity(x, y, dim=1).mean()
        sd = x.std(dim=0).clamp_min(1e-6)
        shift = ((y.mean(dim=0) - x.mean(dim=0)).abs() / sd).median()
        ratio = (y.std(dim=0) / sd).median()
        print(
            f"| {name} | {int(low[name + ':side'])} -> {int(high[name + ':side'])} | {cosine:.3f} | {shift:.2f} "
            f"| {ratio:.2f} |"
        )

    ranges = {r: activation_ranges(model, data.view(r)(images)) for r in (data.resolution, r_test)}
    if any(ranges.values()):
        print("\n| hard-swish inputs | resolution | <= -3 (output 0) | between | >= 3 (identity) |")
        print("|---|---:|---:|---:|---:|")
        for where in ("head", "all"):
            for r, found in ranges.items():
                low_, mid, high_ = found[where]
                print(f"| {where} | {r} | {low_:.3f} | {mid:.3f} | {high_:.3f} |")
    gates = {r: se_gates(model, data.view(r)(images)) for r in (data.resolution, r_test)}
    if any(gates.values()):
        print("\n| squeeze-and-excitation gates | resolution | mean | sd over images (channel median) |")
        print("|---|---:|---:|---:|")
        for r, (mean, sd) in gates.items():
            print(f"| all blocks | {r} | {mean:.3f} | {sd:.3f} |")


@torch.no_grad()
def activation_ranges(model: nn.Module, images: torch.Tensor) -> dict[str, tuple[float, float, float]]:
    """Fractions of hard-swish inputs in its zero, curved and identity ranges: the head's, and all of them."""
    seen: dict[str, list[torch.Tensor]] = {"head": [], "all": []}
    hooks = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Hardswish):

            def hook(_: nn.Module, args: Any, name: str = name) -> None:
                x = args[0].flatten()
                counts = torch.stack([(x <= -3).sum(), ((x > -3) & (x < 3)).sum(), (x >= 3).sum()]).double()
                seen["all"].append(counts)
                if name.startswith("head"):
                    seen["head"].append(counts)

            hooks.append(module.register_forward_pre_hook(hook))
    model.eval()
    model(images)
    for handle in hooks:
        handle.remove()
    if not seen["all"]:
        return {}
    out = {}
    for where, counts in seen.items():
        total = torch.stack(counts).sum(dim=0)
        out[where] = tuple(float(c) for c in total / total.sum())
    return out  # type: ignore[return-value]


@torch.no_grad()
def se_gates(model: nn.Module, images: torch.Tensor) -> tuple[float, float] | None:
    """Mean squeeze-and-excitation gate, and the median over channels of its sd over images."""
    gates: list[torch.Tensor] = []
    hooks = [
        module.register_forward_hook(lambda _, __, out: gates.append(out.flatten(1)))
        for name, module in model.named_modules()
        if name.endswith(".gate")
    ]
    model.eval()
    model(images)
    for handle in hooks:
        handle.remove()
    if not gates:
        return None
    every = torch.cat(gates, dim=1)
    return float(every.mean()), float(every.std(dim=0).median())


def chain_parts(model: nn.Module, name: str) -> FixResParts:
    """What trains and what adapts, per variant (chain networks; NASNet: ``family-rule``, ``all``, ``default``)."""
    params = [n for n, _ in model.named_parameters()]
    norms = [n for n, m in model.named_modules() if isinstance(m, BN)]

    def under(*prefixes: str) -> tuple[str, ...]:
        return tuple(n for n in params if n.startswith(prefixes))

    def norms_under(*prefixes: str) -> tuple[str, ...]:
        return tuple(n for n in norms if n.startswith(prefixes))

    if name == "family-rule":  # the rule before the kernel-tap extension: the family's parts alone
        return fixres_parts(model)
    if name == "all":
        return FixResParts(name, tuple(params), ("",))
    if name == "classifier":
        return FixResParts(name, under("classifier."), ())
    if name == "classifier+head-bn":
        return FixResParts(name, under("classifier."), norms_under("head"))
    if name == "family-rule+all-bn-stats":
        return FixResParts(name, fixres_parts(model).trained, tuple(norms))
    if name == "classifier+all-bn":  # every BatchNorm's scale, shift and statistics
        return FixResParts(
            name, under("classifier.") + tuple(n for n in params if n.rsplit(".", 1)[0] in norms), tuple(norms)
        )
    if name.startswith("from-stage-"):  # stages >= S, head and classifier
        first = int(name.removeprefix("from-stage-"))
        count = len(model.stages)  # type: ignore[arg-type]
        prefixes = tuple(f"stages.{i}." for i in range(first, count)) + ("head.", "classifier.")
        return FixResParts(name, under(*prefixes), tuple(p.rstrip(".") for p in prefixes[:-1]))
    if name == "up-to-stage-1":  # stem and stages 0-1 only, statistics there: does the early change matter?
        prefixes = ("stem.", "stages.0.", "stages.1.")
        return FixResParts(name, under(*prefixes), ("stem", "stages.0", "stages.1"))
    raise ValueError(name)


def fixres_variant(directory: Path, variant: str, r_test: int) -> tuple[float, float]:
    """(test before, test after) of the engine's FixRes step at ``r_test`` with ``variant``'s parts."""
    settings, data, results = load(directory)
    model = model_of(directory)
    payload = nas.api.read_model_file(directory / "model.pt")
    trained = Trained(
        model,
        Network(payload["genotype"], dict(payload["lowering"])),
        [],
        results["validation_accuracy"],
        results["test_accuracy"],
        results["params"],
    )
    if variant == "bn-only":  # every BatchNorm re-estimated at R_test, nothing trained
        before = accuracy(model, data, r_test)
        recalibrate_batchnorm(
            model, data.splits.train, settings.batch_size, settings.precise_bn, "cpu",
            torch.Generator().manual_seed(0), data.view(r_test),
        )  # fmt: skip
        return before, accuracy(model, data, r_test)

    def parts(m: nn.Module, *shapes: Any) -> FixResParts:
        return chain_parts(m, variant)

    # "default": the engine's FixRes step as it is (its rule for the network and both resolutions)
    patch = mock.patch.object(stages, "fixres_parts", parts) if variant != "default" else contextlib.nullcontext()
    with tempfile.TemporaryDirectory() as out, patch:
        rows = stages.run_fixres(
            Path(out), trained, data, data.splits.train, dataclasses.replace(settings, fixres=(r_test,)), lambda _: None
        )["rows"]
    return rows[0]["before"], rows[0]["after"]


VARIANTS = (
    "bn-only",
    "classifier",
    "classifier+head-bn",
    "family-rule",
    "family-rule+all-bn-stats",
    "classifier+all-bn",
    "from-stage-3",
    "from-stage-2",
    "up-to-stage-1",
    "all",
    "default",
)


def finetune(directories: list[Path], r_test: int, variants: tuple[str, ...]) -> None:
    print(f"\nFixRes at {r_test} px, test accuracy after, per variant of what trains / adapts\n")
    print(
        "| variant | " + " | ".join(d.name for d in directories) + " | mean |\n|---|" + "---:|" * (len(directories) + 1)
    )
    for variant in variants:
        cells = []
        for directory in directories:
            try:
                cells.append(fixres_variant(directory, variant, r_test)[1])
            except (ValueError, AttributeError, TypeError):
                cells.append(float("nan"))
        mean = sum(cells) / len(cells)
        print(f"| {variant} | " + " | ".join(f"{c:.4f}" for c in cells) + f" | {mean:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="+", type=Path)
    parser.add_argument("--only", default="curve,taps,windows,features,finetune")
    parser.add_argument("--test-resolution", type=int, default=24)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    only = set(args.only.split(","))
    for directory in args.directories:
        if "curve" in only:
            curve(directory)
        if "taps" in only:
            taps(directory, args.test_resolution)
        if "windows" in only:
            windows(directory, args.test_resolution)
        if "features" in only:
            features(directory, args.test_resolution)
    if "finetune" in only:
        finetune(args.directories, args.test_resolution, tuple(args.variants.split(",")))


if __name__ == "__main__":
    main()
