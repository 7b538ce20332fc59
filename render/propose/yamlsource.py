"""YAML documents that remember where every value came from.

One parse with PyYAML's C loader gives both the node tree (line and column of every
key and value) and the Python data; locations are looked up only when a problem has to
be reported, so clean files pay nothing for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from render.errors import FatalError, Finding

try:  # the C loader is ~6x faster; fall back where libyaml is missing
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Loader = yaml.SafeLoader



class _Loader12(_Loader):  # type: ignore[misc]
    """Reads numbers as LLaMA-Factory does (OmegaConf, YAML 1.2): 1e-4 is a float."""


_Loader12.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)

PathPart = str | int


def json_path(parts: tuple[PathPart, ...] | list[PathPart]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


@dataclass(eq=False)
class YamlDoc:
    """A parsed YAML file: its data, its node tree and its display name."""

    file: str
    data: Any
    node: yaml.Node | None

    def locate(self, parts: tuple[PathPart, ...] | list[PathPart]) -> tuple[int, int]:
        """1-based (line, column) of the deepest existing node on the path.

        For a mapping key the position of the key is returned (that is where a
        person looks); a missing key points at its parent mapping.
        """
        node = self.node
        if node is None:
            return (1, 1)
        line, col = node.start_mark.line + 1, node.start_mark.column + 1
        for part in parts:
            if isinstance(node, yaml.MappingNode) and isinstance(part, str):
                for key_node, value_node in node.value:
                    if key_node.value == part:
                        line = key_node.start_mark.line + 1
                        col = key_node.start_mark.column + 1
                        node = value_node
                        break
                else:
                    return (line, col)
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
                if part >= len(node.value):
                    return (line, col)
                node = node.value[part]
                line, col = node.start_mark.line + 1, node.start_mark.column + 1
            else:
                return (line, col)
        return (line, col)

    def finding(
        self,
        parts: tuple[PathPart, ...] | list[PathPart],
        message: str,
        hint: str = "",
        rule: str = "",
    ) -> Finding:
        line, col = self.locate(parts)
        return Finding(self.file, line, col, json_path(parts), message, hint, rule)


def _check_duplicate_keys(node: yaml.Node) -> None:
    """PyYAML keeps the last of two equal keys silently; we refuse them."""
    stack = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, yaml.MappingNode):
            seen: dict[str, yaml.Node] = {}
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode):
                    first = seen.get(key_node.value)
                    if first is not None:
                        raise yaml.constructor.ConstructorError(
                            None, None,
                            f"duplicate key {key_node.value!r} "
                            f"(first defined on line {first.start_mark.line + 1})",
                            key_node.start_mark)
                    seen[key_node.value] = key_node
                stack.append(value_node)
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def parse(text: str, file: str) -> YamlDoc:
    """Parse one YAML document; a syntax error becomes a FatalError with its location."""
    loader = _Loader12(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
        if node is not None:
            _check_duplicate_keys(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        raise YamlError(
            Finding(file, line, col, "$", f"YAML syntax error: {problem}",
                    "fix the YAML syntax (indentation, quotes, colons)", "yaml")
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(Finding(file, 1, 1, "$", f"YAML error: {exc}", "", "yaml")) from None
    finally:
        loader.dispose()
    return YamlDoc(file, data, node)


def load(path: Path, display: str | None = None) -> YamlDoc:
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YamlError(Finding(name, 1, 1, "$", "file is not UTF-8 text",
                                "save the file as UTF-8", "yaml")) from None
    except OSError as exc:
        raise FatalError(f"{name}: cannot read: {exc.strerror}") from None
    return parse(text, name)


class YamlError(FatalError):
    """A file that is not valid YAML; carries the Finding to report."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.format())
        self.finding = finding
