"""One writer per run directory (``RunLock``) and per study in a shared storage (``StudyGuard``).

The lock is ``fcntl.flock`` on ``DIR/.lock``: the kernel releases it when its process exits,
however it exits (``kill -9`` included), so a stale lock needs no clean-up and is simply taken
over by the next search. The file records the holder's pid, host and start time, which a second
search quotes when it is refused.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

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
            raise _in_use(self.path.parent, holder) from None
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

    @staticmethod
    def check_free(out: str | Path) -> None:
        """``ValueError`` naming the holder if another process holds the lock of ``out`` now: checked before a
        run builds its parts, so that a second writer is refused in a second, not after minutes of set-up
        (the lock itself is taken later, once there is something to write)."""
        holder = RunLock.holder(out)
        if holder is not None:
            raise _in_use(Path(out), holder)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    @staticmethod
    def holder(out: str | Path) -> str | None:
        """Who holds the lock of ``out`` now (``pid ... on host, since ...``), or None: nobody (taken and let go
        at once, without writing: ``nas show`` tells a running run from an interrupted one)."""
        path = Path(out) / LOCK_NAME
        try:
            handle = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(handle)
        finally:
            os.close(handle)  # closing releases a lock taken here
        return None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def _in_use(out: Path, holder: str) -> ValueError:
    return ValueError(
        f"{out} is in use by another run ({holder}); wait for it to finish, or stop it, then run the command again"
    )


def _read_holder(handle: int) -> str:
    try:
        holder = json.loads(os.pread(handle, 4096, 0) or b"{}")
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started"]))
        return f"pid {holder['pid']} on {holder['host']}, since {started}"
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet recorded its pid"


class StudyGuard:
    """One writer per study in a shared ``--storage``, where a file lock cannot reach.

    The holder records ``{pid, host, token, heartbeat}`` as a study attribute and refreshes the
    heartbeat every ``interval`` seconds from a daemon thread. Another search finds a heartbeat
    younger than ``stale_after`` and is refused, naming the holder; an older one was left by a
    process that died, and is taken over. Storages offer no compare-and-set here, so the claim is
    written, then read back after ``settle`` seconds: of searches that claimed at once, only the
    last writer still finds its own token, and the others back off. Best effort, documented as such:
    two claims further apart than ``settle`` but interleaved with each other's checks can both win.
    """

    KEY = "nas_writer"

    def __init__(self, study: Any, interval: float = 30.0, stale_after: float = 120.0, settle: float = 1.0) -> None:
        self.study, self.interval, self.stale_after, self.settle = study, interval, stale_after, settle
        self.token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "token": self.token, "heartbeat": time.time()}

    def _holder(self) -> dict[str, Any] | None:
        """Another live search's record, if there is one."""
        holder = self.study.user_attrs.get(self.KEY)
        if holder and holder.get("token") != self.token and time.time() - holder.get("heartbeat", 0) < self.stale_after:
            return holder
        return None

    def _refuse(self, holder: dict[str, Any]) -> ValueError:
        return ValueError(
            f"study {self.study.study_name!r} is in use by another search (pid {holder.get('pid')} "
            f"on {holder.get('host')}, alive {time.time() - holder['heartbeat']:.0f} s ago); "
            "wait for it to finish, or stop it"
        )

    def acquire(self) -> None:
        holder = self._holder()
        if holder:
            raise self._refuse(holder)
        self.study.set_user_attr(self.KEY, self._record())
        time.sleep(self.settle)
        holder = self._holder()
        if holder:  # another search claimed it at the same moment and wrote last
            raise self._refuse(holder)
        self._thread = threading.Thread(target=self._beat, name="nas-study-guard", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.study.set_user_attr(self.KEY, self._record())
            except Exception:
                logger.warning("could not refresh the study guard's heartbeat", exc_info=True)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.interval + 5)
        try:
            if self.study.user_attrs.get(self.KEY, {}).get("token") == self.token:  # never clear a successor's
                self.study.set_user_attr(self.KEY, {})
        except Exception:
            logger.warning("could not clear the study guard", exc_info=True)

    def __enter__(self) -> StudyGuard:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
