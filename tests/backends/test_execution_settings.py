"""Execution settings: every mistake is one line and exit 2, found before a run directory exists or Ray starts."""

from __future__ import annotations

import pytest

from nas import registry
from nas.backend import EvaluationJob, LocalBackend, make_backend
from nas.cli.app import main
from nas.search.settings import SearchSettings


def search(out, *extra, config=None):
    return [
        "search",
        "--space",
        "nasnet",
        "--controller",
        "random",
        "--budget",
        "1",
        "--dataset",
        "synthetic",
        "--epochs",
        "2",
        "--out",
        str(out),
        "--no-progress",
        *(["--config", str(config)] if config else []),
        *extra,
    ]


def one_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nas: error: "), lines
    return lines[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--workers", "2"],
            "workers: the local backend runs one evaluation at a time in this process; --workers needs",
        ),
        (["--early-stop", "asha"], "early_stop: the local backend runs one evaluation at a time"),
        (["--backend", "nope"], "backend: unknown backend 'nope'; valid: ["),
        (["--backend", "ray", "--workers", "0"], "workers: must be in [1, "),
        (["--backend", "ray", "--cpus-per-trial", "0"], "cpus_per_trial: must be a positive integer"),
        (["--backend", "ray", "--gpus-per-trial", "-1"], "gpus_per_trial: must be a number >= 0"),
        (["--backend", "ray", "--early-stop", "asha", "--repeats", "2"], "early_stop: a candidate evaluated --repeats"),
        (["--backend", "ray", "--early-stop", "asha", "--epochs", "1"], "ASHA needs evaluations of 2 epochs or more"),
        (["--backend", "ray", "--address", "127.0.0.1:1"], "address: nothing answers at 127.0.0.1:1"),
    ],
)
def test_flag_mistakes_are_one_line_and_write_nothing(tmp_path, capsys, extra, message):
    out = tmp_path / "run"
    assert main(search(out, *extra)) == 2
    assert message in one_line(capsys)
    assert not out.exists()


@pytest.mark.parametrize(
    "config, message",
    [
        ("backend: ray\nearly_stop: asha\nearly_stop_options: {eta: 3}\n", "'eta' is not an ASHA option"),
        ("backend: ray\nearly_stop: asha\nearly_stop_options: {grace_period: 2}\n", "grace_period 2 must be below"),
        (
            "backend: ray\nearly_stop: asha\nearly_stop_options: {reduction_factor: 1}\n",
            "reduction_factor must be a number > 1",
        ),
        ("backend: ray\nearly_stop_options: {grace_period: 1}\n", "early_stop_options: they set early stopping"),
        ("backend: ray\nbackend_options: {retry: 3}\n", "backend_options: 'retry' is not an option of backend 'ray'"),
        ("backend: ray\nbackend_options: {retries: -1}\n", "retries: must be an integer >= 0"),
        ("backend: ray\nworkers: two\n", "workers: expected int, got 'two'"),
        ("backend: ray\ngpus_per_trial: .nan\n", "gpus_per_trial: must be a number >= 0"),
    ],
)
def test_config_mistakes_are_one_line_and_write_nothing(tmp_path, capsys, config, message):
    path, out = tmp_path / "settings.yaml", tmp_path / "run"
    path.write_text(config)
    assert main(search(out, config=path)) == 2
    assert message in one_line(capsys)
    assert not out.exists()


def test_early_stopping_is_part_of_a_runs_identity(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(search(out)) == 0
    capsys.readouterr()
    assert main(search(out, "--backend", "ray", "--early-stop", "asha")) == 2  # refused before Ray starts
    assert "early_stop: None -> 'asha'" in one_line(capsys)


def test_scale_and_netadapt_take_the_execution_flags(tmp_path, capsys):
    assert main(["scale", "--base", "mobilenetv3-small", "--workers", "2", "--out", str(tmp_path / "s")]) == 2
    assert "--workers needs --backend ray" in one_line(capsys)
    assert (
        main(
            [
                "netadapt",
                "--from",
                "mobilenetv3-small",
                "--latency-ratio",
                "0.5",
                "--backend",
                "ray",
                "--config",
                str(_write(tmp_path, "early_stop: asha\n")),
                "--out",
                str(tmp_path / "n"),
            ]
        )
        == 2
    )
    assert "NetAdapt's short-term fine-tunes have no epochs to stop early" in one_line(capsys)
    assert not (tmp_path / "s").exists() and not (tmp_path / "n").exists()


def _write(tmp_path, text):
    path = tmp_path / "extra.yaml"
    path.write_text(text)
    return path


def test_backends_are_registered_plugins_and_the_local_one_runs_everything():
    assert {"local", "ray"} <= set(registry.backends.names())
    backend = make_backend(SearchSettings(out="x"))
    assert isinstance(backend, LocalBackend) and backend.workers == 1
    backend.check(EvaluationJob(build=dict, space=None, reward=float))  # nothing to refuse
    ray_backend = make_backend(SearchSettings(out="x", backend="ray", workers=3, backend_options={"retries": 0}))
    assert (ray_backend.name, ray_backend.workers, ray_backend.retries) == ("ray", 3, 0)
