"""The public entry points: resolve a spec, materialize it, summarize it, save and load it.

A *spec* is a preset name (``nas.presets()``), a genotype object, a genotype JSON dict, the path
of a genotype JSON file, or a search run directory (its ``best.json``). Where a space has a
benchmark's notation (``nas.space.Notated``: NAS-Bench-201's ``|nor_conv_3x3~0|+|...|``), the
string itself, or a text file holding it, is a spec too; the string's form says which space it
names, and one that two spaces read alike is refused.

A user's genotype is refused with one ``ValueError`` naming the bad field before anything is
built: the file's size and nesting (``nas.serialization``), every field's type and range (each
space's ``BOUNDS``, checked while decoding), and in ``lower`` the network's size: a network of
more than ``MAX_PARAMETERS`` weights is refused after counting them on the meta device (no
memory, well under a second), because the field ranges bound each dimension, not their product.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from nas import space as space_registry
from nas.cell_ir import Network
from nas.errors import first_line, quoted
from nas.files import read_user_file
from nas.serialization import FORMAT_VERSION, MAX_FILE_BYTES, check_depth, genotype_json, loads
from nas.space import Notated, SearchSpace

if TYPE_CHECKING:  # torch is imported where a network is built: resolving and checking a spec needs none
    import torch  # lazy: specs resolve and check without torch
    from torch import nn  # lazy: specs resolve and check without torch

MODEL_FORMAT = "nas-model"
# 2**30 weights = 4 GiB of float32: EfficientNet-L2 (480M) fits, and so does NASNet-A Large with
# every op replaced by the heaviest of the search space (907M); 10x the largest preset (89M).
MAX_PARAMETERS = 2**30


@dataclass(frozen=True)
class Resolved:
    """A spec resolved to its space and genotype (``name`` is the preset name, if any)."""

    space: SearchSpace[Any]
    genotype: Any
    name: str | None = None

    def to_json(self) -> dict[str, Any]:
        return genotype_json(self.space.name, self.genotype)


def presets() -> dict[str, Any]:
    """Every published architecture, by name: ``{"efficientnet-b0": EfficientNetGenotype(...), ...}``."""
    found: dict[str, Any] = {}
    for name in space_registry.names():
        found.update(space_registry.get(name).presets())
    return dict(sorted(found.items()))


def space_of(genotype: Any) -> SearchSpace[Any]:
    """The registered space whose genotype class ``genotype`` is an instance of."""
    for name in space_registry.names():
        space = space_registry.get(name)
        if isinstance(genotype, getattr(space, "genotype_class", ())):
            return space
    raise ValueError(f"{type(genotype).__name__} is not the genotype of any registered space")


def load_genotype(data: Mapping[str, Any] | str | Path) -> Any:
    """A genotype from its JSON form (a dict, or a file path), or from an architecture string in a space's
    notation (the string itself, or a text file holding it); ``ValueError`` names the bad field."""
    if isinstance(data, str) and not Path(data).exists():
        read, _ = _read_notation(data)
        if read:
            return parse_notation(data)[1]  # one space reads it (two: refused as ambiguous)
    if isinstance(data, (str, Path)):
        raw = _read_file(data)
        text = _text(raw)
        if text is not None and text[:1] not in ("{", "[") and _notated_spaces():  # not JSON: a string?
            read, reasons = _read_notation(text)
            if not read:
                raise ValueError(f"{data}: neither genotype JSON nor an architecture string ({reasons})")
            return parse_notation(text, str(data))[1]
        data = loads(raw, str(data))  # size and nesting limits, see ``nas.serialization``
    elif isinstance(data, Mapping):
        check_depth(data, "genotype JSON")  # a dict built in Python gets the file's nesting limit too
    if not isinstance(data, Mapping):
        raise ValueError(f"genotype JSON: expected an object, got {type(data).__name__}")
    for key in ("space", "version", "genotype"):
        if key not in data:
            raise ValueError(f"{key}: missing field (expected {{'space', 'version', 'genotype'}})")
    unknown = sorted(set(data) - {"space", "version", "genotype"})
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field; valid: ['genotype', 'space', 'version']")
    version = data["version"]
    if isinstance(version, bool) or not isinstance(version, int):  # true == 1 and 1.0 == 1 in Python
        raise ValueError(f"version: expected the integer {FORMAT_VERSION}, got {version!r}")
    if version != FORMAT_VERSION:
        raise ValueError(f"version: unsupported genotype format version {version!r}; valid: [{FORMAT_VERSION}]")
    if not isinstance(data["space"], str):
        raise ValueError(f"space: expected a string, got {data['space']!r}")
    try:
        space = space_registry.get(data["space"])
    except ValueError as error:
        raise ValueError(f"space: {error}") from None
    return space.genotype_from_dict(data["genotype"])


def _read_file(path: str | Path) -> bytes:
    """A genotype file's bytes: a missing, unreadable or oversized file is a ``ValueError`` naming it."""
    return read_user_file(path, MAX_FILE_BYTES, f"a genotype file ({MAX_FILE_BYTES // 2**20} MiB at most; a few KB)")


def _text(raw: bytes) -> str | None:
    """The file's text without surrounding white space; None if it is not UTF-8 (the JSON reader says so)."""
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None


def _notated_spaces() -> list[SearchSpace[Any]]:
    """The registered spaces with a notation of their own (``nas.space.Notated``)."""
    return [space for name in space_registry.names() if isinstance(space := space_registry.get(name), Notated)]


def _read_notation(text: str) -> tuple[list[tuple[SearchSpace[Any], Any]], str]:
    """``(space, genotype)`` for every space whose notation reads ``text``, and why the others do not."""
    read, reasons = [], []
    for space in _notated_spaces():
        try:
            read.append((space, space.from_string(text)))  # type: ignore[attr-defined]  # Notated, checked
        except ValueError as error:
            reasons.append(f"{space.name}: {error}")
    return read, "; ".join(reasons) or "no registered space has an architecture notation"


def parse_notation(text: str, where: str | None = None) -> tuple[SearchSpace[Any], Any]:
    """The space and genotype an architecture string names in its space's notation (``nas.space.Notated``).

    Every registered space with a notation tries ``text``: ``ValueError`` if none reads it (with each
    one's reason) or if several do (the string alone would not say which network is meant).
    """
    read, reasons = _read_notation(text)
    label = where or (repr(text) if len(text) <= 80 else repr(text[:80]) + "...")
    if len(read) > 1:
        names = " and ".join(repr(space.name) for space, _ in read)
        raise ValueError(f"{label}: an architecture string of spaces {names} alike; use a genotype JSON file")
    if not read:
        raise ValueError(f"{label}: not an architecture string ({reasons})")
    return read[0]


def resolve(spec: Any) -> Resolved:
    """Resolve any accepted spec (see the module docstring)."""
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return Resolved(space_of(spec), spec)
    if isinstance(spec, Mapping):
        genotype = load_genotype(spec)
        return Resolved(space_of(genotype), genotype)
    if isinstance(spec, (str, Path)):
        known = presets()
        if isinstance(spec, str) and spec in known:
            return Resolved(space_of(known[spec]), known[spec], spec)
        path = Path(spec)
        if path.is_dir():
            if not (path / "best.json").is_file() and (path / "scaling.json").is_file():
                raise ValueError(
                    f"{path}: a nas scale run holds a family, not one network; `nas materialize "
                    f"{path} --phi K` builds member K (nas.scale.family.family_member in Python)"
                )
            if not (path / "best.json").is_file():
                raise ValueError(f"{path}: a directory without best.json is not a search run")
            path = path / "best.json"
        elif not path.exists():
            read, reasons = _read_notation(str(spec)) if isinstance(spec, str) else ([], "")
            if read:
                return Resolved(*parse_notation(str(spec)))  # one space reads it (two: refused as ambiguous)
            if reasons and _notated_spaces():
                raise ValueError(
                    f"{spec}: neither a preset nor a file nor an architecture string ({reasons}); "
                    f"presets: {', '.join(known)}"
                )
            raise ValueError(f"{spec}: neither a preset nor a file; presets: {', '.join(known)}")
        genotype = load_genotype(path)
        return Resolved(space_of(genotype), genotype)
    raise ValueError(f"cannot resolve a spec of type {type(spec).__name__}")


def lower(spec: Any, num_classes: int = 1000, **macro: Any) -> Network:
    """The IR of ``spec`` (``macro`` passes space-specific overrides, e.g. ``resolution``).

    This is what ``materialize`` and ``nas materialize`` build, so a network of more than
    ``MAX_PARAMETERS`` weights is refused here, counted on the meta device before any allocation.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes: must be a positive integer, got {num_classes!r}")
    resolved = resolve(spec)
    ir = resolved.space.lower(resolved.genotype, num_classes=num_classes, **macro)
    check_size(ir)
    return ir


def check_size(ir: Network, limit: int = MAX_PARAMETERS) -> None:
    """``ValueError`` if the network of ``ir`` has more than ``limit`` weights (counted on the meta device)."""
    from nas.compile import compile as compile_ir  # lazy: specs resolve and check without torch
    from nas.cost import build_on_meta, count_params  # lazy: specs resolve and check without torch

    params = count_params(build_on_meta(lambda: compile_ir(ir)))
    if params > limit:
        raise ValueError(
            f"genotype: the network has {params:,} parameters, more than the {limit:,} "
            f"({limit * 4 / 2**30:g} GiB of float32) that can be built"
        )


def materialize(spec: Any, num_classes: int = 1000, seed: int | None = None, **macro: Any) -> nn.Module:
    """An ordinary ``nn.Module`` for ``spec``, freshly initialised (``seed`` makes it repeatable)."""
    from nas.compile import compile as compile_ir  # lazy: specs resolve and check without torch

    return compile_ir(lower(spec, num_classes, **macro), seed=seed)


def summarize(spec: Any, num_classes: int = 1000, **macro: Any) -> dict[str, Any]:
    """Parameters, MACs and memory access (``nas.cost``; batch 1, at the spec's resolution), resolution
    and a per-stage table."""
    resolved = resolve(spec)  # a bad spec is refused before torch is imported
    ir = resolved.space.lower(resolved.genotype, num_classes=num_classes, **macro)
    from nas.compile import compile as compile_ir  # lazy: specs resolve and check without torch
    from nas.cost import build_on_meta, count_cost, count_params  # lazy: specs resolve and check without torch

    model = build_on_meta(lambda: compile_ir(ir))
    macs, by_module, memory_access = count_cost(model, ir.resolution)
    return {
        "name": resolved.name,
        "space": resolved.space.name,
        "params": count_params(model),
        "macs": macs,
        "memory_access": memory_access,
        "resolution": ir.resolution,
        "num_classes": num_classes,
        "stages": _stage_rows(ir, model, by_module),
        "genotype": resolved.to_json(),
    }


def _stage_rows(ir: Network, model: nn.Module, macs: dict[str, int]) -> list[dict[str, Any]]:
    """One row per named part of the network (``ir.parts()``), its parameters and MACs from the built ``model``."""
    from nas.cost import count_params  # lazy: specs resolve and check without torch

    return [
        {
            "stage": part.label,
            "blocks": part.blocks,
            "input_size": part.input_size,
            "out_channels": part.out_channels,
            "params": count_params(model.get_submodule(part.path)),
            "macs": macs.get(part.path, 0),
        }
        for part in ir.parts()
    ]


def save_model(
    module: nn.Module,
    spec: Any,
    path: str | Path | BinaryIO,
    num_classes: int,
    lowering: Mapping[str, Any] | None = None,
) -> None:
    """Write a ``.pt`` file: genotype JSON + state dict, loadable with ``weights_only=True``.

    ``lowering`` are the ``space.lower`` overrides the module was built with (``nas train --set``,
    its resolution); ``load_model`` builds the same network from them.
    """
    import torch  # lazy: specs resolve and check without torch

    payload = {
        "format": MODEL_FORMAT,
        "version": FORMAT_VERSION,
        "genotype": resolve(spec).to_json(),
        "num_classes": num_classes,
        "state_dict": module.state_dict(),
    }
    if lowering:
        payload["lowering"] = dict(lowering)
    torch.save(payload, path)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """The module saved by ``save_model``/``nas materialize --out FILE.pt``, weights loaded."""
    payload = read_model_file(path, map_location)
    module = materialize(payload["genotype"], num_classes=payload["num_classes"], **payload["lowering"])
    try:
        module.load_state_dict(payload["state_dict"])
    except (RuntimeError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: its weights do not fit its network ({first_line(error)})") from None
    return module


def read_model_file(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A ``.pt`` written by ``save_model``, every field checked: ``ValueError`` naming the file and the field
    (a file from elsewhere, or edited, can lack the genotype or say ``num_classes: 'ten'``).

    Returns ``genotype`` (resolved and validated, as JSON), ``num_classes``, ``state_dict`` and ``lowering``
    (``{}`` if the file has none).
    """
    import torch  # lazy: specs resolve and check without torch

    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except Exception as error:
        raise ValueError(f"{path}: not a model file ({error.__class__.__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: not a {MODEL_FORMAT} file (nas materialize --out FILE.pt writes one)")
    missing = [key for key in ("genotype", "num_classes", "state_dict") if key not in payload]
    if missing:
        raise ValueError(f"{path}: a {MODEL_FORMAT} file without its {missing[0]!r}")
    try:
        genotype = resolve(payload["genotype"]).to_json()
    except ValueError as error:
        raise ValueError(f"{path}: its genotype: {error}") from None
    classes = payload["num_classes"]
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"{path}: num_classes must be a positive integer, got {quoted(classes)}")
    state = payload["state_dict"]
    if not isinstance(state, Mapping) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: its state_dict is not a mapping of tensors")
    lowering = payload.get("lowering") or {}
    if not isinstance(lowering, dict) or not all(isinstance(key, str) for key in lowering):
        raise ValueError(f"{path}: its lowering settings are not a mapping of names")
    return {"genotype": genotype, "num_classes": classes, "state_dict": state, "lowering": lowering}
