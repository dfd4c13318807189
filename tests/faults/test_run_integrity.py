"""Issue 7 faults: one writer per run, a damaged journal is never replaced, settings are checked
before anything is created, a full disk leaves nothing partial, and every user mistake is one line."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest

from nas.cli.app import main
from nas.lock import RunLock

TINY = "evaluator_options:\n  num_cells: 1\n  penultimate_filters: 24\n"


def search(out: Path, tmp_path: Path, *extra: str, budget: int = 2, config: str = TINY) -> list[str]:
    path = tmp_path / "settings.yaml"
    path.write_text(config)
    return [
        "search",
        "--space",
        "nasnet",
        "--controller",
        "random",
        "--budget",
        str(budget),
        "--dataset",
        "synthetic",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--config",
        str(path),
        "--no-progress",
        *extra,
    ]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), lines
    return lines[0]


def finished_trials(out: Path) -> list[int]:
    study = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}")
    return sorted(t.user_attrs["trial_id"] for t in study.get_trials() if t.state.is_finished())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("finished")
    out = base / "run"
    assert main(search(out, base, budget=3)) == 0
    return out


def copy_run(run: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(run, to, ignore=shutil.ignore_patterns(".lock"))
    return to


# ----------------------------------------------------------------------------- one writer per run


def test_a_second_search_on_a_locked_run_is_refused_naming_the_holder(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out):
        assert main(search(out, tmp_path)) == 2
    line = one_error_line(capsys)
    assert f"pid {os.getpid()} on " in line and "in use by another run" in line
    assert not (out / "study.db").exists()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(f"""
        import sys, time
        from nas.lock import RunLock
        RunLock({str(out)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
    """),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match=f"pid {holder.pid} on"):
            RunLock(out).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    with RunLock(out):  # the kernel released the dead process's lock
        assert (out / ".lock").read_text().startswith("{")


# ----------------------------------------------------------------- a damaged journal is never replaced


@pytest.mark.parametrize("damage", ["random bytes", "half truncated", "deleted"])
def test_a_damaged_journal_stops_the_search_and_is_left_as_it_is(finished_run, tmp_path, capsys, damage) -> None:
    out = copy_run(finished_run, tmp_path / "run")
    journal = out / "study.db"
    if damage == "random bytes":
        journal.write_bytes(os.urandom(journal.stat().st_size))
    elif damage == "half truncated":
        journal.write_bytes(journal.read_bytes()[: journal.stat().st_size // 2])
    else:
        journal.unlink()
    before = journal.read_bytes() if journal.exists() else None
    assert main(search(out, tmp_path, budget=3)) == 2
    line = one_error_line(capsys)
    assert ("is damaged" in line and "nas doctor" in line) if before is not None else "no study.db" in line
    assert (journal.read_bytes() if journal.exists() else None) == before
    if before is not None:
        assert main(["show", str(out)]) == 2
        assert "is damaged" in one_error_line(capsys)


def test_doctor_reports_and_rescues_a_damaged_journal(finished_run, tmp_path, capsys) -> None:
    assert main(["doctor", str(finished_run)]) == 0
    assert "intact" in capsys.readouterr().out
    out = copy_run(finished_run, tmp_path / "run")
    data = bytearray((out / "study.db").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = os.urandom(4096)  # a damaged page in the middle
    (out / "study.db").write_bytes(data)
    rescued = tmp_path / "rescued"
    assert main(["doctor", str(out), "--export", str(rescued)]) == 1
    report = capsys.readouterr().out
    assert "DAMAGED" in report and f"exported 3 finished trials to {rescued}" in report
    assert (out / "study.db").read_bytes() == bytes(data)  # the original is only ever read
    assert main(search(rescued, tmp_path, budget=4)) == 0  # resumes: 3 replayed, 1 evaluated
    assert finished_trials(rescued) == [0, 1, 2, 3]
    progress = capsys.readouterr().err
    assert "trial 3:" in progress and not any(f"trial {k}:" in progress for k in range(3))  # none re-run


# --------------------------------------------------------------- settings checked before anything exists


@pytest.mark.parametrize(
    "config, match",
    [
        ("storage: 5\n", "storage: expected str or null, got 5"),
        ("space: [nasnet]\n", r"space: expected str, got \['nasnet'\]"),
        ("controller: {a: 1}\n", "controller: expected str"),
        ("out: 5\n", "out: expected str, got 5"),
        ("data_dir: 5\n", "data_dir: expected str or null"),
        ("download: yes-please\n", "download: expected bool"),
        ("study_name: 5\n", "study_name: expected str or null"),
        ("seed: 1180591620717411303424\n", r"seed: must be in \[0, 2\*\*63 - 1\]"),
        ("epochs: .inf\n", "epochs: expected int or null, got inf"),
        ("storage: notaurl\n", "storage: 'notaurl' is not a database URL"),
        ("storage: sqlite:////nonexistent/x.db\n", "storage: /nonexistent does not exist"),
        ("evaluator_options: {num_cells: 1, penultimate_filters: 25}\n", "proxy settings.*penultimate_filters"),
        ("evaluator_options: {num_cells: 1, penultimate_filters: 24, resolution: 0}\n", "resolution"),
        ("evaluator_options: {num_cells: 1, penultimate_filters: 24, epoch: 2}\n", "epoch: not a proxy setting"),
    ],
)
def test_a_bad_setting_is_one_line_and_creates_nothing(tmp_path, capsys, config, match) -> None:
    out, path = tmp_path / "run", tmp_path / "settings.yaml"
    # The bad line replaces the good base setting of its key (a key given twice is refused on its own).
    base = {"space": "nasnet", "controller": "random", "budget": "2", "dataset": "synthetic", "epochs": "1"}
    key = config.split(":")[0]
    lines = [f"{name}: {value}" for name, value in base.items() if name != key]
    lines += [f"out: {out}"] if key != "out" else []
    path.write_text("\n".join(lines) + "\n" + (TINY if key != "evaluator_options" else "") + config)
    args = ["search", "--config", str(path), "--no-progress"]
    started = time.perf_counter()
    assert main(args) == 2
    seconds = time.perf_counter() - started
    assert pytest.approx(0, abs=30) == seconds  # refused before any training (a generous bound: no flake)
    import re

    assert re.search(match, one_error_line(capsys))
    assert not out.exists()


def test_an_unwritable_parent_is_one_line(tmp_path, capsys, monkeypatch) -> None:
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if Path(path) == tmp_path else real_access(path, mode))
    assert main(search(tmp_path / "run", tmp_path)) == 2
    assert "not writable" in one_error_line(capsys)


# ------------------------------------------------------------------- a full disk leaves nothing partial


def test_a_full_disk_is_one_line_leaves_nothing_partial_and_the_rerun_resumes(tmp_path, capsys, monkeypatch) -> None:
    import nas.files

    out = tmp_path / "run"
    calls = {"n": 0}
    real_fsync = os.fsync

    def full_after_two(fd: int) -> None:
        calls["n"] += 1
        if calls["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(nas.files.os, "fsync", full_after_two)
    assert main(search(out, tmp_path, budget=3)) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("trial ")]
    assert len(errors) == 1 and errors[0].startswith("nas: error: ") and "Traceback" not in errors[0]
    assert "controller.pt: no space left on the device" in errors[0] and "bytes are needed" in errors[0]
    assert not [p.name for p in out.iterdir() if p.name.endswith(".partial")]
    monkeypatch.setattr(nas.files.os, "fsync", real_fsync)
    assert main(search(out, tmp_path, budget=3)) == 0
    assert finished_trials(out) == [0, 1, 2]


def test_a_bug_is_a_traceback_and_a_line_saying_so(tmp_path, capsys, monkeypatch) -> None:
    import nas.search.run

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(nas.search.run, "build_controller", broken)
    assert main(search(tmp_path / "run", tmp_path)) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: a bug" in err and "internal error" in err.splitlines()[-1]


def test_two_searches_on_one_shared_study_are_refused_and_a_dead_holder_is_taken_over(tmp_path, capsys) -> None:
    from nas.lock import StudyGuard

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    study = optuna.create_study(storage=storage, study_name="nas-search", direction="maximize")
    with StudyGuard(study, interval=0.05, settle=0.0):  # another search, elsewhere, holds the study
        time.sleep(0.2)
        assert main(search(tmp_path / "second", tmp_path, "--storage", storage)) == 2
        assert "study 'nas-search' is in use by another search (pid" in one_error_line(capsys)
    study.set_user_attr(StudyGuard.KEY, {"pid": 1, "host": "gone", "token": "x", "heartbeat": time.time() - 1e4})
    assert main(search(tmp_path / "third", tmp_path, "--storage", storage)) == 0  # a stale holder is taken over
    assert study.user_attrs[StudyGuard.KEY] == {}


def test_searches_claiming_a_shared_study_at_once_leave_one_holder(tmp_path) -> None:
    import threading

    from nas.lock import StudyGuard

    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'shared.db'}", study_name="s", direction="maximize")
    guards = [
        StudyGuard(
            optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path / 'shared.db'}"), interval=60, settle=0.5
        )
        for _ in range(4)
    ]
    barrier, won = threading.Barrier(4), []

    def claim(guard: StudyGuard) -> None:
        barrier.wait()
        try:
            guard.acquire()
            won.append(guard)
        except ValueError:
            pass

    threads = [threading.Thread(target=claim, args=(guard,)) for guard in guards]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    won[0].release()
    assert study.user_attrs[StudyGuard.KEY] == {}


def test_an_unparsable_trial_record_is_reported_not_replayed(finished_run, tmp_path, capsys) -> None:
    import sqlite3

    out = copy_run(finished_run, tmp_path / "run")
    with sqlite3.connect(out / "study.db") as connection:  # one trial's genotype cut off mid-JSON
        connection.execute(
            "UPDATE trial_user_attributes SET value_json = '{\"space\": \"nasn' WHERE key = 'genotype' "
            "AND trial_id = (SELECT MIN(trial_id) FROM trial_user_attributes)"
        )
    assert main(search(out, tmp_path, budget=3)) == 2
    assert "a finished trial's record cannot be read" in one_error_line(capsys)
    assert main(["doctor", str(out), "--export", str(tmp_path / "rescued")]) == 1
    report = capsys.readouterr().out
    assert "DAMAGED: 1 trial record(s) cannot be read" in report and "exported 2 finished trials" in report


def test_doctor_exports_the_named_study_only(finished_run, tmp_path, capsys) -> None:
    out = copy_run(finished_run, tmp_path / "run")
    other = optuna.create_study(storage=f"sqlite:///{out / 'study.db'}", study_name="other", direction="maximize")
    other.set_user_attr("nas_settings", {"space": "mobilenetv3"})
    assert main(["doctor", str(out), "--export", str(tmp_path / "x")]) == 0
    assert "checked: nas-search" in capsys.readouterr().out
    exported = optuna.get_all_study_summaries(f"sqlite:///{tmp_path / 'x' / 'study.db'}")
    assert [s.study_name for s in exported] == ["nas-search"] and exported[0].n_trials == 3


def test_a_damaged_shared_storage_leaves_no_run_directory(tmp_path, capsys) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(3000))
    out = tmp_path / "run"
    assert main(search(out, tmp_path, "--storage", f"sqlite:///{junk}")) == 2
    assert "cannot open the study" in one_error_line(capsys)
    assert not out.exists() and len(junk.read_bytes()) == 3000
