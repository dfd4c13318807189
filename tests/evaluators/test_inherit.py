"""Weight inheritance: a pruned layer computes exactly the kept channels of the original layer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import nas
from evaluators.inherit import inherit_weights
from search_spaces.mobilenetv3 import SMALL, MobileNetV3Space

SPACE = MobileNetV3Space()


def _pair(name: str, width: int) -> tuple[nn.Module, nn.Module, nas.ir.ChainNet, nas.ir.ChainNet]:
    widths = {**SPACE.prunable_widths(SMALL), name: width}
    old_ir = SPACE.lower(SMALL, num_classes=10, resolution=32)
    new_ir = SPACE.lower(SPACE.with_widths(SMALL, widths), num_classes=10, resolution=32)
    old = nas.compile(old_ir, seed=0).eval()
    with torch.no_grad():  # trained-looking BatchNorm statistics, so a wrong slice cannot hide
        for module in old.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return old, inherit_weights(old, old_ir, new_ir).eval(), old_ir, new_ir


def _top_l2(weight: torch.Tensor, count: int) -> torch.Tensor:
    return torch.topk(weight.flatten(1).pow(2).sum(1), count).indices.sort().values


def test_a_pruned_expansion_layer_computes_the_kept_channels_of_the_original() -> None:
    old, new, _, _ = _pair("blocks.4.expand_channels", 96)  # 240 -> 96
    old_block, new_block = old.stages[2][1], new.stages[2][1]  # stages split at stride 2: block 4 is stages[2][1]
    kept = _top_l2(old_block.block[0][0].weight, 96)
    x = torch.randn(2, 40, 4, 4)
    with torch.no_grad():
        assert torch.allclose(new_block.block[0](x), old_block.block[0](x)[:, kept], atol=1e-6)
        # The depthwise layer and SE read the same kept channels; the projection reads only those.
        hidden = old_block.block[0](x)
        assert torch.allclose(new_block.block[1](hidden[:, kept]), old_block.block[1](hidden)[:, kept], atol=1e-6)


def test_a_shared_bottleneck_keeps_the_same_channels_in_every_block_of_its_residual_run() -> None:
    old, new, _, _ = _pair("blocks.3.out_channels", 24)  # blocks 3, 4, 5 share 40 channels -> 24
    producers = [old.stages[2][i].block[-1][0].weight for i in range(3)]  # the three projections write them
    importance = sum(weight.flatten(1).pow(2).sum(1) for weight in producers)
    kept = torch.topk(importance, 24).indices.sort().values
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        projected = old.stages[2][0](x)
        assert torch.allclose(new.stages[2][0](x), projected[:, kept], atol=1e-5)
        # The next block reads the kept channels only: equal to the original with the others zeroed.
        zeroed = torch.zeros_like(projected)
        zeroed[:, kept] = projected[:, kept]
        assert torch.allclose(
            new.stages[2][1].block[0](projected[:, kept]), old.stages[2][1].block[0](zeroed), atol=1e-5
        )


def test_an_unpruned_network_inherits_every_weight_unchanged() -> None:
    old, new, _, _ = _pair("head_channels", 576)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(old(x), new(x))


def test_the_head_and_the_classifier_shrink_together() -> None:
    old, new, _, _ = _pair("head_channels", 256)
    kept = _top_l2(old.head[0].weight, 256)
    assert torch.equal(new.classifier[0].weight, old.classifier[0].weight[:, kept])


def test_growing_or_changing_the_structure_is_refused() -> None:
    old_ir = SPACE.lower(SMALL, num_classes=10, resolution=32)
    old = nas.compile(old_ir, seed=0)
    wider = SPACE.lower(
        SPACE.with_widths(SMALL, {**SPACE.prunable_widths(SMALL), "head_channels": 640}), num_classes=10, resolution=32
    )
    with pytest.raises(ValueError, match="grows"):
        inherit_weights(old, old_ir, wider)
    other = SPACE.lower(SPACE.presets()["mobilenetv3-large"], num_classes=10, resolution=32)
    with pytest.raises(ValueError, match="same layers"):
        inherit_weights(old, old_ir, other)


def test_a_removed_residual_block_takes_its_weights_and_leaves_its_neighbours_theirs() -> None:
    """Small's blocks 4 and 5 are alike; block 5 is pruned first, then block 4 removed: the network that
    is left computes block 3, the pruned block 5 and block 6 with their own weights (none moves)."""
    pruned = {**SPACE.prunable_widths(SMALL), "blocks.5.expand_channels": 64}
    parent = SPACE.with_widths(SMALL, pruned)
    child = SPACE.with_widths(SMALL, {**pruned, "blocks.4.expand_channels": 0})
    old_ir, new_ir = (SPACE.lower(g, num_classes=10, resolution=32) for g in (parent, child))
    assert len(new_ir.all_blocks()) == len(old_ir.all_blocks()) - 1
    old = nas.compile(old_ir, seed=0).eval()
    new = inherit_weights(old, old_ir, new_ir).eval()
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():  # stages[2]: blocks 3-7 of the parent; 3, the pruned 5, 6 and 7 of the child
        after_three = old.stages[2][0](x)
        assert torch.equal(new.stages[2][0](x), after_three)
        assert torch.equal(new.stages[2][1](after_three), old.stages[2][2](after_three))
        assert torch.equal(new.stages[2][2](after_three), old.stages[2][3](after_three))
    with pytest.raises(ValueError, match="only residual blocks|same layers"):  # a block that is not residual
        inherit_weights(new, new_ir, old_ir)
