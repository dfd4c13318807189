"""Issue 28, hostile inputs: files and values a careful, hostile user gives each command.

A YAML alias bomb, a key given twice, ``/dev/zero`` or a FIFO where a file is expected, ``.inf`` where
a count is, a ``.pt`` without its genotype, a latency table with NaN or negative times, a symbolic link
loop in an image folder, a Ray trial larger than the machine: each ends in one ``nas: error:`` line
of bounded length, exit code 2, before anything is written or trained.
"""

from __future__ import annotations

import errno
import json
import math
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from nas.cli.app import main
from nas.errors import MAX_MESSAGE
from nas.serialization import genotype_json
from search_spaces.mobilenetv3 import MobileNetV3Block, MobileNetV3Genotype

TINY = "evaluator_options: {num_cells: 1, penultimate_filters: 24}\n"
TINY_NETWORK = MobileNetV3Genotype(
    blocks=(MobileNetV3Block(3, 16, 16, False, "relu", 2),),
    stem_channels=16,
    head_channels=32,
    classifier_hidden=32,
    resolution=32,
)


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if not line.startswith("WARNING ")]
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), err[:2000]
    assert len(lines[0]) <= MAX_MESSAGE + len("nas: error: ")
    return lines[0]


def search(tmp_path: Path, config: str, *extra: str, controller: str = "random") -> list[str]:
    path = tmp_path / "settings.yaml"
    path.write_text(config)
    return [
        *("search", "--space", "nasnet", "--controller", controller, "--budget", "2", "--dataset", "synthetic"),
        *("--epochs", "1", "--out", str(tmp_path / "run"), "--config", str(path), "--no-progress", *extra),
    ]


def alias_bomb(levels: int) -> str:
    """``levels`` lists of nine aliases of the list before: a few hundred bytes, 9**levels values."""
    lists = ["&a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lists += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "proxy: {num_cells: [" + ", ".join(lists) + "]}\n"


# ------------------------------------------------------------------------------------ config files


@pytest.mark.parametrize("levels", [6, 9])
def test_a_yaml_alias_bomb_is_refused_at_once_without_quoting_it(tmp_path, capsys, levels) -> None:
    started = time.perf_counter()
    assert main(search(tmp_path, alias_bomb(levels))) == 2
    assert time.perf_counter() - started < 5  # 6 levels took 27 s, 9 never ended
    assert "expands to more than 10,000 values" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_an_error_quoting_a_large_config_value_stays_one_bounded_line(tmp_path, capsys) -> None:
    config = "evaluator_options: {num_cells: [" + ", ".join(["123456789"] * 5000) + "], penultimate_filters: 24}\n"
    assert main(search(tmp_path, config)) == 2
    assert "num_cells" in one_error_line(capsys)  # the value is cut, the setting still named


@pytest.mark.parametrize(
    "config, needle",
    [
        ("budget: 2\nseed: 1\nbudget: 200\n", "the key 'budget' is given twice in one mapping (line 3)"),
        (TINY + "controller_options: {batch_size: 2, batch_size: 3}\n", "the key 'batch_size' is given twice"),
        ("a: &a [*a]\n", "an alias refers to the value that holds it"),
        ("x: " + "[" * 40 + "]" * 40 + "\n", "nested deeper than 32 levels"),
    ],
    ids=["top level", "nested", "recursive alias", "deep"],
)
def test_an_ambiguous_or_recursive_config_is_refused(tmp_path, capsys, config, needle) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text(config)
    assert main(["search", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert needle in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_merge_key_may_still_be_overridden(tmp_path) -> None:
    from nas.cli.config import read_config

    path = tmp_path / "settings.yaml"
    path.write_text("base: &base {budget: 2, seed: 1}\nrun: {<<: *base, budget: 3}\n")
    assert read_config(str(path))["run"] == {"budget": 3, "seed": 1}


@pytest.mark.parametrize("command", ["search", "scale", "netadapt"])
def test_dev_zero_as_a_config_is_refused_without_reading_it(tmp_path, capsys, command) -> None:
    assert main([command, "--config", "/dev/zero", "--out", str(tmp_path / "run")]) == 2
    assert "/dev/zero: not a regular file; expected a YAML settings file" in one_error_line(capsys)


def test_an_oversized_config_is_refused(tmp_path, capsys) -> None:
    path = tmp_path / "settings.yaml"
    path.write_text("# padding\n" * 200_000)
    assert main(["search", "--config", str(path), "--out", str(tmp_path / "run")]) == 2
    assert "larger than 1 MiB, the limit for a YAML settings file" in one_error_line(capsys)


@pytest.mark.parametrize("argv", [["show", "{fifo}"], ["search", "--config", "{fifo}", "--out", "{out}"]])
def test_a_fifo_is_refused_instead_of_waiting_for_a_writer(tmp_path, argv) -> None:
    fifo = tmp_path / "spec.json"
    os.mkfifo(fifo)
    args = [part.format(fifo=fifo, out=tmp_path / "run") for part in argv]
    done = subprocess.run(
        [sys.executable, "-m", "nas.cli", *args], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    expected = (
        "a genotype file (4 MiB at most; a few KB)" if argv[0] == "show" else "a YAML settings file (1 MiB at most)"
    )
    assert done.returncode == 2 and done.stderr.strip() == f"nas: error: {fifo}: a FIFO; expected {expected}"


# ------------------------------------------------------------------------------------ settings


def test_an_infinite_controller_option_is_one_line(tmp_path, capsys) -> None:
    config = TINY + "controller_options: {batch_size: .inf}\n"
    assert main(search(tmp_path, config, controller="reinforce")) == 2
    assert "batch_size: must be an integer in [1, 1,000,000], got inf" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "option, value",
    [
        *[(option, value) for option in ("hidden_size", "batch_size", "ppo_epochs") for value in (1e300, 2.5)],
        *[
            (option, value)
            for option in ("hidden_size", "batch_size", "ppo_epochs", "learning_rate", "init_range", "entropy_weight")
            for value in (math.inf, math.nan, "x", [1])
        ],
        ("init_range", 1e300),
    ],
)
def test_every_bad_reinforce_option_is_a_value_error(option, value) -> None:
    from nas import registry
    from nas.controller import make_controller

    with pytest.raises(ValueError, match=option):
        make_controller("reinforce", registry.spaces.get("nasnet"), seed=0, budget=20, **{option: value})


def test_an_unhashable_sampler_name_is_a_value_error() -> None:
    from nas import registry
    from nas.controller import make_controller

    with pytest.raises(ValueError, match="sampler: expected the name of an Optuna sampler"):
        make_controller("optuna", registry.spaces.get("nasnet"), seed=0, budget=20, sampler=[1])


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--decay", "-1"], "decay: must be a number in (0, 1], got -1.0"),
        (["--reduction", "0"], "reduction: must be a number in (0, 1], got 0.0"),
        (["--reduction", "2"], "reduction: must be a number in (0, 1], got 2.0"),
    ],
)
def test_netadapt_schedule_is_checked_before_the_start_is_trained(tmp_path, capsys, flags, needle) -> None:
    out = tmp_path / "run"
    args = ["netadapt", "--from", "mobilenetv3-small", "--latency-ratio", "0.5", "--out", str(out), *flags]
    assert main(args) == 2
    assert needle in one_error_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "flags, needle",
    [
        (["--threads", "100000"], "--threads: must be at most 1024, got 100000"),  # a traceback, out of memory
        (
            ["--noisy-student", "--unlabeled-fraction", "0.5", "--iterations", "100000000"],
            "--iterations: must be at most",
        ),
        (["--randaugment-ops", "100000"], "--randaugment-ops: must be at most 14"),
    ],
)
def test_train_counts_past_any_use_are_refused(tmp_path, capsys, flags, needle) -> None:
    out = tmp_path / "run"
    assert main(["train", "nasnet-a-cifar", "--dataset", "synthetic", "--out", str(out), "--no-progress", *flags]) == 2
    assert needle in one_error_line(capsys)
    assert not out.exists()


def test_a_ray_trial_larger_than_this_machine_is_refused_before_ray_starts(tmp_path, capsys) -> None:
    cores = len(os.sched_getaffinity(0))
    assert main(search(tmp_path, TINY, "--backend", "ray", "--cpus-per-trial", "4096")) == 2
    assert "cpus_per_trial: must be a positive integer, at most 1024" in one_error_line(capsys)
    assert main(search(tmp_path, TINY, "--backend", "ray", "--cpus-per-trial", str(cores + 1))) == 2
    assert f"a trial asks for {cores + 1} CPUs and this machine has {cores}" in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"reduction_factor": math.inf}, "reduction_factor must be a number > 1, and finite, got inf"),
        ({"brackets": 10**9}, "brackets must be at most 32"),  # Ray built them all: it never started
        ({"reduction_factor": 1.0000001}, "so close to 1 that ASHA would compare at"),  # 15 s to build, after Ray
    ],
)
def test_asha_options_that_stall_ray_are_refused_before_it_starts(options, needle) -> None:
    from backends.ray_tune import RayBackend
    from nas.backend import EvaluationJob

    job = EvaluationJob(build=dict, space=None, reward=float, epochs=10, reports=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=needle):
        RayBackend(early_stop="asha", early_stop_options=options).check(job)


# ------------------------------------------------------------------------------------ data files


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import nas
    from nas.api import save_model

    path = tmp_path_factory.mktemp("model") / "good.pt"
    lowering = {"num_cells": 1, "penultimate_filters": 24}
    save_model(nas.materialize("nasnet-a-cifar", num_classes=10, **lowering), "nasnet-a-cifar", path, 10, lowering)
    return path


@pytest.mark.parametrize(
    "edit, needle",
    [
        (lambda p: p.pop("genotype"), "a nas-model file without its 'genotype'"),
        (lambda p: p.update(num_classes="ten"), "num_classes must be a positive integer, got 'ten'"),
        (lambda p: p.update(genotype={"space": "nasnet"}), "its genotype: version: missing field"),
        (lambda p: p.update(state_dict=[1, 2]), "its state_dict is not a mapping of tensors"),
        (lambda p: p.update(lowering=[1]), "its lowering settings are not a mapping of names"),
    ],
    ids=["no genotype", "num_classes ten", "bad genotype", "bad state", "bad lowering"],
)
def test_a_model_file_with_a_bad_field_is_one_line(model_file, tmp_path, capsys, edit, needle) -> None:
    import torch

    import nas

    payload = torch.load(model_file, weights_only=True)
    edit(payload)
    path = tmp_path / "edited.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match="edited.pt: " + needle.replace("(", r"\(").replace(")", r"\)")):
        nas.load_model(path)
    assert main(["train", str(path), "--epochs", "1", "--no-progress", "--out", str(tmp_path / "run")]) == 2
    assert needle in one_error_line(capsys)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("suffix", [".pt", ".pt2"])
def test_materialize_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, suffix) -> None:
    import nas.files

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    spec = tmp_path / "tiny.json"
    spec.write_text(json.dumps(genotype_json("mobilenetv3", TINY_NETWORK)))
    monkeypatch.setattr(nas.files.os, "fsync", full)
    out = tmp_path / f"model{suffix}"
    args = ["materialize", str(spec), "--out", str(out), "--num-classes", "10"]
    assert main(args) == 2  # .pt was a traceback (exit 1); .pt2 aborted the process (SIGABRT)
    assert f"{out}: no space left on the device" in one_error_line(capsys)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["tiny.json"]


@pytest.mark.parametrize("bad", [float("nan"), -70.0, "fast", True])
def test_a_latency_table_with_an_unusable_time_is_refused(tmp_path, bad) -> None:
    from evaluators.latency_table import TABLE_VERSION, LatencyTable

    path = tmp_path / "latency.json"
    table = LatencyTable(path)
    entries = {"block-a": {"mean_ms": 1.5}, "block-b": {"mean_ms": bad}}
    path.write_text(json.dumps({"version": TABLE_VERSION, "tables": {table.key: {"entries": entries}}}))
    with pytest.raises(ValueError, match="the entry 'block-b' of this machine's table has mean_ms"):
        len(table)


def test_a_latency_table_without_entries_is_written_whole(tmp_path) -> None:
    import torch

    from evaluators.latency_table import TABLE_VERSION, LatencyTable

    path = tmp_path / "latency.json"
    table = LatencyTable(path, min_repetitions=3, max_seconds=0.01, rounds=1)
    path.write_text(json.dumps({"version": TABLE_VERSION, "tables": {table.key: {"fingerprint": {}}}}))
    assert table.lookup("identity", lambda: (torch.nn.Identity(), [torch.zeros(1, 1)])) > 0
    table.save()  # a KeyError on "entries"
    assert "identity" in json.loads(path.read_text())["tables"][table.key]["entries"]


def test_a_latency_table_that_is_a_fifo_is_refused(tmp_path) -> None:
    from evaluators.latency_table import LatencyTable

    path = tmp_path / "latency.json"
    os.mkfifo(path)
    with pytest.raises(ValueError, match="a FIFO; expected a latency table"):
        len(LatencyTable(path))


def _image_folder(root: Path) -> None:
    from PIL import Image

    for name in ("cat", "dog"):
        (root / name).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (10, 10), (i * 30, 0, 0)).save(root / name / f"{i}.png")


@pytest.mark.parametrize("link", ["loop", "other class"])
def test_an_image_folder_reached_twice_through_a_link_is_refused(tmp_path, capsys, link) -> None:
    root = tmp_path / "images"
    _image_folder(root)
    if link == "loop":
        (root / "cat" / "again").symlink_to("..")  # cat/again/cat/again/...: 648 images a class instead of 8
    else:
        (root / "cat" / "dogs").symlink_to("../dog")  # the dogs read again, labelled cat
    args = ["search", "--space", "nasnet", "--dataset", "imagefolder", "--data-dir", str(root)]
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    assert "(a symbolic link loop, or a link to a folder already read)" in one_error_line(capsys)


def test_a_link_to_a_folder_outside_is_read_once(tmp_path) -> None:
    from evaluators.dataset_checks import imagefolder

    _image_folder(tmp_path / "elsewhere")
    root = tmp_path / "images"
    root.mkdir()
    (root / "cat").symlink_to(tmp_path / "elsewhere" / "cat")
    (root / "dog").symlink_to(tmp_path / "elsewhere" / "dog")
    imagefolder(str(root), False)


# ------------------------------------------------------------------------------------ Ctrl-C


def test_ctrl_c_while_the_commands_load_is_one_line(tmp_path) -> None:
    """A real SIGINT, sent while ``nas.cli`` is still importing its commands: the process signals itself
    from an import hook when ``nas.cli.app`` is looked up, so the moment does not depend on the
    machine's load (a timer thread starved on a busy machine fired only after the command ended). A
    pytest-xdist worker ignores SIGINT and its children inherit that, so the script restores what a
    terminal's process has: Python's own handler."""
    script = textwrap.dedent("""
        import os, signal, sys
        signal.signal(signal.SIGINT, signal.default_int_handler)

        class Interrupt:
            def find_spec(self, name, path=None, target=None):
                if name == "nas.cli.app":
                    os.kill(os.getpid(), signal.SIGINT)
                return None

        sys.meta_path.insert(0, Interrupt())
        from nas.cli import main
        sys.exit(main(["presets"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 130 and done.stderr.strip() == "nas: interrupted", done.stderr[-2000:]
