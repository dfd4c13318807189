"""Zero-cost scores of an untrained network, as NASLib computes them (``naslib/predictors/utils/pruners``).

Each function takes an initialised network in training mode (BatchNorm normalises with the batch's
statistics, as NASLib's measures run) and leaves it as it was: the gradient scores and synflow score
a copy, as NASLib scores a fresh copy per measure; ``flops`` runs one pass in evaluation mode and
restores the layers' modes. The weighted layers are the ``Conv2d`` and ``Linear`` modules (NASLib's
``get_layer_metric_array``); a layer the output does not depend on contributes 0.

- ``synflow`` (Tanaka et al. 2020, arXiv 2006.05467 §5, eq. 2; as Abdelfattah et al. 2021, arXiv
  2101.08134 §3 compute it): in double precision, every parameter replaced by its absolute value,
  BatchNorm layers made identities, one all-ones input; R = the sum of the outputs; the score is
  ``sum |theta * dR/dtheta|`` over the weighted layers' weights. Returned as its natural logarithm,
  as NASLib stores it (``predictors/zerocost.py``): the sum spans tens of orders of magnitude.
- ``nwot`` (Mellor et al. 2021, arXiv 2006.04647 v3 §3, eq. 2): the log-determinant of
  ``K = sum over rectifier layers of (c c^T + (1 - c)(1 - c)^T)``, c the binary code (input > 0) of
  each image at the layer's input: how many units two images agree on. The rectifiers are the
  modules NASLib hooks, torch's ``ReLU`` family (ReLU, ReLU6, LeakyReLU, PReLU, RReLU).
- ``jacov`` (Mellor et al. 2021, arXiv 2006.04647 v1 §3): the eigenvalues v of the correlation
  matrix of the per-image input gradients of the summed outputs; ``-sum(log(v + k) + 1 / (v + k))``
  with ``k = 1e-5``.
- ``snip`` (Lee et al. 2019, arXiv 1810.02340 eq. 6): ``sum |theta * dL/dtheta|`` over the weighted
  layers' weights, L the cross-entropy of the batch (NASLib's mask gradient, which is this).
- ``grad_norm``: the sum over the weighted layers of the L2 norm of ``dL/dweight``.
- ``plain``: ``sum theta * dL/dtheta`` (signed; Abdelfattah et al. 2021 §3's baseline).
- ``l2_norm``: the sum over the weighted layers of the L2 norm of the weight.
- ``flops``: the floating-point operations of one image as NASLib counts them (tensorwatch's
  torchstat rules, ``model_stats.py``): Conv2d ``k*k*C_in*C_out/groups*H_out*W_out`` (+ a bias per
  output), Linear ``in*out``, BatchNorm2d 2 per element (1 without affine), the ReLU family and ELU
  1 per input element, Avg/MaxPool2d ``k*k`` per output element, AdaptiveAvg/MaxPool2d
  ``(window + 1)^2`` per output element and channel (its quirk), Upsample 1 per output pixel,
  anything else 0. In MFLOPs (millions), NASLib's unit.

A score that is not finite (a singular nwot kernel, a constant Jacobian row, a synflow of 0 when no
weight reaches the output) is NASLib's stand-in, ``NONFINITE`` = -1e8: the lowest rank.
"""

from __future__ import annotations

import copy
import math
import types
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

NONFINITE = -1e8  # NASLib's score for a NaN or infinite one (predictors/zerocost.py)
JACOV_K = 1e-5  # the eigenvalue offset of jacov (Mellor et al. v1; NASLib's eval_score)
RECTIFIERS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU)
EXACT_FLOAT32 = 2**24  # integers up to this are exact in float32
GRADIENT_SCORES = ("snip", "grad_norm", "plain")  # from dL/dtheta of one batch


def weighted_layers(model: nn.Module) -> list[nn.Module]:
    """The layers whose weights NASLib's measures sum over: every ``Conv2d`` and ``Linear``."""
    return [layer for layer in model.modules() if isinstance(layer, (nn.Conv2d, nn.Linear))]


def finite(value: float) -> float:
    """``value``, or ``NONFINITE`` for NaN and infinities."""
    return float(value) if math.isfinite(value) else NONFINITE


def _identity(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x


def synflow(model: nn.Module, input_shape: Sequence[int]) -> float:
    """log of ``sum |theta * dR/dtheta|`` (see the module docstring); ``input_shape`` is (C, H, W)."""
    net = copy.deepcopy(model).double()
    for layer in net.modules():
        if isinstance(layer, _BatchNorm):
            layer.forward = types.MethodType(_identity, layer)  # type: ignore[method-assign]
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.abs_()
    layers = weighted_layers(net)
    output = net(torch.ones((1, *input_shape), dtype=torch.float64))
    grads = torch.autograd.grad(output.sum(), [layer.weight for layer in layers], allow_unused=True)
    total = sum(
        float((layer.weight.detach() * grad).abs().sum()) for layer, grad in zip(layers, grads) if grad is not None
    )
    return finite(math.log(total)) if total > 0 else NONFINITE


def data_scores(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, wanted: Sequence[str]
) -> dict[str, float]:
    """The scores of ``wanted`` that read a batch (nwot, jacov, snip, grad_norm, plain), from one forward pass.

    The activation codes (nwot) are read during the pass; the input gradient of the summed outputs
    (jacov) and the loss's weight gradients (snip, grad_norm, plain) are two backward passes through
    it: the values NASLib's separate passes over copies of the same network give.
    """
    net = copy.deepcopy(model)
    scores: dict[str, float] = {}
    kernel = torch.zeros((len(images), len(images)), dtype=torch.float64)
    handles = []
    if "nwot" in wanted:
        hook = _kernel_hook(kernel)
        handles = [layer.register_forward_hook(hook) for layer in net.modules() if isinstance(layer, RECTIFIERS)]
    gradients = [name for name in GRADIENT_SCORES if name in wanted]
    inputs = images.clone().requires_grad_("jacov" in wanted)
    with torch.set_grad_enabled("jacov" in wanted or bool(gradients)):
        outputs = net(inputs)
    for handle in handles:
        handle.remove()
    if "nwot" in wanted:
        scores["nwot"] = finite(float(torch.linalg.slogdet(kernel).logabsdet))
    if "jacov" in wanted:
        (jacobian,) = torch.autograd.grad(outputs.sum(), inputs, retain_graph=bool(gradients))
        scores["jacov"] = jacov_score(jacobian.reshape(len(images), -1).double().numpy())
    if gradients:
        layers = weighted_layers(net)
        loss = F.cross_entropy(outputs, labels)
        grads = torch.autograd.grad(loss, [layer.weight for layer in layers], allow_unused=True)
        pairs = [(layer.weight.detach(), grad) for layer, grad in zip(layers, grads) if grad is not None]
        totals = {
            "snip": sum(float((weight * grad).abs().sum()) for weight, grad in pairs),
            "grad_norm": sum(float(grad.norm()) for _, grad in pairs),
            "plain": sum(float((weight * grad).sum()) for weight, grad in pairs),
        }
        scores.update({name: finite(totals[name]) for name in gradients})
    return scores


def _kernel_hook(kernel: torch.Tensor) -> Callable[..., None]:
    """A forward hook adding a layer's agreement counts ``c c^T + (1 - c)(1 - c)^T`` to ``kernel``."""

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        flat = inputs[0].detach().reshape(len(inputs[0]), -1)
        # Counts below 2^24 are exact in float32, which multiplies faster.
        codes = (flat > 0).to(torch.float32 if flat.shape[1] < EXACT_FLOAT32 else torch.float64)
        ones = codes.sum(dim=1, dtype=torch.float64)
        # c c^T + (1 - c)(1 - c)^T = 2 c c^T - |c_i| - |c_j| + units, in one product.
        kernel.add_(2 * (codes @ codes.T).double() - ones[:, None] - ones[None, :] + codes.shape[1])

    return hook


def jacov_score(jacobian: np.ndarray) -> float:
    """``-sum(log(v + k) + 1 / (v + k))`` over the eigenvalues v of the rows' correlation matrix."""
    with np.errstate(divide="ignore", invalid="ignore"):
        correlations = np.corrcoef(jacobian)
        if not np.isfinite(correlations).all():
            return NONFINITE  # a row without variance: its correlations are undefined
        values = np.linalg.eigvalsh(correlations)
        return finite(float(-np.sum(np.log(values + JACOV_K) + 1.0 / (values + JACOV_K))))


def l2_norm(model: nn.Module) -> float:
    """The sum of the weighted layers' weight norms."""
    with torch.no_grad():
        return finite(sum(float(layer.weight.norm()) for layer in weighted_layers(model)))


def flops(model: nn.Module, input_shape: Sequence[int]) -> float:
    """MFLOPs of one image through ``model`` by NASLib's rules (module docstring): one forward pass in
    evaluation mode (on the meta device for a meta network); the layers' modes are restored after it."""
    total = [0]

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: Any) -> None:
        tensors = [t for t in inputs if isinstance(t, torch.Tensor)]
        out = output[0] if isinstance(output, (tuple, list)) else output
        if tensors and isinstance(out, torch.Tensor):
            total[0] += layer_flops(module, tensors[0], out)

    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    dtype = parameter.dtype if parameter is not None else torch.float32
    modes = {layer: layer.training for layer in model.modules()}
    leaves = [layer for layer in model.modules() if not any(True for _ in layer.children())]
    handles = [layer.register_forward_hook(hook) for layer in leaves]
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_shape), device=device, dtype=dtype))
    finally:
        for handle in handles:
            handle.remove()
        for layer, mode in modes.items():
            layer.training = mode
    return total[0] / 1e6


def layer_flops(module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> int:
    """The FLOPs tensorwatch's torchstat (``compute_flops.py``) counts for one call of a leaf ``module``."""
    if isinstance(module, nn.Conv2d):
        kernel = module.kernel_size[0] * module.kernel_size[1]
        positions = out.shape[0] * out.shape[2] * out.shape[3]
        bias = out.shape[1] * positions if module.bias is not None else 0
        return kernel * x.shape[1] * (out.shape[1] // module.groups) * positions + bias
    if isinstance(module, nn.BatchNorm2d):
        return x.numel() * (2 if module.affine else 1)
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        kernel, stride, padding = (_pair(getattr(module, name)) for name in ("kernel_size", "stride", "padding"))
        # torchstat's output size: the height divided by the first stride too.
        width = math.floor((x.shape[3] + 2 * padding[0] - kernel[0]) / stride[0] + 1)
        height = math.floor((x.shape[2] + 2 * padding[1] - kernel[1]) / stride[0] + 1)
        return x.shape[0] * x.shape[1] * width * height * kernel[0] * kernel[1]
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        (height, width), (rows, columns) = x.shape[2:], out.shape[2:]
        windows = sum(
            (math.ceil((i + 1) * height / rows) - math.floor(i * height / rows) + 1)
            * (math.ceil((j + 1) * width / columns) - math.floor(j * width / columns) + 1)
            for i in range(rows)
            for j in range(columns)
        )
        return x.shape[0] * x.shape[1] * windows
    if isinstance(module, (nn.ReLU, nn.ReLU6, nn.PReLU, nn.ELU, nn.LeakyReLU)):
        return x.numel()
    if isinstance(module, nn.Upsample):
        return out.shape[0] * out.shape[-2] * out.shape[-1]  # torchstat's: the channels are left out
    if isinstance(module, nn.Linear):
        return (x.numel() // module.in_features) * module.in_features * module.out_features
    return 0


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))
