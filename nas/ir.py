"""The lowered architecture: frozen, fully resolved, validated dataclasses.

Two shapes cover every space. ``ChainNet`` (stem, stages of ``BlockSpec``, head, classifier)
serves MobileNetV3, EfficientNet and NetAdapt. ``CellNet`` (a stem and a sequence of placed
``CellSpec``) serves NASNet. Shapes (channels and spatial sizes) are resolved once, while
lowering, so analytic cost and latency tables read them without building a module; a ``BlockSpec``
is hashable and is its own latency-table key.

Errors are ``ValueError`` naming the bad field, e.g. ``stages[2][0].in_channels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Union, get_args

Activation = Literal["relu", "relu6", "hardswish", "silu", "identity"]
Gate = Literal["sigmoid", "hardsigmoid"]
Combine = Literal["add", "concat"]
StemKind = Literal["cifar", "imagenet"]

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


def conv_output_size(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded layer with ``stride`` (ceil division)."""
    return -(-size // stride)


def stem_output_size(stem: StemKind, resolution: int) -> int:
    """The ImageNet stem is a 3x3 stride-2 VALID conv (TF ``conv0``); the CIFAR stem keeps size."""
    return (resolution - 3) // 2 + 1 if stem == "imagenet" else resolution


OptionValue = Union[int, float, str, bool, None, tuple]


def _check_option(path: str, value: object) -> None:
    if isinstance(value, tuple):
        for i, item in enumerate(value):
            _check_option(f"{path}[{i}]", item)
    elif value is not None and not isinstance(value, (int, float, str, bool)):
        raise ValueError(f"{path}: option values are numbers, strings, booleans, None or tuples of them, "
                         f"got {type(value).__name__}")


@dataclass(frozen=True)
class BlockSpec:
    """One layer of a chain network, fully resolved: an op, its shapes, and the op's own options.

    ``op`` names a factory of the op registry; it is resolved when the network is compiled, so an
    IR can name an op that a plug-in registers later. ``options`` holds the op-specific settings
    (``kernel_size``, ``expand_channels``, ``groups``, ...), every one of which reaches the
    factory; an option left out takes the factory's default, which is defined there and only there.
    A mapping is accepted and stored as sorted ``(name, value)`` pairs, so a block stays hashable
    and is its own latency-table key.
    """

    op: str
    in_channels: int
    out_channels: int
    stride: int = 1
    input_size: int = 0
    options: tuple[tuple[str, OptionValue], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.op, str) or not self.op:
            raise ValueError(f"op: must be a non-empty op name, got {self.op!r}")
        for name in ("in_channels", "out_channels", "stride"):
            _check_positive(name, getattr(self, name))
            if not isinstance(getattr(self, name), int):
                raise ValueError(f"{name}: expected an integer, got {getattr(self, name)!r}")
        _check_positive("input_size", self.input_size, allow_zero=True)
        items = self.options.items() if isinstance(self.options, Mapping) else self.options
        options = tuple(sorted((str(k), v) for k, v in items))
        for name, value in options:
            if not name.isidentifier():
                raise ValueError(f"options: {name!r} is not a valid option name")
            _check_option(f"options.{name}", value)
        if len({name for name, _ in options}) != len(options):
            raise ValueError(f"options: duplicate names in {[name for name, _ in options]}")
        object.__setattr__(self, "options", options)

    @property
    def output_size(self) -> int:
        return conv_output_size(self.input_size, self.stride)

    def op_options(self) -> dict[str, OptionValue]:
        """The op-specific keyword options for the factory, all of them."""
        return dict(self.options)

    def option(self, name: str, default: OptionValue = None) -> OptionValue:
        """The value of option ``name``, or ``default`` if the block leaves it to the op."""
        return dict(self.options).get(name, default)


@dataclass(frozen=True)
class ClassifierSpec:
    """Global pooling then ``[Linear -> activation] -> Dropout -> Linear``."""

    in_features: int
    num_classes: int
    hidden_features: int = 0
    hidden_activation: Activation = "hardswish"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _check_positive("in_features", self.in_features)
        _check_positive("num_classes", self.num_classes)
        _check_positive("hidden_features", self.hidden_features, allow_zero=True)
        _check_literal("hidden_activation", self.hidden_activation, ACTIVATIONS)
        _check_probability("dropout", self.dropout)


@dataclass(frozen=True)
class ChainNet:
    """Stem blocks, stages of blocks, head blocks and a classifier, at ``resolution``.

    The stem is one or more blocks (ShuffleNet's conv + max-pool needs two); the head is zero or
    more (ShuffleNet v1 pools the last stage directly). A single ``BlockSpec`` is accepted for
    either and stored as a one-block tuple.
    """

    stem: tuple[BlockSpec, ...]
    stages: tuple[tuple[BlockSpec, ...], ...]
    head: tuple[BlockSpec, ...]
    classifier: ClassifierSpec
    resolution: int
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        for part in ("stem", "head"):
            if isinstance(getattr(self, part), BlockSpec):
                object.__setattr__(self, part, (getattr(self, part),))
        _check_positive("resolution", self.resolution)
        _check_positive("bn_eps", self.bn_eps)
        _check_positive("bn_momentum", self.bn_momentum)
        if not self.stem:
            raise ValueError("stem: need at least one block")
        if not self.stages or any(not stage for stage in self.stages):
            raise ValueError("stages: need at least one stage, each with at least one block")
        if self.stem[0].in_channels != 3:
            raise ValueError(f"stem[0].in_channels: expected 3 (RGB), got {self.stem[0].in_channels}")
        channels, size = 3, self.resolution
        for path, block in self.all_blocks():
            if block.in_channels != channels:
                raise ValueError(f"{path}.in_channels: expected {channels} (the previous block's "
                                 f"out_channels), got {block.in_channels}")
            if block.input_size != size:
                raise ValueError(f"{path}.input_size: expected {size}, got {block.input_size}")
            channels, size = block.out_channels, block.output_size
        if self.classifier.in_features != channels:
            raise ValueError(f"classifier.in_features: expected {channels}, got {self.classifier.in_features}")

    def named_blocks(self) -> list[tuple[str, BlockSpec]]:
        """``("stages[i][j]", block)`` for every block of every stage, in order."""
        return [
            (f"stages[{i}][{j}]", block)
            for i, stage in enumerate(self.stages)
            for j, block in enumerate(stage)
        ]

    def all_blocks(self) -> list[tuple[str, BlockSpec]]:
        """Stem, stage and head blocks with their paths, in the order the network runs them."""
        return ([(f"stem[{i}]", block) for i, block in enumerate(self.stem)] + self.named_blocks()
                + [(f"head[{i}]", block) for i, block in enumerate(self.head)])

    @property
    def out_channels(self) -> int:
        """Channels of the last block, the classifier's input."""
        return self.all_blocks()[-1][1].out_channels

    @property
    def num_classes(self) -> int:
        return self.classifier.num_classes


@dataclass(frozen=True)
class CellBlock:
    """One NASNet block: two inputs, an op on each, and how the two results combine.

    Input indices follow the TF reference (``nasnet_utils.py``): 0 = h_i (the previous cell's
    output), 1 = h_{i-1} (the one before), 2 + k = the output of block k of this cell.
    """

    input_a: int
    op_a: str
    input_b: int
    op_b: str
    combine: Combine = "add"

    def __post_init__(self) -> None:
        for name in ("input_a", "input_b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: must be a non-negative int, got {value!r}")
        for name in ("op_a", "op_b"):  # resolved against the op registry when compiled
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"{name}: must be a non-empty op name, got {getattr(self, name)!r}")
        _check_literal("combine", self.combine, COMBINES)


@dataclass(frozen=True)
class CellTopology:
    """The blocks of one cell and which hidden states are concatenated into its output."""

    blocks: tuple[CellBlock, ...]
    concat: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.blocks:
            raise ValueError("blocks: a cell needs at least one block")
        for k, block in enumerate(self.blocks):
            for name in ("input_a", "input_b"):
                if getattr(block, name) >= k + 2:
                    raise ValueError(
                        f"blocks[{k}].{name}: index {getattr(block, name)} out of range; "
                        f"block {k} may read states 0..{k + 1}"
                    )
        if not self.concat:
            raise ValueError("concat: the cell output needs at least one state")
        for j, index in enumerate(self.concat):
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(self.blocks) + 2:
                raise ValueError(f"concat[{j}]: index {index!r} out of range 0..{len(self.blocks) + 1}")
        if len(set(self.concat)) != len(self.concat):
            raise ValueError(f"concat: duplicate state indices {list(self.concat)}")

    def read_states(self) -> set[int]:
        """States a block reads or the output concatenates; the others need no layers."""
        return {i for block in self.blocks for i in (block.input_a, block.input_b)} | set(self.concat)

    def unused_blocks(self) -> tuple[int, ...]:
        """State indices of blocks no later block reads (the paper's output rule, §3)."""
        used = {i for block in self.blocks for i in (block.input_a, block.input_b)}
        return tuple(2 + k for k in range(len(self.blocks)) if 2 + k not in used)


@dataclass(frozen=True)
class CellSpec:
    """One placed cell: its topology, filter count and the shapes of its two inputs.

    ``input_index`` / ``prev_index`` index the network's list of states (0 = stem output,
    k = output of cell k-1). ``prev_index`` None means the cell has no h_{i-1} and reuses its
    raw input, as the reference does for the first cell after the stem.
    """

    topology: CellTopology
    reduction: bool
    filters: int
    input_index: int
    prev_index: int | None
    in_channels: int
    prev_channels: int
    input_size: int
    prev_size: int
    drop_path: float = 0.0

    def __post_init__(self) -> None:
        for name in ("filters", "in_channels", "prev_channels", "input_size", "prev_size"):
            _check_positive(name, getattr(self, name))
        _check_probability("drop_path", self.drop_path)
        if self.prev_size not in (self.input_size, 2 * self.input_size, 2 * self.input_size - 1):
            raise ValueError(
                f"prev_size: {self.prev_size} cannot be matched to input_size {self.input_size} "
                "by at most one stride-2 reduction"
            )

    @property
    def output_size(self) -> int:
        return conv_output_size(self.input_size, 2 if self.reduction else 1)

    def state_channels(self) -> list[int]:
        """Channels of every hidden state: h_i, h_{i-1} (after matching), then the blocks."""
        prev = self.prev_channels if self.prev_index is None else self.filters
        channels = [self.filters, prev]
        for block in self.topology.blocks:
            channels.append(2 * self.filters if block.combine == "concat" else self.filters)
        return channels

    @property
    def out_channels(self) -> int:
        states = self.state_channels()
        # Inputs that reach the output are matched to ``filters`` (TF ``_combine_unused_states``).
        return sum(self.filters if i < 2 else states[i] for i in self.topology.concat)


@dataclass(frozen=True)
class CellNet:
    """A NASNet-style network: a stem and a sequence of normal and reduction cells.

    ``num_cells`` is N (normal cells per stack) and ``penultimate_filters`` is F in the paper's
    "N @ F" notation (filters of the last cell's output for NASNet-A = 24 x base filters).
    """

    stem: StemKind
    stem_channels: int
    cells: tuple[CellSpec, ...]
    num_cells: int
    penultimate_filters: int
    resolution: int
    num_classes: int
    dropout: float = 0.0
    aux_head_after: int | None = None
    bn_eps: float = 1e-3
    bn_momentum: float = 0.1

    def __post_init__(self) -> None:
        _check_literal("stem", self.stem, ("cifar", "imagenet"))
        for name in ("stem_channels", "num_cells", "penultimate_filters", "resolution", "num_classes"):
            _check_positive(name, getattr(self, name))
        _check_probability("dropout", self.dropout)
        if not self.cells:
            raise ValueError("cells: need at least one cell")
        stem_size = stem_output_size(self.stem, self.resolution)
        channels, sizes = [self.stem_channels], [stem_size]
        for i, cell in enumerate(self.cells):
            path = f"cells[{i}]"
            if cell.input_index != i:
                raise ValueError(f"{path}.input_index: expected {i}, got {cell.input_index}")
            if cell.prev_index is not None and not 0 <= cell.prev_index < i:
                raise ValueError(f"{path}.prev_index: {cell.prev_index} out of range 0..{i - 1}")
            prev = cell.input_index if cell.prev_index is None else cell.prev_index
            expected = (channels[i], channels[prev], sizes[i], sizes[prev])
            actual = (cell.in_channels, cell.prev_channels, cell.input_size, cell.prev_size)
            for name, want, got in zip(("in_channels", "prev_channels", "input_size", "prev_size"), expected, actual):
                if want != got:
                    raise ValueError(f"{path}.{name}: expected {want}, got {got}")
            channels.append(cell.out_channels)
            sizes.append(cell.output_size)
        if self.aux_head_after is not None and not 0 <= self.aux_head_after < len(self.cells):
            raise ValueError(f"aux_head_after: {self.aux_head_after} out of range 0..{len(self.cells) - 1}")

    @property
    def out_channels(self) -> int:
        return self.cells[-1].out_channels
