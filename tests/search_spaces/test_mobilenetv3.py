"""MobileNetV3: the paper's block tables, SE and h-swish placement, the 0.75 models, the factorized space."""

import pytest
import torch

import nas
import nas.space
from nas.ops import MBConv, SqueezeExcitation

SPACE = nas.space.get("mobilenetv3")


def test_large_and_small_follow_the_paper_tables():
    large, small = nas.presets()["mobilenetv3-large"], nas.presets()["mobilenetv3-small"]
    assert [b.expand_channels for b in large.blocks] == [
        16,
        64,
        72,
        72,
        120,
        120,
        240,
        200,
        184,
        184,
        480,
        672,
        672,
        960,
        960,
    ]
    assert [b.out_channels for b in small.blocks] == [16, 24, 24, 40, 40, 40, 48, 48, 96, 96, 96]
    assert (large.head_channels, large.classifier_hidden) == (960, 1280)
    assert (small.head_channels, small.classifier_hidden) == (576, 1024)


def test_se_is_a_quarter_of_the_expansion_rounded_to_8_with_hard_sigmoid():
    ir = nas.lower("mobilenetv3-large")
    with_se = [b for _, b in ir.named_blocks() if b.option("se_channels")]
    assert [b.option("se_channels") for b in with_se] == [24, 32, 32, 120, 168, 168, 240, 240]
    assert all(b.option("se_gate") == "hardsigmoid" and b.option("se_activation") == "relu" for b in with_se)
    model = nas.compile(ir)
    gates = [m.gate for m in model.modules() if isinstance(m, SqueezeExcitation)]
    assert gates and all(isinstance(g, torch.nn.Hardsigmoid) for g in gates)


def test_h_swish_in_the_second_half_and_the_stem():
    ir = nas.lower("mobilenetv3-large")
    assert ir.stem[0].option("activation") == "hardswish" and ir.stem[0].out_channels == 16
    activations = [b.option("activation") for _, b in ir.named_blocks()]
    assert activations == ["relu"] * 6 + ["hardswish"] * 9


@pytest.mark.parametrize(
    "preset,params,macs",
    [
        ("mobilenetv3-large-075", 3_993_528, 154.6e6),  # timm tf_mobilenetv3_large_075; paper 4.0M / 155M
        ("mobilenetv3-small-075", 2_041_872, 43.4e6),  # timm tf_mobilenetv3_small_075; paper 2.0M / 44M
    ],
)
def test_075_models_with_fixed_head(preset, params, macs):
    summary = nas.summarize(preset)
    assert summary["params"] == params
    assert abs(summary["macs"] - macs) <= 0.005 * macs


def test_factorized_decisions():
    decisions = SPACE.decisions()
    assert len(decisions) == 6 * 4
    assert {d.name.split(".")[1] for d in decisions} == {"kernel_size", "expand_ratio", "se", "depth"}
    assert next(d for d in decisions if d.name == "stage0.kernel_size").choices == (3, 5, 7)


def test_decoded_network_follows_its_choices():
    choices = {d.name: d.choices[0] for d in SPACE.decisions()}
    choices.update({"stage3.kernel_size": 7, "stage3.depth": 3, "stage3.se": True, "stage3.expand_ratio": 6})
    genotype = SPACE.decode(choices)
    stage3 = [b for b in genotype.blocks if b.out_channels == 80]
    assert len(stage3) == 3 and all(b.kernel_size == 7 and b.se for b in stage3)
    assert stage3[0].stride == 2 and stage3[1].stride == 1
    assert stage3[0].expand_channels == 40 * 6 and stage3[1].expand_channels == 80 * 6
    assert SPACE.encode(genotype) == choices


def test_published_models_are_outside_the_factorized_space():
    with pytest.raises(ValueError, match="outside the factorized"):
        SPACE.encode(nas.presets()["mobilenetv3-large"])


def test_blocks_compile_to_inverted_residuals():
    model = nas.materialize("mobilenetv3-small", num_classes=4)
    blocks = [m for m in model.modules() if isinstance(m, MBConv)]
    assert len(blocks) == 11
    assert [b.use_residual for b in blocks] == [False, False, True, False, True, True, False, True, False, True, True]


def test_prunable_widths_name_expansions_shared_bottlenecks_and_the_head():
    space = nas.space.get("mobilenetv3")
    small, large = space.presets()["mobilenetv3-small"], space.presets()["mobilenetv3-large"]
    widths = space.prunable_widths(small)
    # Block 0 has no expansion layer: its depthwise conv runs at the stem's width, pruned with it.
    assert "blocks.0.expand_channels" not in widths and widths["stem_channels"] == 16
    # Blocks 3-5 share 40 channels through residual connections: one name, the first block's.
    assert widths["blocks.3.out_channels"] == 40 and "blocks.4.out_channels" not in widths
    assert widths["blocks.4.expand_channels"] == 240 and widths["head_channels"] == 576 and len(widths) == 17
    # V3-Large's first block adds its input back: the stem and block 0 share 16 channels.
    assert "blocks.0.out_channels" not in space.prunable_widths(large)
    for genotype in (small, large):
        assert space.with_widths(genotype, space.prunable_widths(genotype)) == genotype


def test_with_widths_narrows_every_block_that_shares_a_width():
    space = nas.space.get("mobilenetv3")
    small = space.presets()["mobilenetv3-small"]
    narrowed = space.with_widths(
        small, {**space.prunable_widths(small), "blocks.3.out_channels": 24, "stem_channels": 8}
    )
    assert [b.out_channels for b in narrowed.blocks[3:6]] == [24, 24, 24]
    assert narrowed.blocks[6].out_channels == 48 and narrowed.stem_channels == 8
    assert narrowed.blocks[0].expand_channels == 8  # no expansion layer: it follows its input
    ir = space.lower(narrowed, num_classes=10, resolution=32)  # a valid network
    assert ir.stages[2][1].in_channels == 24


@pytest.mark.parametrize(
    "change, message",
    [
        ({"blocks.4.expand_channels": 40}, "expansion layer would vanish"),
        ({"blocks.6.out_channels": 40}, "residual connection would appear"),
        ({"head_channels": 0}, "head_channels"),
    ],
)
def test_with_widths_refuses_a_change_of_structure_or_range(change, message):
    space = nas.space.get("mobilenetv3")
    small = space.presets()["mobilenetv3-small"]
    with pytest.raises(ValueError, match=message):
        space.with_widths(small, {**space.prunable_widths(small), **change})
    with pytest.raises(ValueError, match="missing"):
        space.with_widths(small, {"stem_channels": 16})


def test_a_residual_block_is_removed_by_a_zero_expansion_width_and_found_again_by_its_start():
    from nas.spaces.widths import WidthSpace

    space = nas.space.get("mobilenetv3")
    small = space.presets()["mobilenetv3-small"]
    assert space.removable_widths(small) == {f"blocks.{i}.expand_channels" for i in (2, 4, 5, 7, 9, 10)}
    widths = {**space.prunable_widths(small), "blocks.7.expand_channels": 0, "blocks.5.expand_channels": 64}
    removed = space.with_widths(small, widths)
    assert len(removed.blocks) == 10 and removed.blocks[7] == small.blocks[8]  # every other block as it was
    assert space.widths_of(small, removed) == widths  # names relative to the start, 0 for the removed block
    pruning = WidthSpace(space, small)
    assert pruning.encode(removed) == widths and pruning.decode(widths) == removed
    assert next(d for d in pruning.decisions() if d.name == "blocks.7.expand_channels").choices[0] == 0
    with pytest.raises(ValueError, match="blocks.3.expand_channels"):  # block 3 is not residual: 0 is no width
        space.with_widths(small, {**space.prunable_widths(small), "blocks.3.expand_channels": 0})
    with pytest.raises(ValueError, match="has blocks the start does not|neither there nor removable"):
        space.widths_of(removed, small)
