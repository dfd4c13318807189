"""Weight sharing: the bank every candidate is assembled from, SPOS training that resumes exactly, scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import nas
from evaluators import supernet as supernet_module
from evaluators.supernet import CHECKPOINT, SupernetEvaluator
from nas import space as space_registry
from nas.cli.app import main
from nas.supernet import WeightBank

SPACE = space_registry.get("nb201")
TINY = {"C": 4, "N": 1, "resolution": 8, "batch_size": 32}  # 640 synthetic images: 16 steps an epoch
A = "|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_3x3~2|"
B = "|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_1x1~0|none~1|nor_conv_1x1~2|"


def _ir(text: str):
    return SPACE.lower(SPACE.from_string(text), num_classes=4, C=4, N=1, resolution=8)


def _parameters(model: torch.nn.Module) -> set[int]:
    return {id(p) for p in model.parameters()}


def test_candidates_share_the_modules_of_the_same_op_on_the_same_edge() -> None:
    bank = WeightBank(seed=3)
    first = bank.assemble(_ir(A))
    created = len(bank.parts)
    assert len(bank.take_new()) == created and bank.take_new() == []
    second = bank.assemble(_ir(B))
    shared = _parameters(first) & _parameters(second)
    assert shared and shared != _parameters(first)  # the stem, the same ops on the same edges; not the others
    assert len(bank.parts) > created  # avg_pool has no weights, but the 1x1 on edge 2->3 is new
    assert bank.assemble(_ir(A)) is not first and _parameters(bank.assemble(_ir(A))) == _parameters(first)
    # A module starts from weights its key and the seed fix, whichever candidate creates it first.
    other = WeightBank(seed=3)
    other.assemble(_ir(B))
    other.assemble(_ir(A))
    mine, theirs = bank.state_dict(), other.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    # The assembled network is the compiled one: same structure and state-dict names.
    assert first.state_dict().keys() == nas.compile(_ir(A)).state_dict().keys()


def _evaluator(**options) -> SupernetEvaluator:
    return SupernetEvaluator(SPACE, dataset="synthetic", seed=0, **{**TINY, **options})


def test_training_killed_after_an_epoch_resumes_to_the_same_weights(tmp_path: Path, monkeypatch) -> None:
    torch.set_num_threads(1)
    whole = _evaluator(epochs=2)
    whole.attach(tmp_path / "whole")
    save = supernet_module._save

    def killed_after_first(path, *args):
        save(path, *args)
        raise KeyboardInterrupt  # the process dies right after epoch 1's checkpoint

    monkeypatch.setattr(supernet_module, "_save", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        _evaluator(epochs=2).attach(tmp_path / "killed")
    monkeypatch.setattr(supernet_module, "_save", save)
    assert torch.load(tmp_path / "killed" / CHECKPOINT, weights_only=True)["epoch"] == 1
    resumed = _evaluator(epochs=2)
    resumed.attach(tmp_path / "killed")
    assert whole.bank is not None and resumed.bank is not None
    mine, theirs = whole.bank.state_dict(), resumed.bank.state_dict()
    assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine)
    assert resumed.losses == whole.losses and len(whole.losses) == 2
    # A finished checkpoint is loaded, not trained again; every candidate scores as in the first process.
    loaded = _evaluator(epochs=2)
    loaded.attach(tmp_path / "whole")
    genotype = SPACE.from_string(A)
    scored = whole.evaluate(genotype, trial_id=5)
    assert scored["weight_shared"] is True and 0.0 <= scored["accuracy"] <= 1.0 and "error" not in scored
    assert loaded.evaluate(genotype, trial_id=9)["accuracy"] == scored["accuracy"]
    # Scoring B in between changes nothing for A: its BatchNorm statistics are re-estimated each time.
    whole.evaluate(SPACE.from_string(B), trial_id=6)
    assert whole.evaluate(genotype, trial_id=5)["accuracy"] == scored["accuracy"]


def test_a_checkpoint_made_with_other_epochs_or_fine_tune_is_refused_not_mixed(tmp_path: Path) -> None:
    """A run's identity keeps its options as given: if a default changed since a checkpoint was made,
    resuming would mix two supernets (or two scorings); the checkpoint's plan says so in one line."""
    torch.set_num_threads(1)
    _evaluator(epochs=1, finetune_steps=0).attach(tmp_path)
    with pytest.raises(ValueError, match="made with epochs 1, this run asks for 2"):
        _evaluator(epochs=2, finetune_steps=0).attach(tmp_path)
    with pytest.raises(ValueError, match="made with finetune_steps 0, this run asks for 100"):
        _evaluator(epochs=1).attach(tmp_path)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    del state["plan"]  # a checkpoint from before plans were recorded: the defaults of then (30 epochs, no fine-tune)
    torch.save(state, tmp_path / CHECKPOINT)
    with pytest.raises(ValueError, match="made with epochs 30"):
        _evaluator(epochs=1, finetune_steps=0).attach(tmp_path)


def test_a_damaged_checkpoint_and_bad_options_are_refused(tmp_path: Path) -> None:
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable supernet checkpoint"):
        _evaluator(epochs=1).attach(tmp_path)
    with pytest.raises(ValueError, match="finetune_steps: must be a non-negative integer"):
        _evaluator(finetune_steps=-1)


def test_a_search_through_the_supernet_ends_with_a_final_stage_that_trains(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = tmp_path / "tiny.yaml"
    config.write_text(json.dumps({"evaluator_options": {**TINY, "epochs": 1}}))
    out = tmp_path / "run"
    arguments = ["search", "--space", "nb201", "--evaluator", "supernet", "--controller", "random", "--budget", "4"]
    arguments += ["--dataset", "synthetic", "--out", str(out), "--config", str(config), "--no-progress"]
    arguments += ["--final-top", "2", "--final-repeats", "2", "--final-epochs", "1"]
    assert main(arguments) == 0
    assert (out / CHECKPOINT).is_file()
    report = (out / "report.md").read_text()
    assert "weight-shared: one supernet trained for 1 epochs" in report and "## Final selection" in report
    # The final stage trained each candidate on its own, ranked by the proxy's default reward (its training loss).
    assert "## How sure: the final stage" in report and "final_train_loss" in report
    assert main(arguments) == 0  # a finished run: nothing trained again


# ------------------------------------------------------------------------------------------- ENAS


def test_enas_trains_an_epoch_before_every_enas_trials_trials_on_the_policys_paths() -> None:
    torch.set_num_threads(1)
    evaluator = _evaluator(epochs=2, training="enas", enas_trials=2)
    drawn: list[int] = []

    class OnlyA:  # a policy that always draws cell A
        def draw(self, seed: int) -> dict:
            drawn.append(seed)
            return SPACE.encode(SPACE.from_string(A))

    evaluator.follow(OnlyA(), budget=4, sequential=True)
    first = evaluator.evaluate(SPACE.from_string(A), trial_id=0)
    assert first["supernet_epochs"] == 1 and first["supernet_training"] == "enas" and "error" not in first
    steps = len(drawn)
    assert steps > 0 and len(set(drawn)) == steps  # one draw a training step, each with its own seed
    assert evaluator._training is not None and len(evaluator._training.history) == 1  # only A's parts exist
    assert evaluator.evaluate(SPACE.from_string(A), trial_id=1)["supernet_epochs"] == 1 and len(drawn) == steps
    # B's new parts (scored, untrained) join the history so that the next epoch trains them and a checkpoint keeps them.
    assert evaluator.evaluate(SPACE.from_string(B), trial_id=1)["untrained_parts"] is True
    assert len(evaluator._training.history) == 2
    assert evaluator.evaluate(SPACE.from_string(A), trial_id=2)["supernet_epochs"] == 2 and len(drawn) == 2 * steps
    assert evaluator.evaluate(SPACE.from_string(A), trial_id=9)["supernet_epochs"] == 2  # after the last epoch
    # A trial from an earlier epoch needs weights this evaluator no longer has (it kept no checkpoint): refused.
    assert "keeps no checkpoint of epoch 1" in _error(evaluator, 0)


def _error(evaluator: SupernetEvaluator, trial_id: int) -> str:
    with pytest.raises(ValueError) as caught:
        evaluator.evaluate(SPACE.from_string(A), trial_id=trial_id)
    return str(caught.value)


@pytest.mark.parametrize(
    "options, follow, match",
    [
        ({"training": "darts"}, None, "training: must be one of"),
        ({"training": "enas", "enas_trials": 0}, None, "enas_trials: must be an integer from 1"),
        ({"training": "enas"}, ("random", 400, True), "controller RandomSearch has none"),
        ({"training": "enas"}, ("reinforce", 400, False), "workers: training 'enas'"),
        ({"training": "enas", "epochs": 3, "enas_trials": 5}, ("reinforce", 14, True), "need --budget 15 or more"),
    ],
)
def test_searches_enas_cannot_run_are_refused(options, follow, match) -> None:
    from nas.controller import make_controller

    with pytest.raises(ValueError, match=match):
        evaluator = _evaluator(**options)
        if follow is not None:
            name, budget, sequential = follow
            evaluator.follow(make_controller(name, SPACE, seed=0, budget=budget), budget, sequential)


def _enas_search(out: Path, config: Path) -> list[str]:
    arguments = ["search", "--space", "nb201", "--evaluator", "supernet", "--controller", "reinforce"]
    arguments += ["--budget", "6", "--dataset", "synthetic", "--out", str(out), "--config", str(config)]
    return [*arguments, "--no-progress"]


def _rewards(out: Path) -> list[tuple[int, str, float]]:
    import optuna

    study = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}")
    trials = sorted(study.get_trials(), key=lambda t: t.user_attrs["trial_id"])
    return [(t.user_attrs["trial_id"], json.dumps(t.user_attrs["genotype"]), t.value) for t in trials]


@pytest.mark.parametrize("killed_at", ["before", "after"])
def test_an_enas_search_killed_at_an_epoch_resumes_to_the_same_trials(tmp_path: Path, monkeypatch, killed_at) -> None:
    """Killed while training epoch 2 (before its checkpoint) or right after it (before the trial it was
    trained for is recorded), the search resumes and records what the uninterrupted one does."""
    torch.set_num_threads(1)
    config = tmp_path / "enas.yaml"
    config.write_text(json.dumps({"evaluator_options": {**TINY, "epochs": 2, "training": "enas", "enas_trials": 2}}))
    whole = tmp_path / "whole"
    assert main(_enas_search(whole, config)) == 0
    assert sorted(path.name for path in (whole / "enas").iterdir()) == ["epoch-001.pt", "epoch-002.pt"]
    report = (whole / "report.md").read_text()
    assert "paths drawn from the controller's policy, one epoch before every 2 trials (ENAS)" in report
    assert '"dedup": false' in report  # ENAS's REINFORCE learns from its policy's own samples
    save = supernet_module._save

    def killed(path, training, *rest):
        if training.epoch == 2:
            if killed_at == "after":
                save(path, training, *rest)
            raise KeyboardInterrupt
        save(path, training, *rest)

    monkeypatch.setattr(supernet_module, "_save", killed)
    killed_out = tmp_path / "killed"
    assert main(_enas_search(killed_out, config)) == 130
    monkeypatch.setattr(supernet_module, "_save", save)
    assert len(_rewards(killed_out)) == 2  # the trials of epoch 1
    assert main(_enas_search(killed_out, config)) == 0
    assert _rewards(killed_out) == _rewards(whole)
    mine = torch.load(whole / "enas" / "epoch-002.pt", weights_only=True)
    theirs = torch.load(killed_out / "enas" / "epoch-002.pt", weights_only=True)
    assert mine["losses"] == theirs["losses"] and mine["bank"].keys() == theirs["bank"].keys()
    # The weights are the same; BatchNorm's running statistics are not state (every score re-estimates them).
    weights = [key for key in mine["bank"] if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert weights and all(torch.equal(mine["bank"][key], theirs["bank"][key]) for key in weights)


def test_nasnet_candidates_share_each_nodes_op_on_the_input_it_reads() -> None:
    """NASNet cells (ENAS's micro space) get a supernet from the same bank: two cells share the stem and
    the op of every node where they agree, and nothing where they differ."""
    from nas.seeds import trial_rng
    from nas.space import sample_choices

    nasnet = space_registry.get("nasnet")
    decisions = list(nasnet.decisions())
    first = sample_choices(decisions, trial_rng(0, 1))
    second = dict(first)
    changed = next(d for d in decisions if d.name.startswith("normal") and "op" in d.name)
    second[changed.name] = next(c for c in changed.choices if c != first[changed.name])
    options = {"num_classes": 4, "num_cells": 1, "penultimate_filters": 24}
    bank = WeightBank(seed=0)
    one = bank.assemble(nasnet.lower(nasnet.decode(first), **options))
    created = len(bank.parts)
    two = bank.assemble(nasnet.lower(nasnet.decode(second), **options))
    shared = _parameters(one) & _parameters(two)
    assert shared and shared != _parameters(one) and len(bank.parts) > created
    assert bank.assemble(nasnet.lower(nasnet.decode(first), **options)).state_dict().keys() == one.state_dict().keys()


def test_enas_asks_the_controller_for_on_policy_samples_unless_the_search_says_otherwise(tmp_path: Path) -> None:
    from nas.search.run import build_controller
    from nas.search.settings import SearchSettings

    defaults = _evaluator(training="enas").controller_defaults()
    assert defaults == {"dedup": False} and _evaluator().controller_defaults() == {}

    def settings(controller: str, **options) -> SearchSettings:
        return SearchSettings(out=str(tmp_path), space="nb201", controller=controller, budget=400, **options)

    assert build_controller(settings("reinforce"), SPACE, defaults=defaults).dedup is False  # type: ignore[attr-defined]
    explicit = settings("reinforce", controller_options={"dedup": True})
    assert build_controller(explicit, SPACE, defaults=defaults).dedup is True  # type: ignore[attr-defined]
    assert build_controller(settings("random"), SPACE, defaults=defaults) is not None  # an option it lacks: not passed


def test_candidates_are_fine_tuned_before_scoring_by_default_with_spos_not_with_enas() -> None:
    from evaluators.supernet_options import SPOS_FINETUNE_STEPS, SupernetOptions

    assert SupernetOptions().finetune_steps == SPOS_FINETUNE_STEPS > 0
    assert SupernetOptions(training="enas").finetune_steps == 0  # ENAS rewards the shared weights themselves
    assert SupernetOptions(training="enas", finetune_steps=5).finetune_steps == 5
