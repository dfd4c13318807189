"""The search loop and its journal: budget, failures, resume by replay, refusal of other settings."""

import shutil

import optuna
import pytest

import nas
import nas.space
from nas.controller import make_controller
from nas.journal import Journal
from nas.loop import search

SPACE = nas.space.get("nasnet")
SETTINGS = {"space": "nasnet", "controller": "random", "seed": 0}


def score(genotype, trial_id):
    """A cheap deterministic stand-in for proxy training: the share of separable convolutions."""
    ops = [op for cell in (genotype.normal, genotype.reduction) for b in cell.blocks for op in (b.op_a, b.op_b)]
    return {"accuracy": sum(op.startswith("sep") for op in ops) / len(ops), "params": 1000 + trial_id}


class Counting:
    def __init__(self, fail_on=()):
        self.calls, self.fail_on = [], set(fail_on)

    def __call__(self, genotype, trial_id):
        self.calls.append(trial_id)
        if trial_id in self.fail_on:
            return {"error": "nan loss at epoch 1"}
        return score(genotype, trial_id)


def run(out, budget, name="reinforce", evaluate=None, settings=SETTINGS, **options):
    evaluate = evaluate or Counting()
    journal = Journal(out, None, "nas-search", settings)
    controller = make_controller(name, SPACE, seed=0, **options)
    stats = search(SPACE, controller, evaluate, journal, budget)
    return journal, stats, evaluate


def sequence(journal):
    return [journal.records[i].genotype for i in sorted(journal.records)]


@pytest.mark.parametrize("name", ["random", "evolution", "reinforce"])
def test_budget_and_optuna_trials(tmp_path, name):
    journal, stats, evaluate = run(tmp_path, 7, name, batch_size=3) if name == "reinforce" else run(tmp_path, 7, name)
    assert len(journal) == 7 and stats.evaluated == 7 and evaluate.calls == list(range(7))
    study = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{tmp_path / 'study.db'}")
    trials = study.get_trials()
    assert len(trials) == 7 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    first = trials[0]
    assert set(first.params) == {d.name for d in SPACE.decisions()}
    assert nas.load_genotype(first.user_attrs["genotype"]) == SPACE.decode(first.params)
    assert first.user_attrs["metrics"]["accuracy"] == first.value and first.user_attrs["status"] == "complete"


def test_failed_candidates_are_recorded_and_the_search_goes_on(tmp_path):
    journal, stats, evaluate = run(tmp_path, 6, "random", evaluate=Counting(fail_on={1, 4}))
    assert len(journal) == 6
    failed = sorted(i for i, r in journal.records.items() if r.result.failed)
    assert failed == [1, 4] and journal.records[1].result.error == "nan loss at epoch 1"
    study = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert sum(t.state == optuna.trial.TrialState.FAIL for t in study.get_trials()) == 2


def test_an_evaluator_that_raises_is_a_failed_trial(tmp_path):
    def explode(genotype, trial_id):
        if trial_id == 2:
            raise RuntimeError("CUDA out of memory")
        return score(genotype, trial_id)

    journal, _, _ = run(tmp_path, 4, "random", evaluate=explode)
    assert journal.records[2].result.error == "RuntimeError: CUDA out of memory" and len(journal) == 4


@pytest.mark.parametrize("name", ["reinforce", "evolution"])
def test_resume_continues_the_same_sequence(tmp_path, name):
    options = {"batch_size": 4} if name == "reinforce" else {"population_size": 4, "sample_size": 2}
    straight, _, _ = run(tmp_path / "straight", 12, name, **options)
    first, _, _ = run(tmp_path / "resumed", 5, name, **options)
    resumed, stats, evaluate = run(tmp_path / "resumed", 12, name, **options)
    assert evaluate.calls == list(range(5, 12)) and stats.replayed == 0
    assert sequence(resumed) == sequence(straight)


def test_stale_controller_state_replays_without_re_running(tmp_path):
    """A kill after the journal write but before the state save: the journal result is replayed."""
    out = tmp_path / "run"
    run(out, 3, "reinforce", batch_size=2)
    shutil.copy(out / "controller.pt", tmp_path / "after-3.pt")
    run(out, 5, "reinforce", batch_size=2)
    shutil.copy(tmp_path / "after-3.pt", out / "controller.pt")  # state of trial 3, journal holds 5
    resumed, stats, evaluate = run(out, 8, "reinforce", batch_size=2)
    assert stats.replayed == 2 and evaluate.calls == [5, 6, 7]
    straight, _, _ = run(tmp_path / "straight", 8, "reinforce", batch_size=2)
    assert sequence(resumed) == sequence(straight)


def test_missing_or_torn_controller_state_is_rebuilt_from_the_journal(tmp_path):
    out = tmp_path / "run"
    run(out, 4, "evolution", population_size=3, sample_size=2)
    (out / "controller.pt").write_bytes(b"torn")
    resumed, stats, evaluate = run(out, 6, "evolution", population_size=3, sample_size=2)
    assert stats.replayed == 4 and evaluate.calls == [4, 5]
    straight, _, _ = run(tmp_path / "straight", 6, "evolution", population_size=3, sample_size=2)
    assert sequence(resumed) == sequence(straight)


def test_other_settings_on_an_existing_run_are_refused(tmp_path):
    run(tmp_path, 2, "random")
    with pytest.raises(ValueError, match="other settings.*controller: 'random' -> 'evolution'"):
        Journal(tmp_path, None, "nas-search", {**SETTINGS, "controller": "evolution"})


def test_a_different_controller_sequence_is_detected(tmp_path):
    run(tmp_path, 3, "random")
    (tmp_path / "controller.pt").unlink()
    journal = Journal(tmp_path, None, "nas-search", SETTINGS)
    other_seed = make_controller("random", SPACE, seed=99)
    with pytest.raises(RuntimeError, match="another genotype than the journal"):
        search(SPACE, other_seed, score, journal, 5)


def test_a_run_recorded_before_a_setting_existed_resumes_with_its_default(tmp_path):
    """Runs written before ``evaluator`` was a setting were proxy runs: they resume as such, nothing else."""
    Journal(tmp_path, None, "nas-search", SETTINGS)  # recorded without "evaluator"
    Journal(tmp_path, None, "nas-search", {**SETTINGS, "evaluator": "proxy"}, defaults={"evaluator": "proxy"})
    with pytest.raises(ValueError, match="evaluator: 'proxy' -> 'other'"):
        Journal(tmp_path, None, "nas-search", {**SETTINGS, "evaluator": "other"}, defaults={"evaluator": "proxy"})
