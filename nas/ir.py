"""The lowered architecture: frozen, fully resolved, validated dataclasses.

Two shapes cover every space. ``ChainNet`` (stem, stages of ``BlockSpec``, head, classifier)
serves MobileNetV3, EfficientNet, the block space and NetAdapt. ``CellNet`` (stem blocks, a
sequence of placed cells, head blocks, classifier) serves cell spaces: any cell DAG of
``CellGraph`` (NASNet's, DARTS's, NAS-Bench-201's), defined in ``nas.cell_ir`` on top of this
module's blocks; ``nas.cell_ir.Network`` names either. Shapes (channels and spatial sizes) are
resolved once, while lowering, so analytic cost and latency tables read them without building a
module; a ``BlockSpec`` is hashable and is its own latency-table key.

Code that depends on the kind of network asks the IR: ``kind`` ("chain" or "cell", the key of
the dispatch tables of ``compile``, the latency table and the plots) and ``parts()`` (the named
parts of ``nas show``'s table), never an ``isinstance`` chain.

Errors are ``ValueError`` naming the bad field, e.g. ``stages[2][0].in_channels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

Activation = Literal["relu", "relu6", "hardswish", "silu", "identity"]
Gate = Literal["sigmoid", "hardsigmoid"]
Combine = Literal["add", "concat"]
Padding = Literal["same", "valid"]
IRKind = Literal["chain", "cell"]

ACTIVATIONS: tuple[str, ...] = get_args(Activation)
GATES: tuple[str, ...] = get_args(Gate)
COMBINES: tuple[str, ...] = get_args(Combine)


def _check_literal(path: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ValueError(f"{path}: {value!r} is not valid; valid: {list(valid)}")


def _check_positive(path: str, value: int | float, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: expected a number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{path}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_probability(path: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{path}: must be in [0, 1), got {value!r}")


OptionValue = int | float | str | bool | None | tuple[Any, ...]
Options = tuple[tuple[str, OptionValue], ...]  # sorted (name, value) pairs: hashable, a latency-table key


def conv_output_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded layer with ``stride`` (ceil division)."""
    return -(-size // stride)


def normalize_options(options: Mapping[str, OptionValue] | Options, path: str = "options") -> Options:
    """``options`` as sorted ``(name, value)`` pairs, each name an identifier and each value plain data."""
    items = options.items() if isinstance(options, Mapping) else options
    normalized = tuple(sorted((str(k), v) for k, v in items))
    for name, value in normalized:
        if not name.isidentifier():
            raise ValueError(f"{path}: {name!r} is not a valid option name")
        _check_option(f"{path}.{name}", value)
    if len({name for name, _ in normalized}) != len(normalized):
        raise ValueError(f"{path}: duplicate names in {[name for name, _ in normalized]}")
    return normalized


def _check_option(path: str, value: object) -> None:
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_option(f"{path}[{i}]", item)
    elif value is not None and not isinstance(value, (int, float, str, bool)):
        raise ValueError(
            f"{path}: option values are numbers, strings, booleans, None or tuples of them, got {type(value).__name__}"
        )


@dataclass(frozen=True)
class BlockSpec:
    """One layer of a chain network, fully resolved: an op, its shapes, and the op's own options.

    ``op`` names a factory of the op registry; it is resolved when the network is compiled, so an
    IR can name an op that a plug-in registers later. ``options`` holds the op-specific settings
    (``kernel_size``, ``expand_channels``, ``groups``, ...), every one of which reaches the
    factory; an option left out takes the factory's default, which is defined there and only there.
    A mapping is accepted and stored as sorted ``(name, value)`` pairs, so a block stays hashable
    and is its own latency-table key.

    Spatial sizes follow 'same' padding (``ceil(input_size / stride)``). The one option the IR reads
    itself is ``padding``: with ``"valid"`` (NASNet's ImageNet stem, a 3x3 stride-2 VALID conv, TF
    ``conv0``) the block first loses ``kernel_size - 1`` pixels, so ``kernel_size`` must be given.
    """

    op: str
    in_channels: int
    out_channels: int
    stride: int = 1
    input_size: int = 0
    options: Options | Mapping[str, OptionValue] = ()  # a mapping is stored as sorted pairs (Options)

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or not self.op:
            raise ValueError(f"op: must be a non-empty op name, got {self.op!r}")
        for name in ("in_channels", "out_channels", "stride"):
            _check_positive(name, getattr(self, name))
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"{name}: expected an integer, got {getattr(self, name)!r}")
        _check_positive("input_size", self.input_size, allow_zero=True)
        object.__setattr__(self, "options", normalize_options(self.options))
        if self.option("padding") == "valid":
            kernel = self.option("kernel_size")
            if isinstance(kernel, bool) or not isinstance(kernel, int) or kernel < 1:
                raise ValueError(
                    f"options.kernel_size: a block with padding 'valid' must give a positive integer "
                    f"kernel_size, got {kernel!r}"
                )

    @property
    def output_size(self) -> int:
        kernel = self.option("kernel_size")
        if self.option("padding") == "valid" and isinstance(kernel, int):  # an integer: checked when built
            return (self.input_size - kernel) // self.stride + 1
        return conv_output_size(self.input_size, self.stride)

    def op_options(self) -> dict[str, OptionValue]:
        """The op-specific keyword options for the factory, all of them."""
        return dict(self.options)

    def option(self, name: str, default: OptionValue = None) -> OptionValue:
        """The value of option ``name``, or ``default`` if the block leaves it to the op."""
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class ClassifierSpec:
    """Global pooling then ``[Linear -> activation] -> Dropout -> Linear``.

    ``kept_features`` > 0: the last linear layer reads only that many of its inputs (CondenseNet's
    condensed classifier, arXiv 1711.09224 §3.1; the reference conversion keeps half of them).
    """

    in_features: int
    num_classes: int
    hidden_features: int = 0
    hidden_activation: Activation = "hardswish"
    dropout: float = 0.0
    kept_features: int = 0

    def __post_init__(self) -> None:
        _check_positive("in_features", self.in_features)
        _check_positive("num_classes", self.num_classes)
        _check_positive("hidden_features", self.hidden_features, allow_zero=True)
        _check_literal("hidden_activation", self.hidden_activation, ACTIVATIONS)
        _check_probability("dropout", self.dropout)
        _check_positive("kept_features", self.kept_features, allow_zero=True)
        last_inputs = self.hidden_features or self.in_features
        if self.kept_features > last_inputs:
            raise ValueError(f"kept_features: {self.kept_features} of the last layer's {last_inputs} inputs")


@dataclass(frozen=True)
class NetworkPart:
    """One named part of a network, a row of ``nas show``'s table: ``path`` is its submodule in the
    compiled network (``model.get_submodule(path)``), ``blocks`` how many IR records it holds."""

    label: str
    path: str
    input_size: int
    out_channels: int
    blocks: int


def check_block_chain(blocks: list[tuple[str, BlockSpec]], channels: int, size: int) -> tuple[int, int]:
    """Check that each of ``blocks`` (path, block) takes the previous one's output; return the last output shape."""
    for path, block in blocks:
        if block.in_channels != channels:
            raise ValueError(
                f"{path}.in_channels: expected {channels} (the previous block's out_channels), got {block.in_channels}"
            )
        if block.input_size != size:
            raise ValueError(f"{path}.input_size: expected {size}, got {block.input_size}")
        channels, size = block.out_channels, block.output_size
    return channels, size


def as_block_tuple(value: BlockSpec | tuple[BlockSpec, ...]) -> tuple[BlockSpec, ...]:
    """A single ``BlockSpec`` (or a list) as a tuple of blocks."""
    return (value,) if isinstance(value, BlockSpec) else tuple(value)


@dataclass(frozen=True)
class ChainNet:
    """Stem blocks, stages of blocks, head blocks and a classifier, at ``resolution``.

    The stem is one or more blocks (ShuffleNet's conv + max-pool needs two); the head is zero or
    more (ShuffleNet v1 pools the last stage directly). A single ``BlockSpec`` is accepted for
    either and stored as a one-block tuple.
    """

    kind: ClassVar[IRKind] = "chain"
    stem: tuple[BlockSpec, ...]
    stages: tuple[tuple[BlockSpec, ...], ...]
    head: tuple[BlockSpec, ...]
    classifier: ClassifierSpec
    resolution: int
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        for part in ("stem", "head"):
            object.__setattr__(self, part, as_block_tuple(getattr(self, part)))
        _check_positive("resolution", self.resolution)
        _check_positive("bn_eps", self.bn_eps)
        _check_positive("bn_momentum", self.bn_momentum)
        if not self.stem:
            raise ValueError("stem: need at least one block")
        if not self.stages or any(not stage for stage in self.stages):
            raise ValueError("stages: need at least one stage, each with at least one block")
        if self.stem[0].in_channels != 3:
            raise ValueError(f"stem[0].in_channels: expected 3 (RGB), got {self.stem[0].in_channels}")
        channels, _ = check_block_chain(self.all_blocks(), 3, self.resolution)
        if self.classifier.in_features != channels:
            raise ValueError(f"classifier.in_features: expected {channels}, got {self.classifier.in_features}")

    def named_blocks(self) -> list[tuple[str, BlockSpec]]:
        """``("stages[i][j]", block)`` for every block of every stage, in order."""
        return [(f"stages[{i}][{j}]", block) for i, stage in enumerate(self.stages) for j, block in enumerate(stage)]

    def all_blocks(self) -> list[tuple[str, BlockSpec]]:
        """Stem, stage and head blocks with their paths, in the order the network runs them."""
        return (
            [(f"stem[{i}]", block) for i, block in enumerate(self.stem)]
            + self.named_blocks()
            + [(f"head[{i}]", block) for i, block in enumerate(self.head)]
        )

    @property
    def out_channels(self) -> int:
        """Channels of the last block, the classifier's input."""
        return self.all_blocks()[-1][1].out_channels

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes

    def parts(self) -> list[NetworkPart]:
        """Stem, each stage, head (if any) and classifier, with their compiled modules' paths."""
        parts = [NetworkPart("stem", "stem", self.stem[0].input_size, self.stem[-1].out_channels, len(self.stem))]
        parts += [
            NetworkPart(f"stage {i + 1}", f"stages.{i}", stage[0].input_size, stage[-1].out_channels, len(stage))
            for i, stage in enumerate(self.stages)
        ]
        if self.head:
            parts.append(
                NetworkPart("head", "head", self.head[0].input_size, self.head[-1].out_channels, len(self.head))
            )
        return parts + [NetworkPart("classifier", "classifier", 1, self.num_classes, 1)]
