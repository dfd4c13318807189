"""One writer per run directory: an exclusive lock held for the life of a search.

The lock is ``fcntl.flock`` on ``DIR/.lock``: the kernel releases it when its process exits,
however it exits (``kill -9`` included), so a stale lock needs no clean-up and is simply taken
over by the next search. The file records the holder's pid, host and start time, which a second
search quotes when it is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

LOCK_NAME = ".lock"


class RunLock:
    """``with RunLock(out):`` holds the lock of run directory ``out`` (which must exist)."""

    def __init__(self, out: str | Path) -> None:
        self.path = Path(out) / LOCK_NAME
        self._handle: int | None = None

    def acquire(self) -> None:
        """Take the lock or raise ``ValueError`` naming the process that holds it."""
        try:
            handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            raise ValueError(f"{self.path.parent}: cannot lock the run directory ({error.strerror})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(handle)
            os.close(handle)
            raise ValueError(f"{self.path.parent} is in use by another search ({holder}); wait for it to finish, "
                             "or stop it, then run the command again") from None
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}).encode()
        os.ftruncate(handle, 0)
        os.pwrite(handle, record, 0)
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            os.ftruncate(self._handle, 0)
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            os.close(self._handle)
            self._handle = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.release()


def _read_holder(handle: int) -> str:
    try:
        holder = json.loads(os.pread(handle, 4096, 0) or b"{}")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started"]))
        return f"pid {holder['pid']} on {holder['host']}, since {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet recorded its pid"
