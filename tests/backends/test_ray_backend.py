"""The ray backend, on a real local Ray: the local journal, the local metrics, a killed worker, ASHA.

One Ray instance (2 CPUs) serves the module; the backend joins it instead of starting its own.
"""

from __future__ import annotations

import os
import pickle
import signal
import threading
import time
from pathlib import Path

import optuna
import pytest
import torch

from nas.search.run import run_search
from nas.search.settings import SearchSettings

ray = pytest.importorskip("ray")

TINY = {"num_cells": 1, "penultimate_filters": 24}


@pytest.fixture(scope="module")
def cluster():
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    if started:
        ray.shutdown()


def settings(out: Path, **values) -> SearchSettings:
    defaults = {
        "space": "nasnet",
        "controller": "random",
        "budget": 4,
        "dataset": "synthetic",
        "epochs": 1,
        "evaluator_options": dict(TINY),
    }
    return SearchSettings(out=str(out), **{**defaults, **values})


def trials(out: Path) -> dict[int, optuna.trial.FrozenTrial]:
    study = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}")
    return {t.user_attrs["trial_id"]: t for t in study.get_trials()}


def measured(metrics: dict) -> dict:
    """The metrics that are functions of (seed, trial id, genotype): all but the timings."""
    return {key: value for key, value in metrics.items() if not key.endswith("seconds")}


def test_two_workers_write_the_local_journal_with_the_local_metrics(cluster, tmp_path):
    best_ray, stats = run_search(settings(tmp_path / "ray", backend="ray", workers=2))
    best_local, _ = run_search(settings(tmp_path / "local"))
    assert stats.backend == "ray" and stats.workers == 2 and stats.evaluated == 4 and stats.startup_seconds >= 0
    on_ray, local = trials(tmp_path / "ray"), trials(tmp_path / "local")
    assert sorted(on_ray) == sorted(local) == [0, 1, 2, 3]  # exactly the budget
    for trial_id, trial in local.items():
        other = on_ray[trial_id]
        assert other.state == trial.state and other.params == trial.params and other.value == trial.value
        assert set(other.user_attrs) == set(trial.user_attrs)  # the same record format
        assert measured(other.user_attrs["metrics"]) == measured(trial.user_attrs["metrics"])
        assert other.user_attrs["genotype"] == trial.user_attrs["genotype"]
    assert best_ray.trial_id == best_local.trial_id
    files = {path.name for path in (tmp_path / "ray").iterdir()}
    assert files == {path.name for path in (tmp_path / "local").iterdir()}
    assert "backend: ray, 2 workers" in (tmp_path / "ray" / "report.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_a_trial_no_node_can_hold_is_refused_before_anything_is_written(cluster, tmp_path):
    """This machine's Ray has no GPU: Tune would wait for one forever."""
    with pytest.raises(ValueError, match=r"gpus_per_trial: a trial asks for 1 CPUs and 1 GPUs, and no node"):
        run_search(settings(tmp_path / "run", backend="ray", gpus_per_trial=1))
    assert not (tmp_path / "run").exists()


def _parent(pid: int) -> int:
    try:
        return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _workers() -> set[int]:
    """Processes running a Tune function trainable (Ray names them ``ray::ImplicitFunc...``) of this test
    process's own Ray (its raylet starts them): another test run's Ray on the machine is left alone."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if not (entry / "cmdline").read_bytes().startswith(b"ray::ImplicitFunc"):
                    continue
            except OSError:
                continue
            pid = ancestor = int(entry.name)
            while ancestor > 1 and ancestor != os.getpid():
                ancestor = _parent(ancestor)
            if ancestor == os.getpid():
                found.add(pid)
    return found


def _kill_next_worker(killed: set[int], deadline: float, search: threading.Thread) -> int:
    while time.monotonic() < deadline and search.is_alive():
        fresh = _workers() - killed
        if fresh:
            pid = min(fresh)
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
            return pid
        time.sleep(0.05)
    raise AssertionError("no Ray worker appeared while the search ran")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds Ray's worker processes in /proc")
def test_a_killed_worker_is_retried_and_one_killed_every_time_is_recorded_as_failed(cluster, tmp_path):
    """One worker, two trials: trial 0's worker is killed once (run again: its metrics are the local
    ones), trial 1's on both of its runs (retries 1), so it is recorded as failed with Ray's reason.
    Three epochs make a trial last a few seconds, long enough to be killed after trial 0 is recorded."""
    out, killed, errors = tmp_path / "run", set(), []
    run = settings(out, budget=2, epochs=3, backend="ray", workers=1, backend_options={"retries": 1})

    def search():
        try:
            run_search(run)
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=search)
    thread.start()
    deadline = time.monotonic() + 240
    _kill_next_worker(killed, deadline, thread)  # trial 0, first run
    while not (out / "study.db").exists() or not trials(out):  # trial 0 finished on its second run
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.1)
    # Trial 1: every worker that appears is killed until the search ends. Usually that is its two runs;
    # a kill that lands on a worker between trials, or while its actor starts, may count as one of them.
    while thread.is_alive() and time.monotonic() < deadline:
        for pid in _workers() - killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.05)
    assert len(killed) >= 2
    thread.join(timeout=240)
    assert not thread.is_alive() and not errors, errors
    recorded = trials(out)
    assert sorted(recorded) == [0, 1]
    assert recorded[0].state == optuna.trial.TrialState.COMPLETE
    _, local = run_search(settings(tmp_path / "local", budget=1, epochs=3)), trials(tmp_path / "local")
    assert measured(recorded[0].user_attrs["metrics"]) == measured(local[0].user_attrs["metrics"])
    assert recorded[1].state == optuna.trial.TrialState.FAIL
    assert recorded[1].user_attrs["error"].startswith("its Ray worker failed (2 runs): ")
    # Ray's reason: "ActorDiedError: ... died", or "The actor never ran" when the kill came while it started
    assert "actor" in recorded[1].user_attrs["error"].lower()
    assert torch.load(out / "controller.pt", weights_only=True)["num_told"] == 2


def test_asha_stops_poor_candidates_early_and_the_controller_is_told(cluster, tmp_path):
    """Random NASNet cells differ widely after one epoch (0.34 to 0.55 on the synthetic task); with one
    worker the trials reach the rung (epoch 1 of 2) in id order, so which are stopped is fixed by the
    seed. A stopped trial keeps the metrics and the epochs it had when it was stopped, and its reward
    is the default objective's of those metrics (the proxy's: minus the last epoch's training loss)."""
    out = tmp_path / "asha"
    _, stats = run_search(settings(out, budget=6, epochs=2, backend="ray", workers=1, early_stop="asha"))
    recorded = trials(out)
    assert sorted(recorded) == list(range(6))
    stopped = [t for t in recorded.values() if t.user_attrs["metrics"].get("early_stopped")]
    assert stopped and stats.early_stopped == len(stopped)
    for trial in stopped:
        metrics = trial.user_attrs["metrics"]
        assert metrics["epochs"] == 1 and trial.value == -metrics["final_train_loss"] and 0 <= metrics["accuracy"] <= 1
    assert len(stopped) < 6
    state = torch.load(out / "controller.pt", weights_only=True)
    assert state["num_told"] == 6 and not state["pending"]
    full = next(t for t in recorded.values() if not t.user_attrs["metrics"].get("early_stopped"))
    assert full.user_attrs["metrics"]["epochs"] == 2


class _Driver:
    """What the searcher calls on a driver, recorded (the bridge's own logic, without Ray running)."""

    def __init__(self):
        import nas.space

        self.space = nas.space.get("nasnet")
        self.completed, self.in_flight, self.context, self.keywords, self.exhausted = [], {}, {}, {}, False
        self.trials = iter(range(100))

    def next_trial(self):
        from nas.controller import Trial

        trial = Trial(next(self.trials), self.space.decode({d.name: d.choices[0] for d in self.space.decisions()}))
        self.in_flight[trial.id] = trial
        return trial

    def complete(self, trial_id, metrics, seconds=None):
        self.in_flight.pop(trial_id)
        self.completed.append((trial_id, metrics, seconds))


def test_the_searcher_records_stops_failures_and_a_worker_that_cannot_build():
    import json

    from backends.ray_tune import _DriverSearcher

    driver = _Driver()
    searcher = _DriverSearcher(driver, threads=1, report=True)
    driver.lock = threading.Lock()  # Tune pickles its configuration; the driver (a progress bar, say) stays here
    assert pickle.loads(pickle.dumps(searcher)).driver is None and searcher.driver is driver
    configs = {name: searcher.suggest(name) for name in ("a", "b", "c", "d")}
    assert configs["a"]["nas_trial"] == 0 and configs["a"]["nas_threads"] == 1 and configs["a"]["nas_report"]
    assert driver.space.decode(configs["b"]["nas_choices"]) == driver.in_flight[1].genotype
    searcher.on_trial_complete(
        "a", {"nas_final": False, "nas_metrics": json.dumps({"accuracy": 0.5, "epochs": 1}), "time_total_s": 3.0}
    )
    assert driver.completed[-1] == (0, {"accuracy": 0.5, "epochs": 1, "early_stopped": True}, 3.0)
    searcher.on_trial_complete("b", None, error=True)  # its reason comes from Tune's callback, after
    searcher.record_error("b", "its Ray worker failed (3 runs): ActorDiedError: The actor died")
    assert driver.completed[-1] == (
        1,
        {"error": "its Ray worker failed (3 runs): ActorDiedError: The actor died"},
        None,
    )
    searcher.on_trial_complete("c", None, error=True)  # no reason ever came
    searcher.flush()
    assert driver.completed[-1] == (2, {"error": "its Ray worker failed"}, None)
    searcher.on_trial_complete(
        "d", {"nas_final": True, "nas_fatal": "ValueError: /data: no such folder", "nas_metrics": "{}"}
    )
    assert isinstance(searcher.fault, ValueError) and "could not prepare the evaluation" in str(searcher.fault)
    assert 3 in driver.in_flight and searcher.suggest("e") == searcher.FINISHED  # unfinished: a resumed run runs it
