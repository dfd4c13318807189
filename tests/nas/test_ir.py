"""The open IR: blocks carry op-specific options, stems of several blocks, heads of none."""

from __future__ import annotations

import pytest
import torch

from nas.compile import compile as compile_ir
from nas.cost import build_on_meta, count_macs
from nas.ir import BlockSpec, ChainNet, ClassifierSpec


def shufflenet_like(resolution: int = 32) -> ChainNet:
    """ShuffleNet's stem (3x3 stride-2 conv, then 3x3 stride-2 max-pool) and no head conv."""
    conv = BlockSpec("conv_bn_act", 3, 24, 2, resolution, {"kernel_size": 3})
    pool = BlockSpec("max_pool_3x3", 24, 24, 2, conv.output_size)
    block = BlockSpec("mbconv", 24, 48, 2, pool.output_size, {"expand_channels": 72, "kernel_size": 5})
    return ChainNet((conv, pool), ((block,),), (), ClassifierSpec(48, 10), resolution)


def test_a_two_block_stem_and_no_head_compile_and_run() -> None:
    ir = shufflenet_like()
    assert [path for path, _ in ir.all_blocks()] == ["stem[0]", "stem[1]", "stages[0][0]"]
    assert ir.out_channels == 48
    model = compile_ir(ir, seed=0).eval()
    assert isinstance(model.stem, torch.nn.Sequential) and len(model.stem) == 2
    assert isinstance(model.stem[1].pool, torch.nn.MaxPool2d)
    features = model.forward_features(torch.randn(2, 3, 32, 32))
    assert features.shape == (2, 48, 4, 4)  # 32 -> 16 (conv) -> 8 (pool) -> 4 (block)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    # 1 x 3 x 3 x 3 x 24 MACs per output pixel of the stem conv, at 16 x 16
    assert count_macs(build_on_meta(lambda: compile_ir(ir)), 32) > 16 * 16 * 27 * 24


def test_a_single_block_is_accepted_for_stem_and_head() -> None:
    ir = shufflenet_like()
    single = ChainNet(
        ir.stem[0],
        ((BlockSpec("conv_bn_act", 24, 32, 1, 16),),),
        BlockSpec("conv_bn_act", 32, 64, 1, 16),
        ClassifierSpec(64, 10),
        32,
    )
    assert isinstance(single.stem, tuple) and len(single.stem) == 1 and len(single.head) == 1


def test_options_are_stored_sorted_and_hashable() -> None:
    a = BlockSpec("mbconv", 8, 8, 1, 4, {"kernel_size": 5, "expand_channels": 16})
    b = BlockSpec("mbconv", 8, 8, 1, 4, {"expand_channels": 16, "kernel_size": 5})
    assert a == b and hash(a) == hash(b) and a.options == (("expand_channels", 16), ("kernel_size", 5))
    assert a.option("kernel_size") == 5 and a.option("se_channels") is None and a.op_options()["expand_channels"] == 16


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: BlockSpec("mbconv", 8, 8, 1, 4, {"kernel_size": [3]}), r"options.kernel_size: option values are"),
        (lambda: BlockSpec("mbconv", 8, 8, 1, 4, {"not a name": 1}), "not a valid option name"),
        (lambda: BlockSpec("", 8, 8), "op: must be a non-empty op name"),
        (lambda: BlockSpec("mbconv", 8, 8, 0), "stride: must be > 0"),
        (
            lambda: ChainNet((), ((BlockSpec("mbconv", 3, 8, 1, 8),),), (), ClassifierSpec(8, 2), 8),
            "stem: need at least",
        ),
        (
            lambda: ChainNet(
                (BlockSpec("conv_bn_act", 3, 8, 2, 8), BlockSpec("max_pool_3x3", 8, 8, 2, 8)),
                ((BlockSpec("mbconv", 8, 8, 1, 2),),),
                (),
                ClassifierSpec(8, 2),
                8,
            ),
            r"stem\[1\].input_size: expected 4",
        ),
        (
            lambda: ChainNet(
                (BlockSpec("conv_bn_act", 3, 8, 1, 8),),
                ((BlockSpec("mbconv", 8, 8, 1, 8),),),
                (),
                ClassifierSpec(16, 2),
                8,
            ),
            "classifier.in_features: expected 8",
        ),
    ],
)
def test_mistakes_name_the_field(build, match) -> None:
    with pytest.raises(ValueError, match=match):
        build()
