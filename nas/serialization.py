"""Genotype JSON: ``{"space": ..., "version": 1, "genotype": {...}}``, with typed validation.

Decoding walks the genotype dataclass's type hints (int, float, bool, str, Literal, tuples,
optionals, nested dataclasses), so every space gets the same strict checks: unknown or missing
fields, wrong types and out-of-range values raise ``ValueError`` naming the field path, e.g.
``genotype.normal.blocks[2].op_a``. No ``eval``, no pickle, and the input is never mutated.

A genotype is a few KB, and a user's file is refused before it can cost much: at most
``MAX_FILE_BYTES`` (4 MiB) are read, documents nested deeper than ``MAX_DEPTH`` (64) levels are
refused (without ``RecursionError``, however deep), a list field holds at most ``MAX_ITEMS``
(1024) items (so decoding stays in milliseconds; each space bounds its own lists tighter), and
``NaN``/``Infinity``, which Python's json accepts, are refused in every float field.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from nas.files import read_user_file

T = TypeVar("T")
FORMAT_VERSION = 1
MAX_FILE_BYTES = 4 * 2**20  # a genotype file is a few KB
MAX_DEPTH = 64  # nesting of objects and lists; a NASNet genotype document is 5 deep
MAX_ITEMS = 1024  # items of one list field; the spaces' own bounds are tighter (e.g. 64 blocks)


def to_dict(genotype: Any) -> dict[str, Any]:
    """The plain-data form of a genotype dataclass (tuples become lists)."""
    data: dict[str, Any] = json.loads(json.dumps(dataclasses.asdict(genotype)))
    return data


def decode_value(hint: Any, value: Any, path: str) -> Any:
    """``value`` checked against the type ``hint`` (converted where JSON differs, e.g. lists to tuples).

    The walk follows ``hint``, not ``value``: it recurses only as deep as the genotype's types nest
    (a NASNet genotype: 4 levels), whatever the data holds, so it cannot hit ``RecursionError``.
    """
    origin = get_origin(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return from_dict(hint, value, path)
    if origin is Literal:
        valid = get_args(hint)
        if value not in valid or isinstance(value, bool) != any(isinstance(v, bool) for v in valid):
            raise ValueError(f"{path}: {value!r} is not valid; valid: {list(valid)}")
        return value
    if origin in (Union, types.UnionType):
        options = get_args(hint)
        if value is None and type(None) in options:
            return None
        tagged = _tagged_options(options)
        if tagged is not None:  # dataclasses told apart by a one-value Literal field: decode the one named
            tag, by_value = tagged
            if not isinstance(value, Mapping):
                raise ValueError(f"{path}: expected an object, got {type(value).__name__}")
            if tag not in value:
                raise ValueError(f"{path}.{tag}: missing field; valid: {list(by_value)}")
            chosen = next(
                (cls for name, cls in by_value.items() if name == value[tag] and isinstance(value[tag], str)), None
            )
            if chosen is None:
                raise ValueError(f"{path}.{tag}: {value[tag]!r} is not valid; valid: {list(by_value)}")
            return from_dict(chosen, value, path)
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return decode_value(option, value, path)
            except ValueError as error:
                errors.append(str(error))
        raise ValueError(errors[0] if len(errors) == 1 else f"{path}: {value!r} matches none of {options}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{path}: expected a list, got {type(value).__name__}")
        args = get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            if len(value) > MAX_ITEMS:
                raise ValueError(f"{path}: at most {MAX_ITEMS} items, got {len(value)}")
            return tuple(decode_value(args[0], item, f"{path}[{i}]") for i, item in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{path}: expected {len(args)} items, got {len(value)}")
        return tuple(decode_value(a, item, f"{path}[{i}]") for i, (a, item) in enumerate(zip(args, value)))
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{path}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{path}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{path}: expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer too large for a float
            raise ValueError(
                f"{path}: expected a finite number, got an integer of {int(value).bit_length()} bits"
            ) from None
        if not math.isfinite(number):  # json.loads accepts NaN, Infinity and -Infinity (and 1e999)
            raise ValueError(f"{path}: expected a finite number, got {number!r}")
        return number
    if hint is str:
        if not isinstance(value, str):
            raise ValueError(f"{path}: expected a string, got {value!r}")
        return value
    raise TypeError(f"{path}: unsupported field type {hint!r}")


def from_dict(cls: type[T], data: Any, path: str = "genotype") -> T:
    """Build dataclass ``cls`` from plain data, validating every field (errors name the path)."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: expected an object, got {type(data).__name__}")
    hints = _type_hints(cls)  # type: ignore[arg-type]  # a class is hashable
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]  # a dataclass type
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{path}.{unknown[0]}: unknown field; valid: {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        if name not in data:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ValueError(f"{path}.{name}: missing field")
            continue
        kwargs[name] = decode_value(hints[name], data[name], f"{path}.{name}")
    try:
        return cls(**kwargs)
    except ValueError as error:  # semantic checks in __post_init__ name the field relative to cls
        raise ValueError(f"{path}.{error}" if ":" in str(error).split()[0] else f"{path}: {error}") from None


@functools.lru_cache(maxsize=64)
def _tagged_options(options: tuple[Any, ...]) -> tuple[str, dict[Any, type]] | None:
    """``(field, {value: dataclass})`` if every option is a dataclass with a field of that name typed
    as a one-value ``Literal`` (``family: Literal["dense"]``), the values all different; else None."""
    classes = [o for o in options if o is not type(None)]
    if len(classes) < 2 or not all(dataclasses.is_dataclass(o) for o in classes):
        return None
    for field in dataclasses.fields(classes[0]):
        values = []
        for option in classes:
            hint = _type_hints(option).get(field.name)
            if get_origin(hint) is not Literal or len(get_args(hint)) != 1:
                break
            values.append(get_args(hint)[0])
        else:
            if all(isinstance(v, str) for v in values) and len(set(values)) == len(values):
                return field.name, dict(zip(values, classes))
    return None


@functools.lru_cache(maxsize=256)
def _type_hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def check_depth(document: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """``ValueError`` naming ``where`` if ``document`` nests objects/lists deeper than ``limit``.

    Iterative, so no document (a cyclic one included) can raise ``RecursionError`` here.
    """
    containers = (Mapping, list, tuple)
    stack = [(document, 1)] if isinstance(document, containers) else []
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            raise ValueError(f"{where}: nested deeper than {limit} levels; a genotype needs a few")
        for child in value.values() if isinstance(value, Mapping) else value:
            if isinstance(child, containers):
                stack.append((child, depth + 1))


def genotype_json(space: str, genotype: Any) -> dict[str, Any]:
    """``{"space", "version", "genotype"}`` for ``genotype`` of ``space``."""
    return {"space": space, "version": FORMAT_VERSION, "genotype": to_dict(genotype)}


def read_json_file(path: str | Path) -> Any:
    """Parse a JSON file; a missing, malformed, oversized or too deeply nested file is a ``ValueError`` naming it."""
    path = Path(path)
    data = read_user_file(path, MAX_FILE_BYTES, f"a genotype file ({MAX_FILE_BYTES // 2**20} MiB at most; a few KB)")
    return loads(data, str(path))


def loads(text: str | bytes, where: str = "genotype JSON") -> Any:
    """Parse a JSON document with ``read_json_file``'s limits; errors are one ``ValueError`` naming ``where``."""
    if len(text) > MAX_FILE_BYTES:
        raise ValueError(f"{where}: larger than {MAX_FILE_BYTES // 2**20} MiB, the limit for a genotype (a few KB)")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"{where}: cannot read (not UTF-8 text)") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{where}: malformed JSON ({error.msg} at line {error.lineno})") from None
    except RecursionError:  # the parser gives up near the interpreter's limit, far above ours
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels; a genotype needs a few") from None
    except ValueError as error:  # e.g. an integer of more than 4300 digits
        raise ValueError(
            f"{where}: malformed JSON ({str(error).splitlines()[0] if str(error) else 'bad value'})"
        ) from None
    check_depth(document, where)
    return document
