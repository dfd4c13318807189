"""A ``--config`` YAML file read within bounds: its size, the values it expands to, its keys.

YAML lets a few hundred bytes stand for billions of values (aliases of aliases: the "billion
laughs"), repeat a key so that the last one silently wins, and name a FIFO or ``/dev/zero``. A
settings file holds a few dozen values, so each of these is refused in one line naming the file:
a file that is not a regular one or is larger than ``MAX_CONFIG_BYTES``, a document that expands
to more than ``MAX_CONFIG_VALUES`` values or nests deeper than ``MAX_CONFIG_DEPTH``, an alias of
itself, and a key given twice in one mapping (a ``<<:`` merge may still be overridden, as YAML
means). The bound is checked on the composed nodes, before any value is built.
"""

from __future__ import annotations

from typing import Any

import yaml

from nas.errors import MAX_QUOTED
from nas.files import read_user_file

MAX_CONFIG_BYTES = 1 << 20  # a settings file is a few hundred bytes
MAX_CONFIG_VALUES = 10_000  # scalars, lists and mappings, counted with every alias expanded
MAX_CONFIG_DEPTH = 32


def read_config(path: str) -> Any:
    """The document of the YAML file ``path`` (None when empty), or a one-line ``ValueError``."""
    raw = read_user_file(path, MAX_CONFIG_BYTES, f"a YAML settings file ({MAX_CONFIG_BYTES // 2**20} MiB at most)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text; expected a YAML settings file") from None
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, path)
        return loader.construct_document(node)
    except _DuplicateKey as error:
        raise ValueError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: malformed YAML ({str(error).splitlines()[0][:MAX_QUOTED]})") from None
    except RecursionError:
        raise ValueError(f"{path}: nested deeper than {MAX_CONFIG_DEPTH} levels") from None
    finally:
        loader.dispose()


def _check_size(root: yaml.Node, path: str) -> None:
    """``ValueError`` if ``root`` expands to more than ``MAX_CONFIG_VALUES`` values, nests deeper than
    ``MAX_CONFIG_DEPTH`` or holds itself; each node is counted once (aliases share nodes), so it is linear."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node, depth: int) -> int:
        if depth > MAX_CONFIG_DEPTH:
            raise ValueError(f"{path}: nested deeper than {MAX_CONFIG_DEPTH} levels")
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise ValueError(f"{path}: an alias refers to the value that holds it")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        else:
            children = []
        for child in children:
            total += size(child, depth + 1)
            if total > MAX_CONFIG_VALUES:
                raise ValueError(
                    f"{path}: expands to more than {MAX_CONFIG_VALUES:,} values (aliases included); "
                    "a settings file holds a few dozen"
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root, 1)


class _DuplicateKey(ValueError):
    """A key given twice in one mapping."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key: the safe loader says so itself below
                continue
            if repeated:
                raise _DuplicateKey(
                    f"the key {str(key)[:MAX_QUOTED]!r} is given twice in one mapping (line "
                    f"{key_node.start_mark.line + 1}); keep one"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)
