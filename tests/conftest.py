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
