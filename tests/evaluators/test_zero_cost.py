"""The zero-cost evaluator (``evaluators.zero_cost``) and its scores, against hand computations.

Every registered space goes through the evaluator contract in ``test_evaluator_contract.py``; here each
score is checked on a network small enough to compute it by hand, and the evaluator's options,
determinism and the objective it can feed.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evaluators.zero_cost import ZeroCostEvaluator
from evaluators.zero_cost_options import SCORES, check
from evaluators.zero_cost_scores import NONFINITE, data_scores, flops, jacov_score, l2_norm, synflow
from nas import registry
from nas.cost import build_on_meta
from nas.evaluator import make_evaluator
from nas.search.run import run_search
from nas.search.settings import SearchSettings
from nas.testing import ToyGenotype, ToySpace

TOY = ToyGenotype((8, 8), (3, 3), (1, 1), 16)


def evaluator(**options) -> ZeroCostEvaluator:
    return make_evaluator("zero-cost", ToySpace(), dataset="synthetic", batch_size=16, **options)  # type: ignore[return-value]


def test_synflow_is_the_number_of_layers_times_the_output_of_the_absolute_network() -> None:
    # Without biases, R(|theta|) is homogeneous of degree 1 in each layer's weights, so
    # sum theta * dR/dtheta = (layers) * R (Euler); BatchNorm is an identity, the ReLU passes everything.
    conv, linear = nn.Conv2d(1, 2, 2, bias=False), nn.Linear(8, 1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.0, -2.0], [0.5, 0.0]]], [[[-1.0, 1.0], [1.0, -3.0]]]]))
        linear.weight.copy_(torch.tensor([[1.0, -1.0, 2.0, 0.5, -0.25, 1.0, 1.0, -3.0]]))
    norm = nn.BatchNorm2d(2)
    with torch.no_grad():
        norm.weight.fill_(-5.0)  # an identity in synflow whatever its parameters
    model = nn.Sequential(conv, norm, nn.ReLU(), nn.Flatten(), linear).train()
    # On a 3x3 input of ones each output channel c is the sum of |w_c| at all 4 positions: 3.5 and 6.
    channels = np.repeat([3.5, 6.0], 4)
    output = float(np.abs(linear.weight.detach().numpy()[0]) @ channels)
    assert synflow(model, (1, 3, 3)) == pytest.approx(math.log(2 * output), rel=1e-12)
    assert model[0].weight[0, 0, 0, 1] == -2.0 and model[1].weight[0] == -5.0  # the network is not changed


def test_synflow_without_a_path_to_the_output_is_the_lowest_score() -> None:
    model = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False), nn.Flatten(), nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[2].weight.zero_()
    assert synflow(model, (1, 2, 2)) == NONFINITE


def test_nwot_counts_the_units_on_which_two_images_agree() -> None:
    # Codes 1010, 1100, 1001: every pair agrees on 2 of 4 units, K = [[4,2,2],[2,4,2],[2,2,4]], det 32.
    images = torch.tensor([[1.0, -1.0, 2.0, -3.0], [0.5, 1.0, -1.0, -1.0], [3.0, -2.0, -0.5, 1.0]])
    labels = torch.zeros(3, dtype=torch.long)
    one = data_scores(nn.Sequential(nn.ReLU()), images, labels, ["nwot"])
    assert one == {"nwot": pytest.approx(math.log(32.0))}
    # Two rectifier layers add their counts (the second sees the same signs): det(2K) = 8 * 32.
    two = data_scores(nn.Sequential(nn.ReLU(), nn.Identity(), nn.LeakyReLU()), images, labels, ["nwot"])
    assert two["nwot"] == pytest.approx(math.log(256.0))
    # Without a rectifier there is no code: NASLib's score for the singular kernel.
    assert data_scores(nn.Sequential(nn.Tanh()), images, labels, ["nwot"])["nwot"] == NONFINITE


def test_jacov_of_a_linear_network_has_one_eigenvalue_per_batch() -> None:
    # y = W x: every image's input gradient is W^T 1, so the rows correlate perfectly and the
    # correlation matrix (all ones) has eigenvalues B, 0, ..., 0.
    linear = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[1.0, 2.0, -1.0, 0.0], [0.5, -1.0, 3.0, 1.0]]))
    images, k, batch = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), 1e-5, 3
    expected = -(math.log(batch + k) + 1 / (batch + k) + (batch - 1) * (math.log(k) + 1 / k))
    score = data_scores(linear, images, torch.zeros(3, dtype=torch.long), ["jacov"])["jacov"]
    assert score == pytest.approx(expected, rel=1e-9)
    # Uncorrelated rows: the identity, eigenvalues 1 and 1.
    assert jacov_score(np.array([[1.0, -1.0, 0.0, 0.0], [0.0, 0.0, 1.0, -1.0]])) == pytest.approx(
        -2 * (math.log(1 + k) + 1 / (1 + k))
    )
    assert jacov_score(np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])) == NONFINITE  # a row without variance


def test_snip_grad_norm_and_plain_from_the_hand_computed_gradient_of_the_loss() -> None:
    linear = nn.Linear(3, 2, bias=False)
    weight = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.5]])
    with torch.no_grad():
        linear.weight.copy_(torch.tensor(weight))
    x = np.array([[1.0, 2.0, -1.0], [0.0, -1.0, 3.0]])
    labels = np.array([1, 0])
    logits = x @ weight.T
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    # The mean cross-entropy's gradient: (softmax - onehot)^T x / B.
    gradient = (softmax - np.eye(2)[labels]).T @ x / len(x)
    scores = data_scores(
        linear, torch.tensor(x, dtype=torch.float32), torch.tensor(labels), ["snip", "grad_norm", "plain"]
    )
    assert scores["snip"] == pytest.approx(np.abs(weight * gradient).sum(), rel=1e-5)
    assert scores["grad_norm"] == pytest.approx(np.linalg.norm(gradient), rel=1e-5)
    assert scores["plain"] == pytest.approx((weight * gradient).sum(), rel=1e-4)
    assert l2_norm(linear) == pytest.approx(np.linalg.norm(weight), rel=1e-6)


def test_flops_by_naslibs_rules() -> None:
    # tensorwatch's rules: conv k*k*Cin*Cout*H*W, BN 2 per element, ReLU 1, adaptive pool (window+1)^2, linear in*out.
    model = build_on_meta(
        lambda: nn.Sequential(
            nn.Conv2d(3, 4, 3, padding=1, bias=False),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AvgPool2d(2, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(4, 2),
        )
    )
    expected = 9 * 3 * 4 * 64 + 2 * 4 * 64 + 4 * 64 + 4 * 4 * 16 + 4 * 5 * 5 + 4 * 2
    assert flops(model, (3, 8, 8)) == pytest.approx(expected / 1e6, rel=1e-12)


def test_the_toy_networks_params_and_flops_counted_by_hand() -> None:
    # Synthetic data: 4 classes at 8 px. Stem conv 3->8 k3, stage convs 8->8 k3 stride 2 (to 4 and 2 px),
    # each with BN (2 parameters per channel) and ReLU; a linear 8->4 classifier with bias.
    metrics = evaluator(scores=["params", "flops"]).evaluate(TOY, 0)
    assert metrics["params"] == (3 * 8 * 9 + 16) + 2 * (8 * 8 * 9 + 16) + (8 * 4 + 4)
    convs = 9 * 3 * 8 * 64 + 9 * 8 * 8 * 16 + 9 * 8 * 8 * 4
    norms_and_relus = 3 * 8 * (64 + 16 + 4)
    assert metrics["flops"] == pytest.approx((convs + norms_and_relus + 8 * 9 + 8 * 4) / 1e6, rel=1e-12)
    assert set(metrics) == {"params", "flops", "resolution", "seconds"} and metrics["resolution"] == 8


def test_scores_are_a_function_of_seed_trial_and_repeat() -> None:
    first, again = evaluator().evaluate(TOY, 3), evaluator().evaluate(TOY, 3)
    assert list(first)[: len(SCORES)] == list(SCORES)
    assert {k: v for k, v in first.items() if k != "seconds"} == {k: v for k, v in again.items() if k != "seconds"}
    other, repeat = evaluator().evaluate(TOY, 4), evaluator().evaluate(TOY, 3, repeat=1)
    for changed in (other, repeat):
        assert changed["params"] == first["params"] and changed["flops"] == first["flops"]
        assert all(changed[score] != first[score] for score in ("synflow", "nwot", "jacov", "snip"))
    engine = evaluator(init="engine").evaluate(TOY, 3)  # nas.compile's initialisation, not PyTorch's
    assert engine["synflow"] != first["synflow"] and engine["params"] == first["params"]


def test_an_objective_reading_a_score_not_computed_is_refused_before_a_trial(tmp_path: Path) -> None:
    settings = SearchSettings(
        out=str(tmp_path / "run"),
        space="nb201",
        controller="random",
        evaluator="zero-cost",
        dataset="synthetic",
        evaluator_options={"scores": ["params", "flops"]},
        objective="metric:synflow",
    )
    message = r"objective: 'metric:synflow:max' reads the metric 'synflow', which evaluator 'zero-cost' does not"
    with pytest.raises(ValueError, match=message):
        run_search(settings)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"scores": ["synflow", "zen"]}, r"scores: 'zen' is not a zero-cost score; valid: \['synflow'"),
        ({"scores": []}, r"scores: expected a non-empty list"),
        ({"size": "half"}, r"size: expected one of \['proxy', 'full'\], got 'half'"),
        ({"init": "xavier"}, r"init: expected one of \['pytorch', 'engine'\]"),
        ({"batch_size": 1}, r"batch_size: must be an integer in \[2, 4096\], got 1"),
        ({"epochs": 3}, r"epochs: not an option of the zero-cost evaluator \(it trains nothing\)"),
        ({"width": 3}, r"width: not a proxy setting of space 'toy'; valid: \['resolution'\]"),
        ({"size": "full", "C": 0}, r"zero-cost network \{'C': 0\}: "),
    ],
)
def test_bad_options_are_refused_without_torch_in_one_line(options: dict, message: str) -> None:
    space = registry.spaces.get("nb201") if "C" in options else ToySpace()
    with pytest.raises(ValueError, match=message) as refused:
        check(space, options)
    assert "\n" not in str(refused.value)


def test_full_size_lowers_the_space_without_its_proxy_reduction() -> None:
    space = registry.spaces.get("nb201")
    proxy = make_evaluator("zero-cost", space, dataset="synthetic", scores=["params"])
    full = make_evaluator("zero-cost", space, dataset="synthetic", scores=["params"], size="full", N=1)
    genotype = space.from_string("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|none~1|none~2|")
    assert proxy.evaluate(genotype, 0)["params"] < full.evaluate(genotype, 0)["params"]  # C = 8 against 16
    assert "C" not in full._data.reduction and full._data.reduction["N"] == 1
