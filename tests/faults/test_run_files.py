"""Issue 28, a run's own files: what it may leave before its first trial, what it refuses to mix, and what
it does when a file it wrote is damaged or a journal row is gone.

A run that stops before its first trial leaves nothing it created (a journal half created on a full
disk, the ``--out`` of a search refused on a shared storage); a journal that never held a trial is the
run's debris, not the user's data, and the next run replaces it. A second writer is refused before
the parts are built; one kind of run never fills another's directory; a trial row deleted from the
journal is evaluated again; a damaged NetAdapt file is one line, never a failed trial in the journal.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy.exc

from nas.cli.app import main
from nas.lock import RunLock

TINY = "evaluator_options: {num_cells: 1, penultimate_filters: 24}\n"


def search(out: Path, tmp_path: Path, *extra: str, budget: int = 2) -> list[str]:
    path = tmp_path / "settings.yaml"
    path.write_text(TINY)
    return [
        *("search", "--space", "nasnet", "--controller", "random", "--budget", str(budget), "--dataset", "synthetic"),
        *("--epochs", "1", "--out", str(out), "--config", str(path), "--no-progress", *extra),
    ]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("WARNING ", "trial "))]
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), err[-2000:]
    return lines[0]


def finished_trials(out: Path, study: str = "nas-search") -> list[int]:
    loaded = optuna.load_study(study_name=study, storage=f"sqlite:///{out / 'study.db'}")
    return sorted(t.user_attrs["trial_id"] for t in loaded.get_trials() if t.state.is_finished())


def half_created_journal(path: Path) -> None:
    """What Optuna leaves when the disk fills while it creates its schema: some of its tables, no trial."""
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name VARCHAR(512))")
    connection.execute("CREATE TABLE version_info (version_info_id INTEGER PRIMARY KEY, schema_version INTEGER)")
    connection.commit()
    connection.close()


# ------------------------------------------------------------------- what a run leaves before its first trial


def test_a_full_disk_at_the_first_write_leaves_no_journal_and_the_rerun_runs(tmp_path, capsys, monkeypatch) -> None:
    real = optuna.storages.RDBStorage

    def full(url: str, *args: object, **kwargs: object) -> object:
        half_created_journal(Path(url.removeprefix("sqlite:///")))
        disk_full = sqlite3.OperationalError("database or disk is full")
        raise sqlalchemy.exc.OperationalError("CREATE TABLE trials", {}, disk_full)

    out = tmp_path / "run"
    monkeypatch.setattr(optuna.storages, "RDBStorage", full)
    assert main(search(out, tmp_path)) == 2
    assert "cannot open the study (no space left on the device)" in one_error_line(capsys)
    assert not out.exists()  # it created the directory: it takes it back
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    assert main(search(existing, tmp_path)) == 2
    assert sorted(p.name for p in existing.iterdir()) == ["notes.txt"]  # only what it created is removed
    monkeypatch.setattr(optuna.storages, "RDBStorage", real)
    capsys.readouterr()
    assert main(search(out, tmp_path)) == 0
    assert finished_trials(out) == [0, 1]


def test_a_journal_that_never_held_a_trial_is_replaced(tmp_path, capsys) -> None:
    from nas.storage import is_debris

    out = tmp_path / "run"
    out.mkdir()
    (out / "study.db").write_bytes(b"")
    assert is_debris(out / "study.db")  # an empty file: SQLite had not written its header yet
    (out / "study.db").unlink()
    half_created_journal(out / "study.db")  # left by an earlier version on a full disk: refused for good
    assert is_debris(out / "study.db")
    assert main(search(out, tmp_path)) == 0, capsys.readouterr().err
    assert finished_trials(out) == [0, 1]
    assert not is_debris(out / "study.db")


def test_a_database_of_someone_else_is_still_refused(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    connection = sqlite3.connect(out / "study.db")
    connection.execute("CREATE TABLE invoices (id INTEGER)")  # not one of Optuna's tables: not our debris
    connection.commit()
    connection.close()
    before = (out / "study.db").read_bytes()
    assert main(search(out, tmp_path)) == 2
    assert "is damaged" in one_error_line(capsys)
    assert (out / "study.db").read_bytes() == before


@pytest.mark.parametrize("target", ["itself", "missing"])
def test_an_out_that_is_a_dangling_or_looping_link_is_one_line(tmp_path, capsys, target) -> None:
    out = tmp_path / "run"
    out.symlink_to(out if target == "itself" else tmp_path / "missing")
    assert main(search(out, tmp_path)) == 2  # a loop was a RuntimeError traceback
    assert "a symbolic link that leads to no directory" in one_error_line(capsys)
    assert main(search(out / "inner", tmp_path)) == 2
    one_error_line(capsys)


def test_a_search_refused_on_a_shared_storage_leaves_no_out_directory(tmp_path, capsys) -> None:
    from nas.lock import StudyGuard

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(storage=storage, study_name="nas-search", direction="maximize")
    with StudyGuard(study, interval=0.05, settle=0.0):  # another search, elsewhere, holds the study
        assert main(search(tmp_path / "second", tmp_path, "--storage", storage)) == 2
    assert "is in use by another search" in one_error_line(capsys)
    assert not (tmp_path / "second").exists()


# ------------------------------------------------------------------- one writer, one kind of run


def test_a_second_scale_run_is_refused_before_its_grid_is_computed(tmp_path, capsys, monkeypatch) -> None:
    import nas.scale.run

    def never(*args: object, **kwargs: object) -> None:
        raise AssertionError("the grid was built before the lock was checked")

    monkeypatch.setattr(nas.scale.run.ScaleRun, "build", never)
    out = tmp_path / "scale"
    out.mkdir()
    args = ["scale", "--base", "mobilenetv3-small", "--constraint", "macs", "--dataset", "synthetic"]
    with RunLock(out):
        started = time.perf_counter()
        assert main([*args, "--out", str(out), "--no-progress"]) == 2
        assert time.perf_counter() - started < 10  # the MACs of the grid took 21 s before the refusal
    assert "is in use by another run" in one_error_line(capsys)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``nas train`` directory: a tiny NASNet, one epoch on the synthetic images."""
    out = tmp_path_factory.mktemp("train") / "run"
    args = ["train", "nasnet-a-cifar", "--set", "num_cells=1", "--set", "penultimate_filters=24"]
    assert main([*args, "--dataset", "synthetic", "--epochs", "1", "--no-progress", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("storage", [False, True])
def test_a_search_never_fills_a_training_directory(trained, tmp_path, capsys, storage) -> None:
    out = tmp_path / "train"
    shutil.copytree(trained, out)
    extra = ("--storage", f"sqlite:///{tmp_path / 'shared.db'}") if storage else ()
    assert main(search(out, tmp_path, *extra)) == 2
    assert "holds another kind of run (nas train)" in one_error_line(capsys)
    (out / "train.json").unlink()  # its identity file gone: its outputs still say what it is
    assert main(search(out, tmp_path, *extra)) == 2
    assert "holds the outputs of a nas train run" in one_error_line(capsys)
    assert not (out / "study.db").exists() and not (tmp_path / "shared.db").exists()


def test_doctor_names_a_study_the_journal_lacks(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    optuna.create_study(storage=f"sqlite:///{tmp_path / 'run.db'}", study_name="nas-search")
    out.mkdir()
    shutil.copy(tmp_path / "run.db", out / "study.db")
    assert main(["doctor", str(out), "--study-name", "nope"]) == 2  # reported "intact", exit 0
    assert "holds no study 'nope'; its studies: nas-search" in one_error_line(capsys)


# ------------------------------------------------------------------- a journal row deleted


def test_a_trial_row_deleted_from_the_journal_is_evaluated_again(tmp_path, capsys, caplog) -> None:
    out = tmp_path / "run"
    assert main(search(out, tmp_path, budget=3)) == 0
    rewards = {
        t.user_attrs["trial_id"]: t.value
        for t in optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}").trials
    }
    connection = sqlite3.connect(out / "study.db")
    (row,) = connection.execute(
        "SELECT trial_id FROM trial_user_attributes WHERE key = 'trial_id' AND value_json = '1'"
    ).fetchone()
    for table in ("trial_params", "trial_values", "trial_user_attributes", "trial_system_attributes", "trials"):
        connection.execute(f"DELETE FROM {table} WHERE trial_id = ?", (row,))
    connection.commit()
    connection.close()
    capsys.readouterr()
    assert main(search(out, tmp_path, budget=3)) == 0  # it ended with 2 of the 3 evaluations
    assert "the journal lacks trial 1" in caplog.text
    assert finished_trials(out) == [0, 1, 2]
    again = {
        t.user_attrs["trial_id"]: t.value
        for t in optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}").trials
    }
    assert again == rewards  # the same trial, the same seeds: the same reward


# ------------------------------------------------------------------- NetAdapt's own files damaged


@pytest.fixture(scope="module")
def netadapt_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A finished NetAdapt run on ``tests/nas/test_netadapt_cli.py``'s tiny network, and its arguments."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "nas"))
    try:
        from test_netadapt_cli import TINY as NETWORK
        from test_netadapt_cli import _args
    finally:
        sys.path.pop(0)
    from nas.serialization import genotype_json

    folder = tmp_path_factory.mktemp("netadapt")
    (folder / "tiny.json").write_text(json.dumps(genotype_json("mobilenetv3", NETWORK)))
    (folder / "config.yaml").write_text("latency: {min_repetitions: 5, max_seconds: 0.1, rounds: 1}\n")
    files = {"genotype": folder / "tiny.json", "table": folder / "latency.json", "folder": folder}
    out = folder / "run"
    assert main(_args(files, out)) == 0
    return out, _args(files, folder / "OUT")


def _copy(netadapt_run: tuple[Path, list[str]], to: Path) -> tuple[Path, list[str]]:
    run, args = netadapt_run
    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to, [str(to) if arg.endswith("OUT") else arg for arg in args]


def _failed_trials(out: Path) -> int:
    study = optuna.load_study(study_name="nas-netadapt", storage=f"sqlite:///{out / 'study.db'}")
    return sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)


@pytest.mark.parametrize("damage", ["truncated", "another network"])
def test_a_damaged_start_is_one_line(netadapt_run, tmp_path, capsys, damage) -> None:
    import torch

    out, args = _copy(netadapt_run, tmp_path / "run")
    start = out / "start.pt"
    if damage == "truncated":
        start.write_bytes(start.read_bytes()[:300])
    else:
        torch.save({"x": torch.zeros(3)}, start)
    capsys.readouterr()
    assert main(args) == 2  # a traceback
    line = one_error_line(capsys)
    assert f"{start}: " in line and ("unreadable" in line or "does not fit the starting network" in line)
    if damage == "truncated":
        assert "delete it and the same command trains the start again" in line


def test_a_truncated_weights_file_is_one_line_and_no_failed_trial(netadapt_run, tmp_path, capsys) -> None:
    out, args = _copy(netadapt_run, tmp_path / "run")
    chosen = sorted((out / "weights").glob("trial-*.pt"))
    first = chosen[0]
    saved = first.read_bytes()
    # Interrupted after the first iteration: the journal keeps its trials, the second iteration is to come.
    second = int(chosen[1].stem.split("-")[1])
    connection = sqlite3.connect(out / "study.db")
    rows = [
        row
        for row, value in connection.execute(
            "SELECT trial_id, value_json FROM trial_user_attributes WHERE key = 'trial_id'"
        )
        if int(value) >= second
    ]
    for row in rows:
        for table in ("trial_params", "trial_values", "trial_user_attributes", "trial_system_attributes", "trials"):
            connection.execute(f"DELETE FROM {table} WHERE trial_id = ?", (row,))
    connection.commit()
    connection.close()
    for name in ("controller.pt", "best.json", "best.pt", "netadapt.json"):
        (out / name).unlink(missing_ok=True)
    for later in chosen[1:]:
        later.unlink()
    first.write_bytes(saved[:1000])
    capsys.readouterr()
    for _ in range(2):  # the trial was recorded as failed for good, and every later rerun crashed
        assert main(args) == 2
        line = one_error_line(capsys)
        assert f"{first}: unreadable" in line and "start a new run" in line
        assert _failed_trials(out) == 0
    first.write_bytes(saved)
    assert main(args) == 0
    assert _failed_trials(out) == 0
