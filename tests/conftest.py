"""Shared test settings.

One intra-op thread: the tests use tiny tensors, where OpenMP's thread barriers cost more than
they save, and on a loaded 2-core machine two spinning threads can slow a step down 100-fold.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture
def run_and_kill():
    """``run_and_kill(args, after_lines)``: start ``nas ARGS``, kill -9 it once ``after_lines`` trial lines
    have been printed; return how many it printed."""

    def run(args: list[str], after_lines: int) -> int:
        process = subprocess.Popen([sys.executable, "-m", "nas.cli", *args], stderr=subprocess.PIPE, text=True)
        seen, deadline = 0, time.monotonic() + 240
        while seen < after_lines and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen += line.startswith("trial ")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        return seen

    return run


# ------------------------------------------------------------------------------ running in parallel
# `make test` runs the suite on two pytest-xdist workers. A test file is one unit of work: its tests run on
# one worker, in file order, so a module-scoped fixture is built once (not once per worker) and a test may
# read what an earlier test of its file wrote into it (tests/nas/test_netadapt_cli.py does). The files named
# in ONE_WORKER with the same name are one unit: the files that start a Ray instance never run at once.
# (xdist's own `--dist loadgroup` and `xdist_group` marks do not group anything with pytest >= 9.2:
# https://github.com/pytest-dev/pytest-xdist/issues/1386.)

ONE_WORKER = {"tests/backends/test_ray_backend.py": "ray", "tests/nas/test_netadapt_cli.py": "ray"}


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist: without it, never called
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Whole files (and ONE_WORKER's groups of files) to a worker, in collection order, for ``-n N`` with
    ``--dist`` left out (``load``), ``loadfile`` or ``loadgroup``; any other ``--dist`` is xdist's own."""
    if config.getvalue("dist") not in ("load", "loadfile", "loadgroup"):
        return None
    from xdist.scheduler import LoadScopeScheduling  # lazy: only the xdist controller schedules

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return ONE_WORKER.get(path, path)

    # Collection order, not xdist's "most tests first": that would leave the files of few slow tests for last.
    config.option.loadscopereorder = False
    return FileScheduling(config, log)
