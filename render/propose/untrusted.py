"""Reading files that come from outside the repository (configs to import, Board files,
dataset_info.json, run records): bounded in size, depth and node count, no YAML
aliases, no custom tags, and every failure a FatalError naming the file.

An imported file is untrusted: a billion-laughs alias bomb, a 100 000-deep list or a
gigabyte of YAML must fail fast with a clear message, never hang or crash the parser.
The event stream is checked before anything is built (PyYAML builds recursively).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from render.errors import FatalError
from render.propose.yamlsource import YamlError, parse

MAX_BYTES = 2 * 1024 * 1024
MAX_DEPTH = 32
MAX_NODES = 200_000
_STANDARD_TAG = "tag:yaml.org,2002:"

try:
    _Safe: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on the PyYAML build
    _Safe = yaml.SafeLoader


def read_text(path: Path, what: str, limit: int = MAX_BYTES) -> str:
    """The file's text; FatalError when it is missing, too large or not UTF-8."""
    try:
        if not path.is_file():
            raise FatalError(f"{path}: no such file ({what})")
        size = path.stat().st_size
        if size > limit:
            raise FatalError(f"{path}: {size} bytes is too large for {what} "
                             f"(at most {limit} bytes)")
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise FatalError(f"{path}: cannot read {what}: {exc.strerror}") from None
    if len(data) > limit:
        raise FatalError(f"{path}: too large for {what} (at most {limit} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise FatalError(f"{path}: {what} is not UTF-8 text") from None


def check_yaml_shape(text: str, name: str) -> None:
    """Refuse aliases, tags, excessive depth or node count, before any object is built."""
    depth = nodes = 0

    def line(event: yaml.Event) -> int:
        return event.start_mark.line + 1 if event.start_mark is not None else 1

    try:
        for event in yaml.parse(text, Loader=_Safe):
            if isinstance(event, yaml.AliasEvent):
                raise FatalError(f"{name}: line {line(event)}: YAML aliases "
                                 "(*name) are not accepted in an imported file; write the "
                                 "value out")
            tag = getattr(event, "tag", None)
            if tag is not None and not str(tag).startswith(_STANDARD_TAG):
                raise FatalError(f"{name}: line {line(event)}: the YAML tag "
                                 f"{tag} is not accepted in an imported file")
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise FatalError(f"{name}: line {line(event)}: nested "
                                     f"deeper than {MAX_DEPTH} levels; not a config file")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
            if isinstance(event, yaml.NodeEvent):
                nodes += 1
                if nodes > MAX_NODES:
                    raise FatalError(f"{name}: more than {MAX_NODES} values; not a config "
                                     "file")
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark else ""
        raise FatalError(f"{name}: {where}YAML syntax error: {exc.problem or exc.context}"
                         ) from None
    except yaml.YAMLError as exc:
        raise FatalError(f"{name}: YAML error: {exc}") from None


def load_yaml(path: Path, what: str, *, yaml12: bool = True) -> Any:
    """Parse an untrusted YAML file.

    yaml12: read numbers as LLaMA-Factory's CLI does (OmegaConf: `1e-4` is a float);
    False reads them as PyYAML's safe_load does (the Board: `5e-5` is a string).
    """
    text = read_text(path, what)
    return loads_yaml(text, str(path), yaml12=yaml12)


def loads_yaml(text: str, name: str, *, yaml12: bool = True) -> Any:
    check_yaml_shape(text, name)
    if yaml12:
        try:
            return parse(text, name).data
        except YamlError as exc:
            raise FatalError(exc.finding.format()) from None
    try:
        return yaml.load(text, Loader=_Safe)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise FatalError(f"{name}: YAML error: {exc}") from None


def load_json(path: Path, what: str, limit: int = MAX_BYTES) -> Any:
    return loads_json(read_text(path, what, limit), str(path), what)


def loads_json(text: str, name: str, what: str) -> Any:
    try:
        data = json.loads(text)
    except RecursionError:
        raise FatalError(f"{name}: {what} is nested too deeply") from None
    except ValueError as exc:
        raise FatalError(f"{name}: {what} is not valid JSON: {exc}") from None
    _check_depth(data, name, what)
    return data


def _check_depth(data: Any, name: str, what: str) -> None:
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FatalError(f"{name}: {what} is nested deeper than {MAX_DEPTH} levels")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)
