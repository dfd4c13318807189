"""Trials written in batches: the rows equal Optuna's own, nothing is lost that was flushed, resume is exact.

A search of cheap evaluations (a benchmark table) writes its trials and the controller state every
``FLUSH_SECONDS``, not at every tell (``nas.loop.Driver``, ``nas.bulk_trials``).
"""

import datetime

import optuna
import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

import nas.space
from nas.bulk_trials import FinishedTrial, insert_trials
from nas.controller import make_controller
from nas.journal import Journal
from nas.loop import Driver, run_sequential

SPACE = nas.space.get("nasnet")
SETTINGS = {"space": "nasnet", "controller": "evolution", "seed": 0}
COMPARED = ("number", "state", "value", "params", "distributions", "user_attrs", "system_attrs")
DISTRIBUTIONS = {
    "op": CategoricalDistribution(["conv", "pool", None]),
    "width": CategoricalDistribution([8, 16]),
    "rate": CategoricalDistribution([0.25, 0.5]),
}


def finished(number, state=TrialState.COMPLETE, value=0.5):
    return FinishedTrial(
        params={"op": ["conv", "pool", None][number % 3], "width": [8, 16][number % 2], "rate": 0.25},
        distributions=DISTRIBUTIONS,
        state=state,
        value=value if state == TrialState.COMPLETE else None,
        user_attrs={"trial_id": number, "metrics": {"accuracy": value, "nested": [1, {"a": None}]}, "error": None},
    )


def study(path):
    storage = optuna.storages.RDBStorage(f"sqlite:///{path}")
    return storage, optuna.create_study(storage=storage, study_name="s", direction="maximize")


def test_the_rows_written_in_one_batch_are_the_rows_add_trial_writes(tmp_path):
    trials = [finished(0), finished(1, TrialState.FAIL), finished(2, value=float("inf")), finished(3, value=-1e-300)]
    _, one_by_one = study(tmp_path / "a.db")
    for trial in trials:
        one_by_one.add_trial(trial.frozen())
    storage, batched = study(tmp_path / "b.db")
    batched.add_trial(trials[0].frozen())  # a study that already holds a trial: numbers continue after it
    insert_trials(storage, batched, trials[1:])
    expected = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'a.db'}").trials
    read = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'b.db'}").trials
    assert len(read) == len(expected) == 4
    for got, want in zip(read, expected):
        assert {k: getattr(got, k) for k in COMPARED} == {k: getattr(want, k) for k in COMPARED}
        assert got.datetime_start == got.datetime_complete and want.datetime_start == want.datetime_complete
        assert abs(got.datetime_complete - want.datetime_complete) < datetime.timedelta(seconds=60)
    assert [t.number for t in batched.trials] == [0, 1, 2, 3]  # the open study's cache sees them too


def score(genotype, trial_id, calls=None):
    """A deterministic stand-in for an evaluation: the share of separable convolutions."""
    if calls is not None:
        calls.append(trial_id)
    ops = [op for cell in (genotype.normal, genotype.reduction) for b in cell.blocks for op in (b.op_a, b.op_b)]
    return {"accuracy": sum(op.startswith("sep") for op in ops) / len(ops)}


def driver(out, budget, flush_seconds=3600.0):
    controller = make_controller("evolution", SPACE, seed=0, budget=budget, population_size=4, sample_size=2)
    return Driver(SPACE, controller, Journal(out, None, "nas-search", SETTINGS), budget, flush_seconds=flush_seconds)


def stored(out):
    """The trials a fresh reader finds on disk: (trial id, genotype) in the order they were recorded."""
    trials = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}").trials
    return [(t.user_attrs["trial_id"], t.user_attrs["genotype"]) for t in trials]


def run_until(run, told, calls):
    """Tell ``run`` trials until its journal holds ``told`` of them (the sequential loop, one step at a time)."""
    while len(run.journal) < told:
        trial = run.next_trial()
        run.complete(trial.id, score(trial.genotype, trial.id, calls))


def test_told_trials_wait_in_memory_until_a_flush_writes_them_with_the_state(tmp_path):
    run = driver(tmp_path, 20)
    run_sequential(run, score)
    assert len(run.journal) == 20 and run.journal.unwritten == 20 and stored(tmp_path) == []
    run.flush()
    assert [trial_id for trial_id, _ in stored(tmp_path)] == list(range(20)) and run.journal.unwritten == 0
    assert torch.load(tmp_path / "controller.pt", weights_only=True)["num_told"] == 20


def test_a_slow_evaluation_is_written_as_soon_as_it_is_told(tmp_path):
    run = driver(tmp_path, 3, flush_seconds=0.0)  # any evaluation is slower than no time at all
    run_until(run, 1, [])
    assert len(stored(tmp_path)) == 1 and run.journal.unwritten == 0


@pytest.mark.parametrize("written", [True, False])
def test_a_crash_between_flushes_resumes_to_the_uninterrupted_sequence(tmp_path, written):
    """Killed after a flush at trial 10 and 12 more tells: with those 12 in the journal but not in the saved
    state (``written``: killed between writing the journal and the state), the restored controller is told
    them in their order and none is evaluated again; otherwise they are lost and evaluated again."""
    budget, reference = 30, driver(tmp_path / "reference", 30)
    run_sequential(reference, score)
    reference.finish()
    calls = []
    dead = driver(tmp_path / "run", budget)
    run_until(dead, 10, calls)
    dead.flush()
    run_until(dead, 22, calls)
    if written:
        dead.journal.flush()  # the state is not saved: it still says 10 trials were told
    assert torch.load(tmp_path / "run" / "controller.pt", weights_only=True)["num_told"] == 10
    resumed = driver(tmp_path / "run", budget)
    assert resumed.stats.replayed == (12 if written else 0)
    run_sequential(resumed, lambda genotype, trial_id: score(genotype, trial_id, calls))
    resumed.finish()
    assert stored(tmp_path / "run") == stored(tmp_path / "reference")
    assert len(calls) == (30 if written else 42) and sorted(set(calls)) == list(range(30))


def test_a_killed_table_search_resumes_to_the_uninterrupted_journal(tmp_path, run_and_kill, capsys):
    """``nas search`` on a benchmark table (~1,000 trials/s, written every FLUSH_SECONDS) killed with SIGKILL
    after 1,200 trials: what was written is kept, the rest is evaluated again, and the journal ends as an
    uninterrupted run's, trial for trial (the in-process tests above resume evolution, which learns from
    every tell, across a lost batch)."""
    from nas.cli.app import main  # lazy: the CLI's imports are not needed by the other tests

    def args(out):
        return ["search", "--space", "nb201", "--evaluator", "tabular", "--controller", "random"] + [
            "--budget",
            "2500",
            "--out",
            str(out),
            "--no-progress",
        ]

    assert main(args(tmp_path / "straight")) == 0
    assert run_and_kill(args(tmp_path / "killed"), after_lines=1200) == 1200
    kept = stored(tmp_path / "killed")
    assert 0 < len(kept) < 2500 and [trial_id for trial_id, _ in kept] == list(range(len(kept)))
    capsys.readouterr()
    assert main(args(tmp_path / "killed")) == 0
    rerun = [line for line in capsys.readouterr().err.splitlines() if line.startswith("trial ")]
    assert len(rerun) == 2500 - len(kept)  # only what was not written is evaluated again
    assert stored(tmp_path / "killed") == stored(tmp_path / "straight")
