"""Contract tests that a plug-in runs on its own space, op, controller or evaluator.

Subclass a contract in your test suite and give it the fixtures it names; pytest collects the
inherited tests (as ``optuna.testing`` is used by Optuna's samplers)::

    from nas.testing import SpaceContract

    class TestMySpace(SpaceContract):
        @pytest.fixture
        def space(self):
            return MySpace()

The engine runs its own built-ins through these same classes, parametrized over the registries.
``ToySpace`` (``nas.toy``) is a small real chain space for testing controllers and evaluators
apart from any space of ours. Importing this module needs pytest.
"""

from __future__ import annotations

import functools
import inspect
import io
import json
import math
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, get_args, get_origin

import numpy as np
import pytest
import torch
from torch import nn

from nas.cell_ir import CellNet
from nas.compile import compile as compile_ir
from nas.controller import Controller, Result, Trial
from nas.cost import build_on_meta, count_macs, count_params
from nas.evaluator import Evaluator
from nas.ir import ChainNet
from nas.ops import build_op, declared_options, option_types
from nas.scaling import scale_genotype
from nas.serialization import genotype_json
from nas.space import Decision, Scalable, SearchSpace, sample_choices
from nas.toy import ToyGenotype, ToySpace, toy_reward

__all__ = [
    "ControllerContract",
    "EvaluatorContract",
    "OpContract",
    "SpaceContract",
    "ToyGenotype",
    "ToySpace",
    "toy_reward",
]


class SpaceContract:
    """What every search space promises. Fixture: ``space``. ``macro`` may shrink networks further."""

    samples = 8  # random genotypes per property

    @pytest.fixture
    def macro(self, space: SearchSpace[Any]) -> dict[str, Any]:
        """Keyword arguments of ``lower`` for the networks these tests build (default: the proxy)."""
        return dict(space.proxy_reduction)

    def _genotypes(self, space: SearchSpace[Any], seed: int = 0) -> list[Any]:
        rng = np.random.default_rng(seed)
        return [space.decode(sample_choices(space.decisions(), rng)) for _ in range(self.samples)]

    def test_follows_the_protocol(self, space: SearchSpace[Any]) -> None:
        assert isinstance(space, SearchSpace), "missing protocol members (name, proxy_reduction, decisions, ...)"
        assert isinstance(space.name, str) and space.name
        assert isinstance(space.proxy_reduction, Mapping), "proxy_reduction: the lower() settings of the proxy"
        decisions = space.decisions()
        assert decisions and len({d.name for d in decisions}) == len(decisions)
        assert all(isinstance(d, Decision) and d.choices for d in decisions)
        assert isinstance(space.presets(), dict)

    def test_decode_encode_round_trip_and_mutate(self, space: SearchSpace[Any]) -> None:
        rng = np.random.default_rng(1)
        for _ in range(3 * self.samples):
            choices = sample_choices(space.decisions(), rng)
            genotype = space.decode(choices)
            assert isinstance(genotype, space.genotype_class)
            assert space.encode(genotype) == choices
            hash(genotype)
            if any(len(d.choices) > 1 for d in space.decisions()):
                child = space.encode(space.mutate(genotype, rng))
                assert sum(child[k] != v for k, v in choices.items()) == 1, "mutate changes exactly one decision"

    def test_decode_rejects_bad_choices(self, space: SearchSpace[Any]) -> None:
        choices = sample_choices(space.decisions(), np.random.default_rng(0))
        first = space.decisions()[0].name
        with pytest.raises(ValueError, match="missing decision"):
            space.decode({k: v for k, v in choices.items() if k != first})
        with pytest.raises(ValueError):
            space.decode({**choices, first: "not-a-choice"})
        with pytest.raises(ValueError):
            space.decode({**choices, "no-such-decision": 0})

    def test_genotype_json_round_trip(self, space: SearchSpace[Any]) -> None:
        for genotype in self._genotypes(space) + list(space.presets().values()):
            document = json.loads(json.dumps(genotype_json(space.name, genotype)))
            assert space.genotype_from_dict(document["genotype"]) == genotype

    def test_random_genotypes_compile_and_train(self, space: SearchSpace[Any], macro: dict[str, Any]) -> None:
        torch.manual_seed(0)
        for genotype in self._genotypes(space, seed=2)[:4]:
            ir = space.lower(genotype, num_classes=5, **macro)
            assert isinstance(ir, (ChainNet, CellNet)) and ir.num_classes == 5
            model = compile_ir(ir, seed=0).train()
            logits = model(torch.randn(2, 3, ir.resolution, ir.resolution))
            assert logits.shape == (2, 5) and torch.isfinite(logits).all()
            logits.logsumexp(1).mean().backward()
            assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())

    def test_proxy_is_no_larger_than_the_full_network(self, space: SearchSpace[Any]) -> None:
        for genotype in self._genotypes(space, seed=3)[:3]:
            full_ir = space.lower(genotype, num_classes=10)
            proxy_ir = space.lower(genotype, num_classes=10, **space.proxy_reduction)
            full = build_on_meta(functools.partial(compile_ir, full_ir))
            proxy = build_on_meta(functools.partial(compile_ir, proxy_ir))
            assert count_params(proxy) <= count_params(full)

    def test_presets_lower_and_compile(self, space: SearchSpace[Any]) -> None:
        for name, genotype in space.presets().items():
            ir = space.lower(genotype, num_classes=10)
            assert count_params(build_on_meta(functools.partial(compile_ir, ir))) > 0, name

    def test_scale_if_offered(self, space: SearchSpace[Any]) -> None:
        """A space with ``scale`` (``nas.scaling``, what ``nas scale`` needs): multipliers of 1 keep the
        network, the result is a genotype of the space whose JSON round-trips, and the cost never
        falls when a multiplier grows (the grid's ``macs`` mode relies on it). A space without one
        is refused by ``scale_genotype`` with a clear error."""

        genotype = next(iter(space.presets().values()), None) or self._genotypes(space)[0]
        if not isinstance(space, Scalable):  # nas scale refuses it in one line, before anything is built
            with pytest.raises(ValueError, match="cannot be scaled"):
                scale_genotype(space, genotype, width=1.1)
            return
        assert space.lower(scale_genotype(space, genotype)) == space.lower(genotype)

        def macs(**multipliers: float) -> int:
            scaled = scale_genotype(space, genotype, **multipliers)
            assert isinstance(scaled, space.genotype_class)
            document = json.loads(json.dumps(genotype_json(space.name, scaled)))
            assert space.genotype_from_dict(document["genotype"]) == scaled
            ir = space.lower(scaled, num_classes=10)
            assert isinstance(ir, ChainNet)
            counted = count_macs(build_on_meta(lambda: compile_ir(ir)), ir.resolution)
            assert isinstance(counted, int)
            return counted

        base = macs()
        for name in ("width", "depth", "resolution"):
            grown = [macs(**{name: value}) for value in (1.1, 1.3)]
            assert base <= grown[0] <= grown[1], (name, base, grown)


# ------------------------------------------------------------------------------------------- ops


def changed_value(hint: Any, default: Any) -> Any:
    """Another valid value of an option: the next Literal choice, the other bool, a bigger number."""
    if get_origin(hint) is Literal:
        return next(choice for choice in get_args(hint) if choice != default)
    if hint is bool:
        return not default
    if hint is int:
        return default + 2  # keeps kernel sizes odd and turns 0 ("off") into a small width
    if hint is float:
        return 0.25 if default == 0 else default / 2
    raise TypeError(f"no rule to change an option of type {hint!r}; set option_examples on the op test")


class OpContract:
    """What every op promises. Fixture: ``op`` (a registered name or a factory).

    Every declared option is typed, has its one default in the factory's signature, and changes
    the built module. The change is looked for with every other option moved off its default, so
    that, say, an SE gate is judged with SE switched on. ``option_examples`` gives values the
    generic rule (``changed_value``) cannot guess; ``channels`` (or ``channels_by_op``, per op name)
    suits ops with channel constraints.
    """

    channels: tuple[tuple[int, int], ...] = ((12, 12), (12, 24))
    channels_by_op: ClassVar[dict[str, tuple[tuple[int, int], ...]]] = {}
    stride_one_only: frozenset[str] = frozenset()  # ops that keep the shape (an activation, a shuffle)
    zero_ops: frozenset[str] = frozenset()  # ops whose output is zero by design (NAS-Bench-201's ``none``)
    option_examples: ClassVar[dict[str, dict[str, Any]]] = {}

    def _channels(self, op: Any) -> tuple[tuple[int, int], ...]:
        """``(in, out)`` widths to build ``op`` with: ``channels_by_op[name]``, else ``channels``."""
        return self.channels_by_op.get(op if isinstance(op, str) else op.__name__, self.channels)

    def _changed(self, op: Any) -> dict[str, Any]:
        key = op if isinstance(op, str) else op.__name__
        examples = self.option_examples.get(key, {})
        types, declared = option_types(op), declared_options(op)
        return {
            name: examples[name] if name in examples else changed_value(types[name], declared[name].default)
            for name in declared
        }

    @pytest.mark.parametrize("stride", [1, 2])
    def test_shape_and_backward(self, op: Any, stride: int) -> None:
        if stride != 1 and (op if isinstance(op, str) else op.__name__) in self.stride_one_only:
            with pytest.raises(ValueError, match="stride"):
                build_op(op, *self._channels(op)[0], stride)
            return
        torch.manual_seed(0)
        for in_channels, out_channels in self._channels(op):
            module = build_op(op, in_channels, out_channels, stride)
            x = torch.randn(2, in_channels, 9, 9, requires_grad=True)
            y = module(x)
            size = 5 if stride == 2 else 9  # 'same' padding: ceil(9 / stride)
            assert y.shape == (2, out_channels, size, size)
            if (op if isinstance(op, str) else op.__name__) in self.zero_ops:
                assert not y.any()  # nothing flows through it, forward or back
                continue
            y.square().mean().backward()
            assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0

    def test_declared_options_are_typed_with_defaults(self, op: Any) -> None:
        types = option_types(op)
        for name, parameter in declared_options(op).items():
            assert types[name] is not None, f"option {name!r} has no type annotation"
            assert parameter.default is not inspect.Parameter.empty, f"option {name!r} has no default"

    def test_every_declared_option_changes_the_module(self, op: Any) -> None:
        changed = self._changed(op)
        in_channels, out_channels = self._channels(op)[0]
        for name in changed:
            others = {k: v for k, v in changed.items() if k != name}
            assert _fingerprint(build_op(op, in_channels, out_channels, 1, others)) != _fingerprint(
                build_op(op, in_channels, out_channels, 1, changed)
            ), f"option {name!r} changes nothing"

    def test_unknown_option_is_refused(self, op: Any) -> None:
        with pytest.raises(ValueError, match="no_such_option"):
            build_op(op, 12, 12, 1, {"no_such_option": 1})


def _fingerprint(module: nn.Module) -> tuple[str, tuple[tuple[str, tuple[int, ...]], ...]]:
    """What tells two builds apart: the module tree (layers and their settings) and the weight shapes."""
    return repr(module), tuple((k, tuple(v.shape)) for k, v in module.state_dict().items())


# ----------------------------------------------------------------------------------- controllers


class ControllerContract:
    """What every controller promises. Fixtures: ``make_controller(space, seed, **extra)`` and
    ``space`` (by default ``ToySpace``). ``steps`` trials are driven by a sequential loop."""

    steps = 20

    @pytest.fixture
    def space(self) -> SearchSpace[Any]:
        return ToySpace()

    def _result(self, space: SearchSpace[Any], trial: Trial[Any], fail_every: int | None = None) -> Result:
        if fail_every and trial.id % fail_every == fail_every - 1:
            return Result.failure("synthetic failure")
        return Result(reward=toy_reward(space, trial.genotype))

    def _drive(
        self, controller: Controller[Any], space: SearchSpace[Any], steps: int, fail_every: int | None = None
    ) -> list[tuple[int, Any]]:
        seen = []
        for _ in range(steps):
            trial = controller.ask()
            assert trial is not None, "a sequential loop must never have to wait"
            controller.tell(trial.id, self._result(space, trial, fail_every))
            seen.append((trial.id, trial.genotype))
        return seen

    def test_implements_the_protocol(self, make_controller: Callable[..., Any], space: SearchSpace[Any]) -> None:
        controller = make_controller(space, 5)
        assert isinstance(controller, Controller)
        assert controller.seed == 5 and controller.finished is False

    def test_same_seed_same_trials_other_seed_other_trials(
        self, make_controller: Callable[..., Any], space: SearchSpace[Any]
    ) -> None:
        first = self._drive(make_controller(space, 3), space, self.steps)
        assert first == self._drive(make_controller(space, 3), space, self.steps)
        assert [trial_id for trial_id, _ in first] == list(range(self.steps))
        assert [g for _, g in first] != [g for _, g in self._drive(make_controller(space, 4), space, self.steps)]

    @pytest.mark.parametrize("cut", [1, 13])
    def test_resume_continues_the_same_sequence(
        self, make_controller: Callable[..., Any], space: SearchSpace[Any], cut: int
    ) -> None:
        uninterrupted = self._drive(make_controller(space, 7), space, self.steps, fail_every=5)
        controller = make_controller(space, 7)
        head = self._drive(controller, space, cut, fail_every=5)
        snapshot = controller.state_dict()
        tail = self._drive(controller, space, self.steps - cut, fail_every=5)
        assert head + tail == uninterrupted
        _check_plain(snapshot)
        resumed = make_controller(space, 7)
        resumed.load_state_dict(_round_trip(snapshot))
        assert self._drive(resumed, space, self.steps - cut, fail_every=5) == tail

    def test_pending_trials_are_reissued_after_resume(
        self, make_controller: Callable[..., Any], space: SearchSpace[Any]
    ) -> None:
        uninterrupted = self._drive(make_controller(space, 2), space, 12)
        controller = make_controller(space, 2)
        self._drive(controller, space, 6)
        pending = controller.ask()  # asked, then the process "crashes" before tell
        assert pending is not None
        resumed = make_controller(space, 2)
        resumed.load_state_dict(_round_trip(controller.state_dict()))
        again = resumed.ask()
        assert again == pending and (again.id, again.genotype) == uninterrupted[6]
        resumed.tell(again.id, self._result(space, again))
        assert self._drive(resumed, space, 5) == uninterrupted[7:]

    def test_failed_results_do_not_break_the_controller(
        self, make_controller: Callable[..., Any], space: SearchSpace[Any]
    ) -> None:
        self._drive(make_controller(space, 0), space, self.steps, fail_every=3)
        controller = make_controller(space, 0)
        assert len(self._drive(controller, space, self.steps, fail_every=1)) == self.steps  # every trial fails

    def test_every_genotype_round_trips(self, make_controller: Callable[..., Any], space: SearchSpace[Any]) -> None:
        for _, genotype in self._drive(make_controller(space, 0), space, self.steps):
            assert space.decode(space.encode(genotype)) == genotype
            hash(genotype)

    def test_finished_honours_the_budget(self, make_controller: Callable[..., Any], space: SearchSpace[Any]) -> None:
        controller = make_controller(space, 0, budget=7)
        issued: list[Trial[Any]] = []
        while not controller.finished:
            batch = []
            while (trial := controller.ask()) is not None:
                batch.append(trial)
            assert batch, "nothing pending, not finished, yet ask() returned None"
            for trial in batch:
                assert controller.finished is False
                controller.tell(trial.id, self._result(space, trial))
            issued += batch
        assert [trial.id for trial in issued] == list(range(7))
        assert controller.ask() is None and controller.finished

    def test_tell_rejects_unknown_and_repeated_ids(
        self, make_controller: Callable[..., Any], space: SearchSpace[Any]
    ) -> None:
        controller = make_controller(space, 0)
        trial = controller.ask()
        with pytest.raises(ValueError, match="99"):
            controller.tell(99, Result(reward=1.0))
        controller.tell(trial.id, Result(reward=1.0))
        with pytest.raises(ValueError):
            controller.tell(trial.id, Result(reward=1.0))

    def test_load_rejects_a_state_from_another_seed(
        self, make_controller: Callable[..., Any], space: SearchSpace[Any]
    ) -> None:
        state = make_controller(space, 1).state_dict()
        with pytest.raises(ValueError, match="seed"):
            make_controller(space, 2).load_state_dict(state)


def _round_trip(state: dict[str, Any]) -> dict[str, Any]:
    """Through a real ``torch.save`` / ``torch.load(weights_only=True)``, as the journal stores it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _check_plain(value: Any, path: str = "state") -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert isinstance(key, (str, int)), f"{path}: key {key!r} is a {type(key).__name__}"
            _check_plain(item, f"{path}[{key!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{path}[{i}]")
    else:
        assert value is None or isinstance(value, (str, int, float, bool, torch.Tensor)), (
            f"{path} is a {type(value).__name__}: state_dict() must hold plain types and tensors"
        )


# ------------------------------------------------------------------------------------ evaluators


class EvaluatorContract:
    """What every evaluator promises. Fixtures: ``make_evaluator(space, seed)`` and ``space``
    (by default ``ToySpace``). Metrics named ``*seconds`` are timings and may differ between runs."""

    @pytest.fixture
    def space(self) -> SearchSpace[Any]:
        return ToySpace()

    def _genotype(self, space: SearchSpace[Any]) -> Any:
        return space.decode(sample_choices(space.decisions(), np.random.default_rng(0)))

    def test_implements_the_protocol(self, make_evaluator: Callable[..., Any], space: SearchSpace[Any]) -> None:
        evaluator = make_evaluator(space, 0)
        assert isinstance(evaluator, Evaluator)
        evaluator.prepare()
        evaluator.prepare()  # idempotent

    def test_metrics_are_json_and_repeatable(self, make_evaluator: Callable[..., Any], space: SearchSpace[Any]) -> None:
        genotype = self._genotype(space)
        first = make_evaluator(space, 0).evaluate(genotype, 3)
        second = make_evaluator(space, 0).evaluate(genotype, 3)
        assert isinstance(first, dict) and "error" not in first, first
        json.dumps(first)
        assert all(isinstance(v, (int, float, str, bool, type(None), list, dict)) for v in first.values())
        assert all(math.isfinite(v) for v in first.values() if isinstance(v, float))
        assert _without_timings(first) == _without_timings(second)

    def test_a_broken_candidate_is_a_result_not_an_exception(
        self, make_evaluator: Callable[..., Any], space: SearchSpace[Any]
    ) -> None:
        metrics = make_evaluator(space, 0).evaluate(_Broken(), 0)
        assert isinstance(metrics, dict) and isinstance(metrics.get("error"), str) and metrics["error"]


class _Broken:
    """A genotype no space can lower."""


def _without_timings(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in metrics.items() if not k.endswith("seconds")}


__all__ = [
    "ControllerContract",
    "EvaluatorContract",
    "OpContract",
    "SpaceContract",
    "ToyGenotype",
    "ToySpace",
    "changed_value",
    "toy_reward",
]
