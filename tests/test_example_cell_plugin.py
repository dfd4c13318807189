"""The example cell plug-in (``examples/cell_plugin``) works installed, through entry points alone.

Installed once per module, offline and without touching the project's environment, as
``tests/test_example_plugin.py`` does (``pip install --no-deps --no-build-isolation --no-index
--target <tmp>`` from a copy of its source, then ``PYTHONPATH``). Then one subprocess runs the
plug-in's own suite against the install: the engine's ``SpaceContract`` on ``cell3``, its entry
point, and one 2-trial ``nas search --space cell3`` (the only search here). The file takes a few
seconds on two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "examples" / "cell_plugin"
TIMEOUT = 120  # seconds per subprocess


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of a subprocess that has the plug-in installed (in a temporary directory)."""
    base = tmp_path_factory.mktemp("cell_plugin")
    source, target = base / "source", base / "site"
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".*_cache"))
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
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
    assert (
        "cell3 = nas_cell_plugin.space:Cell3Space"
        in (target / "nas_cell_plugin-0.1.0.dist-info" / "entry_points.txt").read_text()
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(target), os.environ.get("PYTHONPATH")]))
    return env


def test_the_plugins_own_suite_passes_installed(plugin_env: dict[str, str]) -> None:
    """Contract tests, entry point and one tiny search, none skipped (a skip would mean the install was not seen)."""
    # Hypothesis's pytest plugin costs over a second at start-up here, and these tests do not use it.
    done = _run(
        ["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", str(PLUGIN / "tests")],
        plugin_env,
    )
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "passed" in summary and "skipped" not in summary, summary
