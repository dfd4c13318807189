"""Every registered op through the op contract of ``nas.testing``; the registry's rules; the
behaviour of the shared layers."""

from typing import ClassVar

import pytest
import torch
from torch import nn

from nas import ops, registry
from nas.compile import compile as compile_ir
from nas.ir import BlockSpec, ChainNet, ClassifierSpec
from nas.testing import OpContract
from search_spaces.nasnet import NASNET_OPS


class TestRegisteredOps(OpContract):
    # Ops that keep their width, and blocks that only widen (a concatenating unit, a dense layer).
    channels_by_op: ClassVar[dict[str, tuple[tuple[int, int], ...]]] = {
        **dict.fromkeys(("channel_shuffle", "pool", "bn_act", "activation"), ((12, 12),)),
        **dict.fromkeys(("shufflenet_v1_unit", "dense_layer", "dual_path_block"), ((12, 24),)),
    }
    stride_one_only = frozenset({"channel_shuffle", "bn_act", "activation"})
    zero_ops = frozenset({"zero"})
    option_examples: ClassVar[dict[str, dict[str, object]]] = {
        "dual_path_block": {"residual_channels": 6, "bottleneck_channels": 8, "groups": 2},
        "channel_shuffle": {"groups": 3},
        "pool": {"kernel_size": 5},
        "se_bottleneck": {"mid_channels": 6, "groups": 3, "se_channels": 4},
        "shufflenet_v1_unit": {"groups": 2, "mid_channels": 12},
    }

    @pytest.fixture(params=registry.ops.names())
    def op(self, request):
        return request.param


def test_nasnet_has_13_ops_all_registered():
    assert len(NASNET_OPS) == 13 == len(set(NASNET_OPS))
    assert set(NASNET_OPS) <= set(registry.ops.names())


def test_registering_a_name_twice_raises():
    with pytest.raises(ValueError, match="already registered"):
        ops.register_op("sep_conv_3x3")(lambda c_in, c_out, stride: nn.Identity())


def test_unknown_op_names_valid_ones():
    with pytest.raises(ValueError, match="unknown op 'sep_conv_9x9'.*sep_conv_3x3"):
        ops.get_op("sep_conv_9x9")


def test_callable_passes_through():
    factory = lambda c_in, c_out, stride: nn.Conv2d(c_in, c_out, 1, stride)  # noqa: E731
    assert ops.get_op(factory) is factory
    assert ops.build_op(factory, 3, 4, 2)(torch.zeros(1, 3, 8, 8)).shape == (1, 4, 4, 4)


def test_rejected_option_names_the_option_and_the_valid_ones():
    with pytest.raises(
        ValueError,
        match=r"options.se_channels: op 'conv_bn_act' takes no such option; valid: "
        r"\['activation', 'kernel_size'\]",
    ):
        ops.build_op("conv_bn_act", 3, 4, 1, {"se_channels": 2})
    with pytest.raises(ValueError, match=r"options.activation: 'gelu' is not valid"):
        ops.build_op("conv_bn_act", 3, 4, 1, {"activation": "gelu"})
    with pytest.raises(ValueError, match="kernel_size: must be a positive odd integer"):
        ops.build_op("mbconv", 8, 8, 1, {"kernel_size": 4})


def _chain(block: BlockSpec) -> ChainNet:
    stem = BlockSpec("conv_bn_act", 3, 16, 1, 8, {"kernel_size": 3})
    return ChainNet(stem, ((block,),), (), ClassifierSpec(block.out_channels, 10), 8)


def test_every_ir_option_reaches_the_op_even_at_the_ir_s_old_default():
    """Issue 6, fault 1: kernel 1 used to be dropped as 'the default' and compiled to a 3x3 depthwise conv."""
    block = BlockSpec("mbconv", 16, 16, 1, 8, {"kernel_size": 1, "expand_channels": 32})
    depthwise = compile_ir(_chain(block)).stages[0][0].block[1][0]
    assert depthwise.groups == 32 and depthwise.kernel_size == (1, 1)


def test_an_option_left_out_takes_the_op_s_own_default():
    block = BlockSpec("mbconv", 16, 16, 1, 8, {"expand_channels": 32})
    depthwise = compile_ir(_chain(block)).stages[0][0].block[1][0]
    assert depthwise.kernel_size == (3, 3) == (ops.declared_options("mbconv")["kernel_size"].default,) * 2


def test_with_defaults_makes_equal_modules_equal_keys():
    implicit = BlockSpec("mbconv", 16, 16, 1, 8, {"expand_channels": 32})
    explicit = BlockSpec("mbconv", 16, 16, 1, 8, {"expand_channels": 32, "kernel_size": 3, "se_channels": 0})
    assert implicit != explicit and ops.with_defaults(implicit) == ops.with_defaults(explicit)
    assert ops.with_defaults(implicit).option("se_gate") == "sigmoid"
    assert hash(ops.with_defaults(implicit)) == hash(ops.with_defaults(explicit))


def test_op_names_are_resolved_at_compile_time():
    block = BlockSpec("not_registered_yet", 16, 16, 1, 8)  # an IR may name an op a plug-in adds later
    with pytest.raises(ValueError, match=r"stages\[0\]\[0\]: unknown op 'not_registered_yet'"):
        compile_ir(_chain(block))
    registry.ops.register("not_registered_yet", lambda c_in, c_out, stride: nn.Conv2d(c_in, c_out, 1, stride))
    try:
        assert isinstance(compile_ir(_chain(block)).stages[0][0], nn.Conv2d)
    finally:
        registry.ops.unregister("not_registered_yet")


def test_identity_is_free_when_shapes_match():
    assert isinstance(ops.build_op("identity", 8, 8, 1), nn.Identity)
    assert sum(p.numel() for p in ops.build_op("identity", 8, 8, 2).parameters()) > 0


def test_separable_conv_is_applied_twice_without_bn_between_depthwise_and_pointwise():
    layers = list(ops.build_op("sep_conv_5x5", 8, 16, 2))
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds == ["ReLU", "Conv2d", "Conv2d", "BatchNorm2d"] * 2
    assert layers[1].stride == (2, 2) and layers[5].stride == (1, 1)  # only the first one strides
    assert layers[1].groups == 8 and layers[2].kernel_size == (1, 1)


def test_drop_path_drops_whole_examples_and_rescales():
    torch.manual_seed(0)
    layer = ops.DropPath(0.5).train()
    y = layer(torch.ones(4000, 3, 2, 2))
    per_example = y.flatten(1)
    assert set(per_example.unique().tolist()) == {0.0, 2.0}
    assert (per_example.min(1).values == per_example.max(1).values).all()  # all-or-nothing per example
    assert abs(per_example.mean().item() - 1.0) < 0.05
    assert torch.equal(layer.eval()(torch.ones(3, 2)), torch.ones(3, 2))


def test_scheduled_drop_path_progress():
    model = nn.Sequential(ops.DropPath(0.4), nn.Sequential(ops.DropPath(0.2)))
    ops.set_drop_path_progress(model, 0.0)
    assert all(m.progress == 0.0 for m in model.modules() if isinstance(m, ops.DropPath))
    x = torch.ones(50, 3)
    assert torch.equal(model.train()(x), x)  # progress 0: nothing dropped yet
    ops.set_drop_path_progress(model, 0.5)
    assert model[0].drop_prob * model[0].progress == pytest.approx(0.2)
    with pytest.raises(ValueError, match="progress"):
        ops.set_drop_path_progress(model, 1.5)


def test_mbconv_residual_only_when_shapes_match():
    assert ops.build_op("mbconv", 16, 16, 1, {"expand_channels": 64}).use_residual
    assert not ops.build_op("mbconv", 16, 24, 1, {"expand_channels": 64}).use_residual
    assert not ops.build_op("mbconv", 16, 16, 2, {"expand_channels": 64}).use_residual


def test_mbconv_options_build_what_they_say():
    block = ops.build_op(
        "mbconv",
        16,
        16,
        1,
        {
            "kernel_size": 5,
            "expand_channels": 48,
            "se_channels": 8,
            "se_gate": "hardsigmoid",
            "activation": "hardswish",
            "drop_path": 0.1,
        },
    )
    expand, depthwise, se, project = block.block
    assert expand[0].out_channels == 48 and isinstance(expand[2], nn.Hardswish)
    assert depthwise[0].kernel_size == (5, 5) and depthwise[0].groups == 48
    assert se.fc1.out_channels == 8 and isinstance(se.gate, nn.Hardsigmoid)
    assert project[0].out_channels == 16 and block.drop_path.drop_prob == 0.1


def test_squeeze_excitation_gates():
    se = ops.SqueezeExcitation(8, 4, gate="hardsigmoid")
    assert isinstance(se.gate, nn.Hardsigmoid)
    x = torch.randn(2, 8, 5, 5)
    scale = se(x) / x
    assert scale.min() >= 0 and scale.max() <= 1 + 1e-6
