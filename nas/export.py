"""Write a materialized network to disk: ``.pt`` (genotype + weights), ``.pt2`` (torch.export), ``.onnx``.

Files are written to a temporary name beside the target and renamed into place, so a failure
never leaves a partial file, and an existing file is only replaced when the caller says so.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas.api import save_model

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


def _atomic(path: Path, write: Callable[[str], None]) -> None:
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    try:
        write(str(partial))
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def write_model(
    module: nn.Module, spec: Any, path: str | Path, num_classes: int, resolution: int, overwrite: bool = False
) -> Path:
    """Write ``module`` in the format named by ``path``'s suffix (see ``FORMATS``)."""
    import torch  # lazy: an output path is checked without torch

    path = check_output(path, overwrite)
    module.eval()
    example = (torch.randn(1, 3, resolution, resolution),)
    if path.suffix == ".pt":
        _atomic(path, lambda target: save_model(module, spec, target, num_classes))
    elif path.suffix == ".pt2":
        program = torch.export.export(module, example)
        _atomic(path, lambda target: torch.export.save(program, target))
    else:
        # Weights embedded (external_data=False): one self-contained file, safe to rename.
        def export_onnx(target: str) -> None:
            torch.onnx.export(
                module,
                example,
                target,
                input_names=["image"],
                output_names=["logits"],
                external_data=False,
                verbose=False,
            )

        _atomic(path, export_onnx)
    return path
