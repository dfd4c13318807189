"""Files a run directory holds, written so that a crash or a full disk never leaves a partial one.

Every write goes to a hidden temporary file beside the target, is flushed to disk (``fsync``)
and renamed over the target in one step; on any failure the temporary file is removed and the
target is left as it was. A full disk is reported as a ``ValueError`` naming the path and the
bytes needed, so the CLI says it in one line.
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any


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
