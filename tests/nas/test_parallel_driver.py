"""The driver as a parallel backend drives it: several trials in flight, results out of order, resume by replay.

No Ray here: a loop keeps up to ``workers`` trials in flight and completes them in a fixed out-of-order
pattern, as Ray Tune's workers would; ``tests/backends`` runs the real thing.
"""

import pytest
import torch

import nas.space
from nas.controller import make_controller
from nas.journal import Journal
from nas.loop import Driver, search

SPACE = nas.space.get("nasnet")
SETTINGS = {"space": "nasnet", "controller": "x", "seed": 0}


def score(genotype, trial_id):
    """A deterministic stand-in for proxy training: the share of separable convolutions."""
    ops = [op for cell in (genotype.normal, genotype.reduction) for b in cell.blocks for op in (b.op_a, b.op_b)]
    return {"accuracy": sum(op.startswith("sep") for op in ops) / len(ops), "params": 1000 + trial_id}


def controller(name, budget):
    options = {"population_size": 4, "sample_size": 2} if name == "evolution" else {}
    options = {"batch_size": 3} if name == "reinforce" else options
    return make_controller(name, SPACE, seed=0, budget=budget, **options)


def drive(out, name, budget, workers, stop_after=None, evaluated=None):
    """Run with ``workers`` slots; every third completion is the newest trial in flight, the others the oldest.

    ``stop_after``: the driver dies after that many completions, with trials in flight.
    """
    journal = Journal(out, None, "nas-search", {**SETTINGS, "controller": name})
    driver = Driver(SPACE, controller(name, budget), journal, budget)
    completed = 0
    while not driver.done:
        while len(driver.in_flight) < workers and driver.next_trial() is not None:
            pass
        if stop_after is not None and completed == stop_after:
            return journal, driver
        assert driver.in_flight, "the controller waits with nothing in flight"
        ids = sorted(driver.in_flight)
        chosen = ids[-1] if completed % 3 == 1 else ids[0]
        if evaluated is not None:
            evaluated.append(chosen)
        driver.complete(chosen, score(driver.in_flight[chosen].genotype, chosen))
        completed += 1
    return journal, driver


def genotypes(journal):
    return {trial_id: record.genotype for trial_id, record in journal.records.items()}


@pytest.mark.parametrize("name, same", [("random", True), ("reinforce", True), ("evolution", False)])
def test_exactly_the_budget_and_which_controllers_propose_the_sequential_trials(tmp_path, name, same):
    """Random search draws trial t from (seed, t); the RNN samples a batch from the policy of the batches
    told before it, and waits for a whole batch: both propose the sequential run's trials. Evolution picks
    parents from the population of the results told so far, so its children depend on completion order."""
    parallel, driver = drive(tmp_path / "parallel", name, budget=12, workers=3)
    assert sorted(parallel.records) == list(range(12)) and driver.done and not driver.in_flight
    assert list(parallel.records) != sorted(parallel.records)  # they were recorded out of order
    for trial_id, record in parallel.records.items():  # every evaluation's metrics are the sequential ones
        assert record.result.metrics == score(SPACE.decode(record.choices), trial_id)
    assert torch.load(tmp_path / "parallel" / "controller.pt", weights_only=True)["num_told"] == 12
    journal = Journal(tmp_path / "sequential", None, "nas-search", {**SETTINGS, "controller": name})
    search(SPACE, controller(name, 12), score, journal, 12)
    assert (genotypes(parallel) == genotypes(journal)) is same


@pytest.mark.parametrize("lose_state", [False, True])
def test_a_dead_driver_resumes_without_losing_or_rerunning_a_finished_evaluation(tmp_path, lose_state):
    """With its saved state, or (``lose_state``) rebuilt from the journal alone: each record says how many
    trials had been handed out when it was told, so evolution's asks and tells replay in their order."""
    evaluated = []
    journal, dead = drive(tmp_path, "evolution", budget=14, workers=3, stop_after=7, evaluated=evaluated)
    finished, in_flight = dict(genotypes(journal)), set(dead.in_flight)
    state = torch.load(tmp_path / "controller.pt", weights_only=True)  # saved after the last tell
    assert len(finished) == 7 and in_flight
    if lose_state:
        (tmp_path / "controller.pt").unlink()
    resumed = Driver(
        SPACE,
        controller("evolution", 14),
        Journal(tmp_path, None, "nas-search", {**SETTINGS, "controller": "evolution"}),
        14,
    )
    assert resumed.controller.state_dict() == state  # exactly where the dead driver's last tell left it
    journal, _ = drive(tmp_path, "evolution", budget=14, workers=3, evaluated=evaluated)
    assert {k: v for k, v in genotypes(journal).items() if k in finished} == finished  # nothing finished was lost
    assert len(journal) == 14 and len(evaluated) == len(set(evaluated)) == 14  # nothing finished ran twice
    assert in_flight <= set(evaluated[7:])  # the trials in flight at the crash were run after it


def test_a_result_recorded_just_before_the_crash_is_told_first_on_resume(tmp_path):
    """The driver died between writing a trial to the journal and saving the controller's state: the
    restored controller is told that trial at once, as the dead driver had, before anything else runs.
    Both kinds: one pending in the saved state, one asked after it was saved."""
    journal, dead = drive(tmp_path, "evolution", budget=14, workers=3, stop_after=7)
    saved = (tmp_path / "controller.pt").read_bytes()
    next_id = torch.load(tmp_path / "controller.pt", weights_only=True)["next_id"]
    pending = {next_id > i for i in dead.in_flight}
    assert pending == {True, False}  # some were asked before the last save, some after
    for trial_id in (max(dead.in_flight), min(dead.in_flight)):
        dead.complete(trial_id, score(dead.in_flight[trial_id].genotype, trial_id))
    told = torch.load(tmp_path / "controller.pt", weights_only=True)
    (tmp_path / "controller.pt").write_bytes(saved)  # the crash came before the state was saved
    resumed = Driver(
        SPACE,
        controller("evolution", 14),
        Journal(tmp_path, None, "nas-search", {**SETTINGS, "controller": "evolution"}),
        14,
    )
    assert resumed.controller.state_dict() == told and resumed.stats.replayed == 2


def test_a_parallel_run_rebuilt_from_its_journal_needs_a_budget_that_holds_its_trials(tmp_path):
    journal, _ = drive(tmp_path, "evolution", budget=14, workers=3, stop_after=8)  # trials 0-6 and 9 recorded
    (tmp_path / "controller.pt").unlink()
    budget = max(journal.records)  # the last recorded trial is beyond it
    assert budget > len(journal)
    with pytest.raises(ValueError, match=r"budget: this run handed out \d+ trials before it stopped; resume it"):
        Driver(
            SPACE,
            controller("evolution", budget),
            Journal(tmp_path, None, "nas-search", {**SETTINGS, "controller": "evolution"}),
            budget,
        )
