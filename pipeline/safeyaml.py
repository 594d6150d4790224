"""Load a small YAML file (job, series.yaml, matrix job) with limits checked before anything
is built from it.

yaml.safe_load() is safe against code execution, not against size: aliases make a 359-byte
document expand into billions of nodes ("billion laughs"), and a few thousand nested brackets
overflow the recursive composer. Here the file is read with a byte limit, decoded as strict
UTF-8 (an error names the line), composed once into a node graph (aliases are shared nodes
there, not copies, so this stays small), and the size the graph *would* have once aliases are
expanded is computed with memoisation before the Python objects are constructed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import BadInput

MAX_BYTES = 1 << 20          # no job or series.yaml comes near 1 MiB
MAX_NODES = 100_000          # scalars + collections after alias expansion
MAX_DEPTH = 64               # nesting of mappings/sequences


def read_text(path: Path, what: str, max_bytes: int = MAX_BYTES) -> str:
    """The file as strict UTF-8; BadInput (naming the file and the line) when it cannot be
    read, is too big, or is not UTF-8."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        raise BadInput(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > max_bytes:
        raise BadInput(f"{path}: {what} is larger than {max_bytes >> 10} KiB: refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise BadInput(f"{path}:{line}: {what} is not UTF-8 (byte 0x{data[exc.start]:02x} "
                       f"at offset {exc.start})") from None


def expanded_size(root: yaml.Node, max_nodes: int = MAX_NODES,
                  max_depth: int = MAX_DEPTH) -> int:
    """Number of nodes once every alias is expanded (iterative, memoised per node object);
    ValueError as soon as it passes `max_nodes` or nesting passes `max_depth`."""
    sizes: dict[int, int] = {}
    # (node, depth, children pushed?) on an explicit stack: no recursion on hostile input
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    on_path: set[int] = set()
    while stack:
        node, depth, expanded = stack.pop()
        key = id(node)
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        children = _children(node)
        if not expanded:
            if key in sizes:
                continue
            if key in on_path:
                raise ValueError("a recursive alias (a node that contains itself)")
            on_path.add(key)
            stack.append((node, depth, True))
            stack.extend((child, depth + 1, False) for child in children
                         if id(child) not in sizes)
            continue
        on_path.discard(key)
        total = 1 + sum(sizes[id(child)] for child in children)
        if total > max_nodes:
            raise ValueError(f"expands to more than {max_nodes} nodes (aliases)")
        sizes[key] = total
    return sizes[id(root)]


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def load(path: Path, what: str, text: str | None = None,
         loader_class: type[yaml.SafeLoader] = yaml.SafeLoader) -> tuple[Any, yaml.Node | None]:
    """(data, node) of a YAML file; BadInput for anything over the limits or malformed.
    `loader_class` may be a SafeLoader subclass with other constructors (series.yaml's)."""
    if text is None:
        text = read_text(path, what)
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, None
        try:
            expanded_size(node)
        except ValueError as exc:
            raise BadInput(f"{path}: {what} refused: {exc}") from None
        return loader.construct_document(node), node
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f":{mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{path}{where}: YAML syntax error in {what}: {exc.problem or exc}"
                       ) from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: YAML error in {what}: {exc}") from None
    except RecursionError:
        raise BadInput(f"{path}: {what} refused: nested too deeply") from None
    finally:
        loader.dispose()
