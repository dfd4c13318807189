"""The example plug-in (``examples/plugin``) works installed, through entry points alone.

It is installed once, offline and without touching the project's environment, with
``pip install --no-deps --no-build-isolation --no-index --target <tmp>`` from a copy of its source
(so the build leaves nothing in the tree); subprocesses then see it through ``PYTHONPATH``, as
they would see a plug-in installed in their environment. Setuptools >= 70.1 builds the wheel
itself, so no ``wheel`` package and no network are needed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "plugin"
TIMEOUT = 300  # seconds per subprocess; the whole file takes well under a minute


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a subprocess that has the plug-in installed (in a temporary directory)."""
    base = tmp_path_factory.mktemp("plugin")
    source, target = base / "source", base / "site"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*_cache"))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1", "COLUMNS": "200"}
    installed = _run(
        [
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        env,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (target / "nas_example_plugin-0.1.0.dist-info" / "entry_points.txt").is_file()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    return env


def test_search_with_the_plugins_space_and_controller(plugin_env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = _run(
        [
            "-m",
            "nas.cli",
            "search",
            "--space",
            "resnet-basic",
            "--controller",
            "example-tpe",
            "--budget",
            "3",
            "--dataset",
            "synthetic",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ],
        plugin_env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    study = optuna.load_study(study_name="nas-search", storage=f"sqlite:///{out / 'study.db'}")
    finished = [
        t
        for t in study.get_trials(deepcopy=False)
        if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL)
    ]
    assert len(finished) == 3
    assert '"space": "resnet-basic"' in (out / "best.json").read_text()


def test_search_help_lists_the_plugin(plugin_env: dict[str, str]) -> None:
    done = _run(["-m", "nas.cli", "search", "--help"], plugin_env)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert re.search(r"--space SPACE one of: [^(]*\bresnet-basic\b", text), done.stdout
    assert re.search(r"--controller CONTROLLER one of: [^(]*\bexample-tpe\b", text), done.stdout


def test_the_plugins_own_suite_passes_installed(plugin_env: dict[str, str]) -> None:
    # Hypothesis's pytest plugin costs over a second at start-up here, and these tests do not use it.
    done = _run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", "examples/plugin/tests"],
        plugin_env,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "passed" in summary and "skipped" not in summary, summary  # the entry-point test ran too
