"""Compound scaling: the rounding rules, scaling EfficientNet and MobileNetV3 genotypes, and the
published coefficients' family (arXiv 1905.11946 §3.3, eq. 3)."""

from __future__ import annotations

import json
from itertools import groupby

import pytest
import torch

import nas
from nas.compile import compile as compile_ir
from nas.scaling import compound_constraint, distribute_repeats, grid_values, make_divisible, scale_genotype
from nas.serialization import genotype_json
from nas.spaces.scaling import CompoundPoint, CompoundScalingSpace, full_cost
from search_spaces.efficientnet import EfficientNetSpace
from search_spaces.mobilenetv3 import LARGE, SMALL, MobileNetV3Space, scale_depth, scale_width

EFFICIENTNET, MOBILENET = EfficientNetSpace(), MobileNetV3Space()


def test_make_divisible_lives_in_the_core_and_the_spaces_share_it():
    from nas.space_base import make_divisible as shared

    assert shared is make_divisible
    assert [make_divisible(v) for v in (35.2, 35.9, 36.0, 9.0, 8.5)] == [32, 40, 40, 16, 8]


@pytest.mark.parametrize(
    ("repeats", "depth", "expected"),
    [
        ([1, 1, 2], 1.2, [1, 2, 2]),  # V3-Large's 80-channel stage: 4 -> 5, the middle row grows (timm)
        ([1, 1, 2], 2.0, [2, 2, 4]),
        ([3], 1.4, [5]),  # one row: ceil(3 x 1.4)
        ([1, 1], 0.5, [1, 1]),  # every row keeps a block
        ([2, 2], 1.0, [2, 2]),
    ],
)
def test_distribute_repeats_is_timms_rule(repeats, depth, expected):
    assert distribute_repeats(repeats, depth) == expected


def test_grid_values_and_their_limits():
    assert grid_values(0.25, 2.0) == (1.0, 1.25, 1.5, 1.75, 2.0)
    assert grid_values(0.1, 1.35) == (1.0, 1.1, 1.2, 1.3)  # floats land on 10 decimals, the end is kept
    assert len(grid_values(0.05, 2.0)) == 21 and grid_values(0.05, 2.0)[-1] == 2.0
    for step, high, message in (
        (0, 2, "grid_step"),
        (-0.1, 2, "grid_step"),
        (0.1, 0.5, "grid_high"),
        (0.005, 2, "coarser step"),
        (float("nan"), 2, "grid_step"),
    ):
        with pytest.raises(ValueError, match=message):
            grid_values(step, high)


def test_a_space_without_scale_is_refused_in_one_line():
    with pytest.raises(ValueError, match="'nasnet' cannot be scaled"):
        scale_genotype(nas.space.get("nasnet"), nas.presets()["nasnet-a-mobile"], width=1.1)
    with pytest.raises(ValueError, match="width: must be a number"):
        scale_genotype(EFFICIENTNET, nas.presets()["efficientnet-b0"], width=0)


def test_efficientnet_scaling_composes_over_b0_and_rounds_once():
    b0 = nas.presets()["efficientnet-b0"]
    scaled = scale_genotype(EFFICIENTNET, b0, width=1.2, depth=1.4, resolution=300 / 224)
    assert (scaled.width, scaled.depth, scaled.resolution) == (1.2, 1.4, 300)
    b3 = nas.presets()["efficientnet-b3"]  # same multipliers as B3: the same network (rates aside)
    assert EFFICIENTNET.lower(scaled) == EFFICIENTNET.lower(
        b3.__class__(
            **{
                **b3.__dict__,
                "dropout": 0.2,
                "stochastic_depth": 0.2,
                "bn_eps": b0.bn_eps,
                "bn_momentum": b0.bn_momentum,
            }
        )
    )
    twice = scale_genotype(EFFICIENTNET, scale_genotype(EFFICIENTNET, b0, width=1.1), width=1.1)
    assert twice.width == 1.21  # multipliers compose; rounding happens once, on B0's table
    with pytest.raises(ValueError, match="depth: must be in"):
        scale_genotype(EFFICIENTNET, b0, depth=9.0)  # beyond the space's bounds: one line


def test_published_b1_to_b7_keep_their_table():
    """The presets are the reference table, not B0 x alpha^phi (paper-facts §3.3)."""
    b0 = nas.presets()["efficientnet-b0"]
    space = CompoundScalingSpace(EFFICIENTNET, b0, step=0.05)
    phi1 = space.scaled(CompoundPoint(1.2, 1.1, 1.15), 1)
    assert (phi1.width, phi1.depth, phi1.resolution) == (1.1, 1.2, 258)
    b1 = nas.presets()["efficientnet-b1"]
    assert (b1.width, b1.depth, b1.resolution) == (1.0, 1.1, 240)
    assert full_cost(EFFICIENTNET, nas.presets()["efficientnet-b7"])["params"] == 66_347_960  # torchvision's


def test_published_coefficients_measured_macs_per_phi():
    """B0 scaled by (1.2, 1.1, 1.15), built with the reference rounding, against 2^phi.

    The issue asked for 15% at phi = 1..4; measured, phi = 3 and 4 are within it (+5.3%, +2.4%)
    and phi = 1 and 2 are not (+28.6%, +17.3%): B0's 1-block stages become 2 blocks for any
    depth > 1 (ceil), so phi = 1 has 23 blocks instead of 19.2. That gap is why the grid has a
    ``macs`` mode. The exact ratios are pinned: any change of a rounding rule shows here.
    """
    b0 = nas.presets()["efficientnet-b0"]
    space = CompoundScalingSpace(EFFICIENTNET, b0)
    point = CompoundPoint(1.2, 1.1, 1.15)
    base = full_cost(EFFICIENTNET, b0)["macs"]
    ratios = {phi: full_cost(EFFICIENTNET, space.scaled(point, phi))["macs"] / base for phi in range(1, 5)}
    print(
        "measured MACs ratios of B0 scaled by (1.2, 1.1, 1.15):",
        {phi: round(ratio, 4) for phi, ratio in ratios.items()},
        "formula",
        compound_constraint(1.2, 1.1, 1.15),
    )
    assert [round(ratios[phi], 4) for phi in range(1, 5)] == [2.5728, 4.6927, 8.4261, 16.3802]
    for phi in (3, 4):
        assert abs(ratios[phi] / 2**phi - 1) <= 0.15, (phi, ratios[phi])
    for phi in (1, 2):  # the shortfall, stated: ceil on depth adds more than 15%
        assert 0.15 < ratios[phi] / 2**phi - 1 < 0.30, (phi, ratios[phi])
    assert [len(stage) for stage in EFFICIENTNET.lower(space.scaled(point, 1)).stages] == [2, 3, 3, 4, 4, 5, 2]


def test_mobilenetv3_scaling_keeps_the_network_at_one_and_rounds_like_the_reference():
    for genotype in MOBILENET.presets().values():  # the rules themselves, at 1, keep every preset
        assert scale_width(genotype, 1.0) == genotype and scale_depth(genotype, 1.0) == genotype
        assert scale_genotype(MOBILENET, genotype) == genotype
    # stages are found before widths are rounded: at width 0.5 Small's 40- and 48-wide stages both
    # become 24 wide, and must still grow as two stages (3 -> 4 and 2 -> 3 blocks at depth 1.2)
    half = scale_genotype(MOBILENET, SMALL, width=0.5, depth=1.2)
    assert len(half.blocks) == len(scale_depth(SMALL, 1.2).blocks) == 16
    deeper = scale_depth(LARGE, 1.2)
    stages = [(width, len(list(blocks))) for width, blocks in groupby(b.out_channels for b in deeper.blocks)]
    assert stages == [(16, 2), (24, 3), (40, 4), (80, 5), (112, 3), (160, 4)]  # ceil(n x 1.2) per stage
    eighty = [b for b in deeper.blocks if b.out_channels == 80]
    assert [(b.expand_channels, b.stride) for b in eighty] == [(240, 2), (200, 1), (200, 1), (184, 1), (184, 1)]
    doubled = [b for b in scale_depth(LARGE, 2.0).blocks if b.out_channels == 80]
    assert (doubled[1].expand_channels, doubled[1].stride) == (480, 1)  # the stride-2 row repeats at ratio 6
    scaled = scale_genotype(MOBILENET, LARGE, width=1.1, depth=1.2, resolution=1.15)
    assert (scaled.stem_channels, scaled.head_channels, scaled.classifier_hidden, scaled.resolution) == (
        16,
        1056,
        1408,
        258,
    )
    assert all(b.out_channels % 8 == 0 and b.expand_channels % 8 == 0 for b in scaled.blocks)
    narrow = scale_genotype(MOBILENET, LARGE, width=0.75)
    assert narrow.classifier_hidden == 1280  # the paper's 0.75 models keep the classifier
    assert (
        MOBILENET.genotype_from_dict(json.loads(json.dumps(genotype_json("mobilenetv3", scaled)))["genotype"]) == scaled
    )
    model = compile_ir(MOBILENET.lower(scaled, num_classes=10, resolution=32))  # an ordinary module that runs
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
