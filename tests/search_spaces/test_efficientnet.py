"""EfficientNet: the rounding rules, the per-model table, and compound scaling (arXiv 1905.11946)."""

import pytest

import nas
from nas.scaling import compound_constraint, compound_multipliers, round_repeats, scale_resolution
from nas.space_base import make_divisible
from nas.spaces.scaling import CompoundPoint
from search_spaces.efficientnet import B0_STAGES, scale_stages


def test_make_divisible_is_the_reference_rule():
    assert make_divisible(32 * 1.1) == 32  # 35.2 -> 32 (within 10%)
    assert make_divisible(16 * 1.1) == 16  # 17.6 -> 16
    assert make_divisible(40 * 1.4) == 56
    assert make_divisible(10.0) == 16  # 8 would be more than 10% down: +8
    assert make_divisible(3.0) == 8  # never below the divisor
    assert make_divisible(1280 * 1.8) == 2304


def test_depth_rounds_up():
    assert round_repeats(1, 1.1) == 2 and round_repeats(3, 1.4) == 5 and round_repeats(4, 3.1) == 13


# (stem, stage outputs, repeats, head) per model: paper-facts §3.4, counted from torchvision.
TABLE = {
    "efficientnet-b0": (32, (16, 24, 40, 80, 112, 192, 320), (1, 2, 2, 3, 3, 4, 1), 1280),
    "efficientnet-b1": (32, (16, 24, 40, 80, 112, 192, 320), (2, 3, 3, 4, 4, 5, 2), 1280),
    "efficientnet-b2": (32, (16, 24, 48, 88, 120, 208, 352), (2, 3, 3, 4, 4, 5, 2), 1408),
    "efficientnet-b3": (40, (24, 32, 48, 96, 136, 232, 384), (2, 3, 3, 5, 5, 6, 2), 1536),
    "efficientnet-b4": (48, (24, 32, 56, 112, 160, 272, 448), (2, 4, 4, 6, 6, 8, 2), 1792),
    "efficientnet-b5": (48, (24, 40, 64, 128, 176, 304, 512), (3, 5, 5, 7, 7, 9, 3), 2048),
    "efficientnet-b6": (56, (32, 40, 72, 144, 200, 344, 576), (3, 6, 6, 8, 8, 11, 3), 2304),
    "efficientnet-b7": (64, (32, 48, 80, 160, 224, 384, 640), (4, 7, 7, 10, 10, 13, 4), 2560),
}


@pytest.mark.parametrize("name", sorted(TABLE))
def test_scaled_channels_and_repeats(name):
    stem, outputs, repeats, head = TABLE[name]
    genotype = nas.presets()[name]
    scaled = scale_stages(B0_STAGES, genotype.width, genotype.depth)
    assert tuple(s.out_channels for s in scaled) == outputs
    assert tuple(s.repeats for s in scaled) == repeats
    ir = nas.lower(name)
    assert ir.stem[0].out_channels == stem and ir.head[0].out_channels == head
    assert tuple(len(stage) for stage in ir.stages) == repeats


def test_presets_carry_their_rates():
    dropouts = [nas.presets()[f"efficientnet-b{i}"].dropout for i in range(8)]
    assert dropouts == [0.2, 0.2, 0.3, 0.3, 0.4, 0.4, 0.5, 0.5]
    ir = nas.lower("efficientnet-b0")
    rates = [block.option("drop_path") for _, block in ir.named_blocks()]
    assert rates[0] == 0 and rates == sorted(rates) and rates[-1] == pytest.approx(0.2 * 15 / 16)
    assert ir.classifier.dropout == 0.2


def test_se_squeezes_a_quarter_of_the_block_input():
    ir = nas.lower("efficientnet-b0")
    for _, block in ir.named_blocks():
        assert block.option("se_channels") == max(1, block.in_channels // 4)
        assert (
            block.option("activation") == block.option("se_activation") == "silu"
            and block.option("se_gate") == "sigmoid"
        )


def test_compound_multipliers_eq3():
    multipliers = compound_multipliers(1.2, 1.1, 1.15, 1.0)
    assert (multipliers.width, multipliers.depth, scale_resolution(224, multipliers.resolution)) == (
        pytest.approx(1.1),
        pytest.approx(1.2),
        258,
    )
    assert compound_constraint(1.2, 1.1, 1.15) == pytest.approx(1.92, abs=0.005)  # ~2: FLOPS double per phi
    multipliers = compound_multipliers(1.2, 1.1, 1.15, 3.0)
    assert multipliers.width == pytest.approx(1.1**3) and multipliers.depth == pytest.approx(1.2**3)
    with pytest.raises(ValueError, match="alpha: must be a number in \\[1"):
        CompoundPoint(0.9, 1.1, 1.15)


def test_published_table_is_not_alpha_to_the_phi():
    """B1 is (w 1.0, d 1.1, 240), not phi=1's (1.1, 1.2, 258): the presets are the reference table."""
    b1 = nas.presets()["efficientnet-b1"]
    assert (b1.width, b1.depth, b1.resolution) == (1.0, 1.1, 240)
