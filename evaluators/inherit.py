"""Weight inheritance between two chain networks that differ only in widths (NetAdapt's pruning).

NetAdapt (arXiv 1804.03230 §3.2, "ChooseWhichFilters") keeps the filters with the largest L2
norm when it shrinks a layer, and the next layer keeps the matching input channels; MobileNetV3
(arXiv 1905.02244 §4.2) initialises every proposal from the previous step's trained model the
same way. Here the channels of a ``ChainNet`` are grouped into *channel spaces*: the output of
a layer, shared by every block tied to it through a residual connection; a block's expansion
width (or, without an expansion layer, its input's); a squeeze-and-excitation bottleneck. When a
space shrinks from ``n`` to ``m`` channels, its ``m`` channels whose producing filters (the full
convs writing it: expansion, projection, stem and head convs, and an SE bottleneck's squeeze; not
the depthwise conv or the SE excitation, which only rescale channels) have the largest summed
squared L2 norm are kept, in their order, and every
tensor that reads or writes the space (convs, BatchNorms, SE, the classifier's first linear
layer) is sliced to them. Everything else is copied.

A residual ``mbconv`` block (stride 1, input width = output width) may be missing from the new
network (NetAdapt's block removal, ``removable_widths``): the blocks are matched in order, an old
residual block the next new one does not match is dropped with its weights, and the others keep
theirs under their new names. Ops understood: ``conv_bn_act`` and ``mbconv`` (the chain ops of
MobileNetV3 and EfficientNet); another op, another change of structure (a layer, a residual
connection or SE added, or a block that is not residual removed) or a width that grows is a
``ValueError`` naming the block.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from nas.compile import ChainModule, chain_blocks
from nas.compile import compile as compile_ir
from nas.ir import BlockSpec, ChainNet


@dataclass
class ChannelSpace:
    """One group of channels that shrinks together; ``kept`` are the old indices kept (None: all)."""

    old: int
    new: int
    producers: list[str] = field(default_factory=list)  # state-dict keys of weights whose dim 0 writes it
    kept: torch.Tensor | None = None


@dataclass
class _Plan:
    spaces: list[ChannelSpace] = field(default_factory=list)
    # old block prefix -> its new prefix (None: the block was removed)
    rename: dict[str, str | None] = field(default_factory=dict)
    # module prefix -> (kind, output space, input space); kinds: conv, depthwise, bn, linear_in
    layers: dict[str, tuple[str, ChannelSpace | None, ChannelSpace | None]] = field(default_factory=dict)

    def space(self, old: int, new: int, path: str) -> ChannelSpace:
        if new > old:
            raise ValueError(f"{path}: width grows from {old} to {new}; inheritance only shrinks")
        created = ChannelSpace(old, new)
        self.spaces.append(created)
        return created

    def conv(self, prefix: str, out: ChannelSpace, inp: ChannelSpace | None, depthwise: bool = False) -> None:
        self.layers[f"{prefix}.0"] = ("depthwise" if depthwise else "conv", out, inp)
        self.layers[f"{prefix}.1"] = ("bn", out, None)


def _residual(block: BlockSpec) -> bool:
    return block.op == "mbconv" and block.stride == 1 and block.in_channels == block.out_channels


def _same_layers(old: BlockSpec, new: BlockSpec) -> bool:
    """Whether ``new`` is ``old`` with other widths: op, stride, input size, kernel, layers, residual."""
    kernel = old.option("kernel_size") == new.option("kernel_size")
    return (
        (old.op, old.stride, old.input_size) == (new.op, new.stride, new.input_size)
        and kernel
        and all(bool(old.option(name)) == bool(new.option(name)) for name in ("expand_channels", "se_channels"))
        and _residual(old) == _residual(new)
    )


def _align(old_blocks: list[tuple[str, BlockSpec]], new_blocks: list[tuple[str, BlockSpec]]) -> list[int | None]:
    """For each old block the index of its new block, None for a residual block the new network dropped.

    The same number of blocks: in order (``_check_same_block`` names what differs). Fewer: the
    alignment (dynamic programming) that drops only residual blocks, pairs only blocks with the same
    layers, and pairs the most blocks that are equal, widths included (a removal changes no other
    width, so identical neighbours do not take each other's weights).
    """
    n, m = len(old_blocks), len(new_blocks)
    if n == m:
        for (path, old), (_, new) in zip(old_blocks, new_blocks):
            _check_same_block(path, old, new)
        return list(range(n))
    if m > n:
        raise ValueError("the new network has blocks the old one does not; inheritance needs the same layers")
    impossible = -1
    best = [[impossible] * (m + 1) for _ in range(n + 1)]  # best[i][j]: equal pairs aligning old[i:] with new[j:]
    best[n][m] = 0
    for i in range(n - 1, -1, -1):
        old = old_blocks[i][1]
        for j in range(m, -1, -1):
            if j < m and best[i + 1][j + 1] != impossible and _same_layers(old, new_blocks[j][1]):
                best[i][j] = best[i + 1][j + 1] + (old == new_blocks[j][1])
            if _residual(old) and best[i + 1][j] > best[i][j]:
                best[i][j] = best[i + 1][j]
    if best[0][0] == impossible:
        raise ValueError(
            "the new network is not the old one with residual blocks removed; inheritance needs the same layers"
        )
    mapping: list[int | None] = []
    j = 0
    for i, (_, old) in enumerate(old_blocks):
        pair = j < m and best[i + 1][j + 1] != impossible and _same_layers(old, new_blocks[j][1])
        if pair and best[i][j] == best[i + 1][j + 1] + (old == new_blocks[j][1]):
            mapping.append(j)
            j += 1
        else:
            mapping.append(None)
    return mapping


def _check_same_block(path: str, old: BlockSpec, new: BlockSpec) -> None:
    for name in ("op", "stride", "input_size"):
        if getattr(old, name) != getattr(new, name):
            raise ValueError(
                f"{path}.{name}: {getattr(old, name)!r} -> {getattr(new, name)!r}; inheritance needs the same layers"
            )
    for name in ("expand_channels", "se_channels"):  # a layer exists in both or in neither
        if bool(old.option(name)) != bool(new.option(name)):
            raise ValueError(
                f"{path}: the {name.split('_')[0]} layer is added or removed; inheritance needs the same layers"
            )


def plan(module: ChainModule, old_ir: ChainNet, new_ir: ChainNet) -> _Plan:
    """The channel spaces of ``old_ir`` and how every tensor of ``module`` reads and writes them."""
    if getattr(old_ir, "kind", None) != "chain" or getattr(new_ir, "kind", None) != "chain":
        raise ValueError("weight inheritance works on chain networks (ChainNet)")
    old_blocks, new_blocks = old_ir.all_blocks(), new_ir.all_blocks()
    mapping = _align(old_blocks, new_blocks)
    new_prefixes = [prefix for prefix, _ in chain_blocks(compile_ir(new_ir), new_ir)]
    result = _Plan()
    running = result.space(3, 3, "input")
    for (path, old), index, (prefix, _block) in zip(old_blocks, mapping, chain_blocks(module, old_ir)):
        result.rename[prefix] = None if index is None else new_prefixes[index]
        if index is None:
            continue
        new = new_blocks[index][1]
        _check_same_block(path, old, new)
        if old.op == "conv_bn_act":
            out = result.space(old.out_channels, new.out_channels, path)
            result.conv(prefix, out, running)
            out.producers.append(f"{prefix}.0.weight")
        elif old.op == "mbconv":
            residual = old.stride == 1 and old.in_channels == old.out_channels
            if residual != (new.stride == 1 and new.in_channels == new.out_channels):
                raise ValueError(
                    f"{path}: a residual connection is added or removed; inheritance needs the same layers"
                )
            index, layers = 0, f"{prefix}.block"
            hidden = running
            if old.option("expand_channels"):
                hidden = result.space(old.option("expand_channels"), new.option("expand_channels"), path)
                result.conv(f"{layers}.0", hidden, running)
                hidden.producers.append(f"{layers}.0.0.weight")
                index = 1
            result.conv(f"{layers}.{index}", hidden, None, depthwise=True)
            index += 1
            if old.option("se_channels"):
                squeeze = result.space(old.option("se_channels"), new.option("se_channels"), path)
                result.layers[f"{layers}.{index}.fc1"] = ("conv", squeeze, hidden)
                result.layers[f"{layers}.{index}.fc2"] = ("conv", hidden, squeeze)
                squeeze.producers.append(f"{layers}.{index}.fc1.weight")
                index += 1
            out = running if residual else result.space(old.out_channels, new.out_channels, path)
            result.conv(f"{layers}.{index}", out, hidden)
            out.producers.append(f"{layers}.{index}.0.weight")
        else:
            raise ValueError(f"{path}: weight inheritance does not know op {old.op!r} (it knows conv_bn_act, mbconv)")
        running = out
    linear = next(name for name, sub in module.classifier.named_modules() if isinstance(sub, nn.Linear))
    result.layers[f"classifier.{linear}"] = ("linear_in", None, running)
    return result


def _select(tensor: torch.Tensor, dim: int, space: ChannelSpace | None) -> torch.Tensor:
    if space is None or space.kept is None or tensor.dim() <= dim:
        return tensor
    return tensor.index_select(dim, space.kept)


def inherit_weights(module: nn.Module, old_ir: ChainNet, new_ir: ChainNet) -> nn.Module:
    """A module of ``new_ir`` whose weights are ``module``'s (a module of ``old_ir``) with the pruned
    channels removed: the largest-L2 filters of each shrunk channel space are kept (module docstring)."""
    if not isinstance(module, ChainModule):
        raise ValueError(f"weight inheritance works on compiled chain networks, got {type(module).__name__}")
    layout = plan(module, old_ir, new_ir)
    state = module.state_dict()
    for space in layout.spaces:
        if space.new < space.old:
            importance = sum(state[key].detach().flatten(1).pow(2).sum(1).double() for key in space.producers)
            space.kept = torch.topk(importance, space.new).indices.sort().values  # type: ignore[union-attr]
    inherited = {}
    for key, tensor in state.items():
        prefix, leaf = key.rsplit(".", 1)
        kind, out, inp = layout.layers.get(prefix, ("copy", None, None))
        if (kind == "bn" and leaf != "num_batches_tracked") or kind == "depthwise":
            tensor = _select(tensor, 0, out)
        elif kind == "conv":
            tensor = _select(_select(tensor, 0, out), 1, inp) if leaf == "weight" else _select(tensor, 0, out)
        elif kind == "linear_in" and leaf == "weight":
            tensor = _select(tensor, 1, inp)
        block = next((old for old in layout.rename if key.startswith(old + ".")), None)
        if block is not None:
            if layout.rename[block] is None:
                continue  # a removed block's weights go with it
            key = str(layout.rename[block]) + key[len(block) :]
        inherited[key] = tensor.clone()
    target = compile_ir(new_ir).to(next(module.parameters()).device)
    target.load_state_dict(inherited)  # strict: any tensor the plan missed is an error, not a silent re-init
    return target
