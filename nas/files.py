"""Files a run directory holds, written so that a crash or a full disk never leaves a partial one,
and files a user names, read within a bound.

Every write goes to a hidden temporary file beside the target, is flushed to disk (``fsync``)
and renamed over the target in one step; on any failure the temporary file is removed and the
target is left as it was. A full disk is reported as a ``ValueError`` naming the path and the
bytes needed, so the CLI says it in one line.

A file a user names (a config, a genotype, a table) is read by ``read_user_file``: a regular file
of at most a stated size, or a ``ValueError`` naming it; a FIFO would block forever and
``/dev/zero`` never ends.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path
from typing import Any


def read_user_file(path: str | Path, limit: int, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them, or a one-line ``ValueError``
    (missing, a directory, a FIFO or device, unreadable, or larger than ``limit``: ``what`` says
    what was expected, e.g. "a config file (a few KB)")."""
    path = Path(path)
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror or type(error).__name__})") from None
    try:
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "not a regular file"
            raise ValueError(f"{path}: {kind}; expected {what}")
        chunks, size = [], 0
        while size <= limit:  # never more than the limit, whatever the file's size says
            chunk = os.read(handle, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as error:
        raise ValueError(f"{path}: cannot read ({error.strerror or type(error).__name__})") from None
    finally:
        os.close(handle)
    if size > limit:
        raise ValueError(f"{path}: larger than {_size(limit)}, the limit for {what}")
    return b"".join(chunks)


def _size(count: int) -> str:
    return f"{count // 2**20} MiB" if count >= 2**20 else f"{count // 2**10} KiB"


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with open(partial, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ValueError(f"{path}: no space left on the device; {len(data):,} bytes are needed") from None
        raise ValueError(f"{path}: cannot write ({error.strerror or error})") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_torch_save(path: str | Path, obj: Any) -> None:
    """``torch.save`` to memory, then ``atomic_write_bytes``: the file is whole or absent, never torn."""
    import torch  # lazy: the run directory's JSON and text files are written without torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())
