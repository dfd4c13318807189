"""The seed papers' ops: what each computes, CondenseNet's condensing schedule, the ``condense`` step
(outputs identical before and after), and the memory access cost."""

from dataclasses import replace

import pytest
import torch
from torch import nn

import nas
from nas.cost import build_on_meta, count_macs, count_memory_access
from nas.ops import build_op
from nas.seed_ops.condense import CondensedConv, LearnedGroupConv, condensing_stage, set_training_progress
from nas.seed_ops.shuffle import channel_shuffle
from search_spaces.blocks import BlocksSpace


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6.0).view(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]
    assert channel_shuffle(x, 3).flatten().tolist() == [0, 2, 4, 1, 3, 5]


def test_shufflenet_v2_unit_passes_half_of_its_input_untouched():
    unit = build_op("shufflenet_v2_unit", 8, 8, 1).eval()
    x = torch.randn(1, 8, 5, 5)
    out = unit(x)
    # After the 2-group shuffle the kept half sits at the even channels.
    assert torch.equal(out[:, 0::2], x[:, :4])
    down = build_op("shufflenet_v2_unit", 8, 16, 2)
    assert down.branch1 and down(x).shape == (1, 16, 3, 3)
    with pytest.raises(ValueError, match="even"):
        build_op("shufflenet_v2_unit", 8, 9, 2)


def test_shufflenet_v1_unit_adds_or_concatenates_the_pooled_input():
    x = torch.randn(1, 12, 6, 6)
    same = build_op("shufflenet_v1_unit", 12, 12, 1, {"groups": 3})
    assert same.add and same(x).shape == (1, 12, 6, 6)
    down = build_op("shufflenet_v1_unit", 12, 48, 2, {"groups": 3}).eval()
    out = down(x)
    assert out.shape == (1, 48, 3, 3)
    assert torch.allclose(out[:, :12], nn.AvgPool2d(3, 2, 1)(x))  # the shortcut comes first
    grouped = [m for m in down.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert [m.groups for m in grouped] == [3, 3] and grouped[1].out_channels == 36  # out - in
    ungrouped = build_op("shufflenet_v1_unit", 12, 48, 2, {"groups": 3, "group_first": False})
    assert ungrouped.branch_main_1[0].groups == 1
    with pytest.raises(ValueError, match="not divisible by groups 3"):
        build_op("shufflenet_v1_unit", 12, 40, 2, {"groups": 3})


def test_pools_keep_the_irs_size_rule():
    x = torch.randn(1, 4, 7, 7)
    assert build_op("pool", 4, 4, 2)(x).shape[-1] == 4  # ceil(7 / 2)
    assert build_op("pool", 4, 4, 2, {"kind": "avg", "kernel_size": 2})(x).shape[-1] == 4
    with pytest.raises(ValueError, match="kernel_size must be odd, or 2 with stride 2"):
        build_op("pool", 4, 4, 4, {"kernel_size": 4})


def test_se_bottleneck_gates_the_residual_branch_before_the_sum():
    block = build_op("se_bottleneck", 64, 256, 2, {"mid_channels": 128, "groups": 32, "se_channels": 16})
    assert block.conv2.groups == 32 and block.conv2.stride == (2, 2) and block.downsample is not None
    assert block.se.fc1.out_channels == 16 and block.se.fc2.out_channels == 256
    calls = []
    block.se.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    block.bn3.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    assert block(torch.randn(1, 64, 8, 8)).shape == (1, 256, 4, 4)
    assert calls == [torch.Size([1, 256, 4, 4])] * 2  # SE reads the branch after bn3, before the addition
    assert build_op("se_bottleneck", 256, 256, 1).downsample is None


def test_dual_path_block_adds_the_residual_path_and_appends_the_dense_path():
    torch.manual_seed(0)
    first = build_op(
        "dual_path_block",
        10,
        64 + 3 * 16,
        1,
        {"residual_channels": 64, "bottleneck_channels": 64, "groups": 32, "projection": True},
    ).eval()
    x = torch.randn(1, 10, 6, 6)
    out = first(x)
    assert out.shape == (1, 112, 6, 6)
    paths, new = first.projection(x), first.conv_c(first.conv_b(first.conv_a(x)))
    assert torch.allclose(out[:, :64], paths[:, :64] + new[:, :64])
    assert torch.equal(out[:, 64:96], paths[:, 64:]) and torch.equal(out[:, 96:], new[:, 64:])
    second = build_op(
        "dual_path_block", 112, 128, 1, {"residual_channels": 64, "bottleneck_channels": 64, "groups": 32}
    ).eval()
    assert second.projection is None
    assert torch.equal(second(out)[:, 64:112], out[:, 64:])  # the dense path is kept and grows by 16
    with pytest.raises(ValueError, match="multiple of 3"):
        build_op("dual_path_block", 10, 65, 2, {"residual_channels": 64})


def test_condensing_stages_follow_the_reference_schedule():
    # C = 4: three condensing stages over the first half of training, then optimisation.
    assert [condensing_stage(p, 4) for p in (0.0, 0.16, 0.17, 0.33, 0.34, 0.49, 0.5, 1.0)] == [0, 0, 1, 1, 2, 2, 3, 3]
    layer = LearnedGroupConv(16, 32, groups=4, condense_factor=4, bn_eps=1e-5, bn_momentum=0.1)
    kept = []
    for progress in (0.0, 0.2, 0.4, 0.6, 0.9):
        layer.set_training_progress(progress)
        kept.append([len(inputs) for inputs in layer.kept_inputs()])
    assert kept == [[16] * 4, [12] * 4, [8] * 4, [4] * 4, [4] * 4]
    # Every output of a group reads the same inputs: outputs o, o + 4, ... belong to group o % 4.
    assert all(torch.equal(layer.mask[g], layer.mask[g + 4 * k]) for g in range(4) for k in range(8))
    with pytest.raises(ValueError, match="progress"):
        set_training_progress(layer, 1.5)


def test_condensing_drops_the_inputs_of_smallest_weight_per_group():
    layer = LearnedGroupConv(8, 4, groups=2, condense_factor=2, bn_eps=1e-5, bn_momentum=0.1)
    with torch.no_grad():
        layer.conv.weight.copy_(torch.arange(1.0, 9.0).repeat(4, 1).view(4, 8, 1, 1))
        layer.conv.weight[0::2, :4] *= 100  # group 0 relies on inputs 0-3, group 1 on inputs 4-7
    layer.set_training_progress(1.0)
    assert [k.tolist() for k in layer.kept_inputs()] == [[0, 1, 2, 3], [4, 5, 6, 7]]


def _trained_dense_layer(condense_factor: int, progress: float) -> nn.Module:
    torch.manual_seed(0)
    layer = build_op("dense_layer", 24, 40, 2, {"condense_factor": condense_factor})
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    for step in range(6):  # a few steps: BatchNorm statistics and weights off their initial values
        set_training_progress(layer, progress * step / 5)
        layer(torch.randn(4, 24, 8, 8)).square().mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    return layer.eval()


@pytest.mark.parametrize("condense_factor, progress", [(4, 1.0), (4, 0.2), (2, 0.7)])
def test_condense_keeps_the_outputs_identical(condense_factor, progress):
    layer = _trained_dense_layer(condense_factor, progress)
    x = torch.randn(2, 24, 8, 8)
    with torch.no_grad():
        before = layer(x)
        nas.condense(layer)
        after = layer(x)
    assert isinstance(layer.conv_1, CondensedConv)
    assert torch.allclose(before, after, atol=1e-6), (before - after).abs().max()


def test_condensed_weights_load_into_the_deployment_preset_with_identical_outputs():
    torch.manual_seed(0)
    presets = BlocksSpace().presets()
    model = nas.materialize(replace(presets["condensenet-74"], resolution=32), num_classes=5, seed=0)
    for layer in model.modules():  # weights away from init, so that the kept inputs differ per group
        if isinstance(layer, LearnedGroupConv):
            with torch.no_grad():
                layer.conv.weight.normal_()
    set_training_progress(model, 1.0)
    kept = [
        inputs.tolist()
        for layer in model.modules()
        if isinstance(layer, LearnedGroupConv)
        for inputs in layer.kept_inputs()
    ]
    assert len({tuple(k) for k in kept}) > len(kept) // 2  # the groups read different inputs
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        nas.condense(model)
        whole = replace(presets["condensenet-74-condensed"], resolution=32, classifier_keep=1.0)  # outputs unchanged
        deployed = nas.materialize(whole, num_classes=5).eval()
        deployed.load_state_dict(model.state_dict())
        after = deployed(x)
    # Random N(0, 1) weights make the logits large (about 1e7); compare relative to them.
    assert ((before - after).abs().max() / before.abs().max()) < 1e-5


def test_condense_classifier_keeps_the_most_used_inputs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 3))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 0, 5, 0, 2, 0]] * 3))
    x = torch.randn(2, 6, 1, 1)
    expected = model(x)
    nas.condense(model, classifier_keep=0.5)
    assert model[1].index.tolist() == [0, 4, 2]  # the three largest, in ascending order of importance
    assert model[1].linear.in_features == 3
    assert torch.allclose(model(x), expected)  # the dropped inputs had weight 0: the same logits
    with pytest.raises(ValueError, match="no nn.Linear classifier left to condense"):
        nas.condense(model, classifier_keep=0.5)


def test_a_resumed_layer_knows_its_condensing_stage():
    layer = LearnedGroupConv(16, 32, groups=4, condense_factor=4, bn_eps=1e-5, bn_momentum=0.1)
    layer.set_training_progress(0.4)
    fresh = LearnedGroupConv(16, 32, groups=4, condense_factor=4, bn_eps=1e-5, bn_momentum=0.1)
    fresh.load_state_dict(layer.state_dict())
    assert "stage=2" in repr(fresh) and torch.equal(fresh.mask, layer.mask)
    fresh.set_training_progress(0.4)  # nothing more is due
    assert torch.equal(fresh.mask, layer.mask)
    fresh.set_training_progress(1.0)
    assert [len(k) for k in fresh.kept_inputs()] == [4] * 4
    assert "stage=0" in repr(build_on_meta(lambda: LearnedGroupConv(8, 8, 2, 2, 1e-5, 0.1)))


def test_memory_access_of_a_1x1_conv_is_the_papers_formula():
    """ShuffleNet V2 §2 G1: MAC = hw(c1 + c2) + c1 c2 for a 1x1 conv (elements read and written)."""
    conv = nn.Conv2d(3, 16, 1, bias=False)
    h = w = 10
    assert count_memory_access(conv, 10) == h * w * (3 + 16) + 3 * 16


def test_equal_macs_more_groups_more_memory_access():
    """G2: at equal MACs a grouped 1x1 (wider, to keep B fixed) reads and writes more."""
    plain = nn.Conv2d(3, 64, 1, bias=False)
    grouped = nn.Sequential(nn.Conv2d(3, 64, 1, bias=False), nn.Conv2d(64, 64, 1, groups=4, bias=False))
    dense = nn.Sequential(nn.Conv2d(3, 64, 1, bias=False), nn.Conv2d(64, 16, 1, bias=False))
    assert count_macs(grouped, 8) == count_macs(dense, 8)
    assert count_memory_access(grouped, 8) > count_memory_access(dense, 8) > count_memory_access(plain, 8)


def test_presets_of_equal_macs_differ_in_memory_access():
    """ShuffleNet v1 1x: groups 3 and 8 cost about the same MACs (paper Table 1), not the same memory access."""
    cost = {g: nas.summarize(f"shufflenet-v1-g{g}-x1.0") for g in (3, 8)}
    assert abs(cost[3]["macs"] / cost[8]["macs"] - 1) < 0.01
    assert cost[8]["memory_access"] > 1.4 * cost[3]["memory_access"]
    assert (
        count_memory_access(build_on_meta(lambda: nas.materialize("shufflenet-v2-x1.0")), 224)
        == nas.summarize("shufflenet-v2-x1.0")["memory_access"]
    )
