"""Write a materialized network to disk: ``.pt`` (genotype + weights), ``.pt2`` (torch.export), ``.onnx``.

Every format is written to memory first, then to a temporary name beside the target, flushed and
renamed into place (``nas.files.atomic_write_bytes``), so a failure never leaves a partial file and
a full disk is one line naming it (torch's own file writer aborts the process on a full disk); an
existing file is only replaced when the caller says so.
"""

from __future__ import annotations

import importlib.util
import io
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.api import save_model
from nas.files import atomic_write_bytes

if TYPE_CHECKING:  # checking an output path must not wait for torch to import
    from torch import nn  # lazy: an output path is checked without torch

FORMATS = (".pt", ".pt2", ".onnx")


def check_output(path: str | Path, overwrite: bool = False) -> Path:
    """Validate an output path before anything is built; ``ValueError`` names the problem."""
    path = Path(path)
    if path.suffix not in FORMATS:
        raise ValueError(f"{path}: unknown output format {path.suffix or '(none)'!r}; valid: {list(FORMATS)}")
    if path.suffix == ".onnx" and importlib.util.find_spec("onnx") is None:
        raise ValueError("ONNX export needs the onnx extra: pip install 'nas-engine[onnx]'")
    if path.exists() and not overwrite:
        raise ValueError(f"{path}: already exists (pass --force to replace it)")
    if path.exists() and path.is_dir():
        raise ValueError(f"{path}: is a directory")
    if not path.parent.is_dir():
        raise ValueError(f"{path.parent}: no such directory")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"{path.parent}: not writable")
    return path


def write_model(
    module: nn.Module, spec: Any, path: str | Path, num_classes: int, resolution: int, overwrite: bool = False
) -> Path:
    """Write ``module`` in the format named by ``path``'s suffix (see ``FORMATS``)."""
    import torch  # lazy: an output path is checked without torch

    path = check_output(path, overwrite)
    module.eval()
    example = (torch.randn(1, 3, resolution, resolution),)
    buffer = io.BytesIO()
    if path.suffix == ".pt":
        save_model(module, spec, buffer, num_classes)
    elif path.suffix == ".pt2":
        torch.export.save(torch.export.export(module, example), buffer)
    else:
        buffer.write(_onnx_bytes(module, example))
    atomic_write_bytes(path, buffer.getvalue())
    return path


def _onnx_bytes(module: nn.Module, example: tuple[Any, ...]) -> bytes:
    """The ONNX file of ``module``, exported in a scratch folder (weights embedded: one self-contained file)."""
    import torch  # lazy: an output path is checked without torch

    with tempfile.TemporaryDirectory(prefix="nas-onnx-") as scratch:
        target = Path(scratch) / "model.onnx"
        try:
            torch.onnx.export(
                module,
                example,
                str(target),
                input_names=["image"],
                output_names=["logits"],
                external_data=False,
                verbose=False,
            )
            return target.read_bytes()
        except OSError as error:
            raise ValueError(f"{scratch}: cannot write the ONNX export ({error.strerror or error})") from None
