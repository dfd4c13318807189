"""Every registered op: output shape at stride 1 and 2, and a backward pass; the registry's rules."""

import pytest
import torch
from torch import nn

from nas import ops


@pytest.mark.parametrize("name", sorted(ops.OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("in_channels,out_channels", [(8, 8), (6, 16)])
def test_op_shape_and_backward(name, stride, in_channels, out_channels):
    torch.manual_seed(0)
    op = ops.build_op(name, in_channels, out_channels, stride)
    x = torch.randn(2, in_channels, 9, 9, requires_grad=True)
    y = op(x)
    assert y.shape == (2, out_channels, 5 if stride == 2 else 9, 5 if stride == 2 else 9)
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_nasnet_has_13_ops_all_registered():
    assert len(ops.NASNET_OPS) == 13 == len(set(ops.NASNET_OPS))
    assert set(ops.NASNET_OPS) <= set(ops.OPS)


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


def test_rejected_option_is_a_value_error():
    with pytest.raises(ValueError, match="se_channels"):
        ops.build_op("conv_bn_act", 3, 4, 1, se_channels=2)


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
    assert ops.build_op("mbconv", 16, 16, 1, expand_channels=64).use_residual
    assert not ops.build_op("mbconv", 16, 24, 1, expand_channels=64).use_residual
    assert not ops.build_op("mbconv", 16, 16, 2, expand_channels=64).use_residual


def test_squeeze_excitation_gates():
    se = ops.SqueezeExcitation(8, 4, gate="hardsigmoid")
    assert isinstance(se.gate, nn.Hardsigmoid)
    x = torch.randn(2, 8, 5, 5)
    scale = se(x) / x
    assert scale.min() >= 0 and scale.max() <= 1 + 1e-6
