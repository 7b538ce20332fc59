"""YAML documents that remember where every value came from, parsed within bounds.

One parse with PyYAML's C loader gives both the node tree (line and column of every
key and value) and the Python data; locations are looked up only when a problem has to
be reported, so clean files pay nothing for them.

Bounded: a file is at most `MAX_FILE_BYTES`, nests at most `MAX_DEPTH` levels (checked on
the text before libyaml composes it: its composer recurses in C), and aliases may not
expand it past `MAX_NODES` values or `MAX_FILE_BYTES` characters (a 1 KB alias bomb
would otherwise become gigabytes in every later step). Only JSON values come out:
strings as keys; strings, finite numbers (integers within 64 bits), booleans, null,
lists and mappings as values. A date, `!!binary`, `!!set`, `.nan` or `1e999` is refused
here with its place, because everything downstream (hashing, ConfigMaps, LLaMA-Factory)
speaks JSON.
"""

from __future__ import annotations

import atexit
import hashlib
import marshal
import math
import os
import re
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from render.errors import FatalError, Finding
from render.usercache import cache_dir, load_marshal, write_quietly

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

MAX_FILE_BYTES = 1024 * 1024  # a ConfigMap holds at most 1 MiB: no input needs more
MAX_DEPTH = 32  # nesting levels (the deepest real input, a DeepSpeed config, uses ~4)
MAX_NODES = 20_000  # values after alias expansion (a large experiment has ~300)
INT_MIN, INT_MAX = -(2**63), 2**63 - 1  # what Kubernetes, JSON readers and numpy hold

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = frozenset(_TAG + t for t in ("str", "int", "float", "bool", "null"))
_KEY_TAGS = frozenset((_TAG + "str", _TAG + "merge"))
_NOT_JSON = {
    _TAG + "timestamp": "a date or time",
    _TAG + "binary": "binary data (!!binary)",
    _TAG + "set": "a set (!!set)",
    _TAG + "omap": "an ordered map (!!omap)",
    _TAG + "pairs": "a list of pairs (!!pairs)",
    _TAG + "value": "a YAML value key (=)",
}


def json_path(parts: tuple[PathPart, ...] | list[PathPart]) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


class YamlDoc:
    """A parsed YAML file: its data, its node tree and its display name.

    A file read from the parse cache has no node tree until something asks where a
    value is (`node`, `locate`): it is then composed from the text, once."""

    def __init__(self, file: str, data: Any, node: yaml.Node | None, text: str = "", *,
                 composed: bool = True) -> None:
        self.file = file
        self.data = data
        self.text = text  # the source (the secrets scan reads it)
        self._node = node
        self._composed = composed

    @property
    def node(self) -> yaml.Node | None:
        if not self._composed:
            loader = _Loader12(self.text)
            try:
                self._node = loader.get_single_node()
            finally:
                loader.dispose()
            self._composed = True
        return self._node

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


class _Refused(Exception):
    """A bound or a non-JSON value, found while checking the node tree."""

    def __init__(self, mark: yaml.Mark | None, path: tuple[PathPart, ...], message: str,
                 hint: str) -> None:
        super().__init__(message)
        self.mark, self.path, self.message, self.hint = mark, path, message, hint


_DEEP_HINT = "flatten the structure: experiment files nest a few levels"


def _depth_bound(text: str) -> int:
    """An upper bound of the nesting depth, from the text alone (microseconds): block
    nesting needs a column of indentation or a compact `- `/`? ` per level, flow nesting
    a bracket per level."""
    indent = max(map(len, re.findall(r"(?m)^[ \t?-]*", text)), default=0)
    return indent + 2 + text.count("[") + text.count("{")


def _check_depth_events(text: str, loader_cls: type) -> None:
    """The exact nesting depth, from libyaml's event stream (no composing, so nothing
    recurses); only run when `_depth_bound` cannot rule a deep file out."""
    loader = loader_cls(text)
    depth = 0
    try:
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                depth += 1
                if depth > MAX_DEPTH:
                    raise _Refused(event.start_mark, (),
                                   f"nested deeper than {MAX_DEPTH} levels", _DEEP_HINT)
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                depth -= 1
            elif event is None or kind is yaml.StreamEndEvent:
                return
    finally:
        loader.dispose()


def _scalar_problem(loader: Any, node: yaml.ScalarNode) -> tuple[str, str] | None:
    """(message, hint) when a scalar is not a JSON value we accept."""
    tag = node.tag
    if tag in _NOT_JSON:
        return (f"{_NOT_JSON[tag]} is not a JSON value",
                f'quote it to keep it as text: "{_shorten(node.value)}"')
    if tag not in _SCALAR_TAGS:
        return (f"value of type {tag!r} is not a JSON value",
                "use a string, number, boolean, null, list or mapping")
    if tag == _TAG + "float":
        value = loader.construct_yaml_float(node)
        if not math.isfinite(value):
            return (f"{_shorten(node.value)} is not a finite number",
                    "write a finite number: NaN, infinity and numbers too large for a "
                    "float are refused")
    elif tag == _TAG + "int":
        value = loader.construct_yaml_int(node)
        if not INT_MIN <= value <= INT_MAX:
            return (f"integer {_shorten(node.value)} does not fit in 64 bits",
                    f"use a number between {INT_MIN} and {INT_MAX}")
    return None


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_nodes(loader: Any, root: yaml.Node, has_anchors: bool) -> None:
    """One walk over the distinct nodes (document order): duplicate keys, keys that are
    not strings, values that are not JSON; then, when the file has anchors, the size and
    depth after alias expansion (memoized per node, so a bomb costs what it is written in).
    """
    seen: set[int] = set()
    aliases: list[tuple[yaml.Node, tuple[PathPart, ...], yaml.Mark]] = []
    stack: list[tuple[yaml.Node, tuple[PathPart, ...], yaml.Mark]] = [
        (root, (), root.start_mark)]
    while stack:
        node, path, mark = stack.pop()
        if id(node) in seen:
            aliases.append((node, path, mark))
            continue
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            problem = _scalar_problem(loader, node)
            if problem:
                raise _Refused(node.start_mark, path, *problem)
            continue
        if node.tag in _NOT_JSON:
            raise _Refused(node.start_mark, path, f"{_NOT_JSON[node.tag]} is not a JSON value",
                           "use a plain list or mapping")
        if isinstance(node, yaml.SequenceNode):
            for i in range(len(node.value) - 1, -1, -1):  # an alias item: at its list
                stack.append((node.value[i], (*path, i), node.start_mark))
            continue
        first: dict[str, yaml.Node] = {}
        children = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in _KEY_TAGS:
                shown = key_node.value if isinstance(key_node, yaml.ScalarNode) else "..."
                raise _Refused(key_node.start_mark, path,
                               f"key {_shorten(str(shown))!r} is not a string "
                               f"(YAML reads it as {key_node.tag.rsplit(':', 1)[-1]})",
                               f'quote the key: "{_shorten(str(shown))}"')
            earlier = first.get(key_node.value)
            if earlier is not None:
                raise _Refused(key_node.start_mark, (*path, key_node.value),
                               f"duplicate key {key_node.value!r} (first defined on line "
                               f"{earlier.start_mark.line + 1})", "keep one of the two")
            first[key_node.value] = key_node
            children.append((value_node, (*path, key_node.value), key_node.start_mark))
        stack.extend(reversed(children))
    if has_anchors:
        _check_expansion(root, aliases)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def _check_expansion(root: yaml.Node,
                     aliases: list[tuple[yaml.Node, tuple[PathPart, ...], yaml.Mark]]) -> None:
    """Size and depth of the tree that aliases expand to, memoized per node (post-order)."""
    size: dict[int, int] = {}
    chars: dict[int, int] = {}  # characters of the scalars it expands to
    depth: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        nid = id(node)
        kids = _children(node)
        if done:
            size[nid] = 1 + sum(size[id(k)] for k in kids)
            chars[nid] = (len(node.value) if isinstance(node, yaml.ScalarNode)
                          else sum(chars[id(k)] for k in kids))
            depth[nid] = 1 + max((depth[id(k)] for k in kids), default=-1)
            continue
        if nid in size:
            continue
        if nid in entered:  # entered, not finished: an ancestor of itself
            raise _Refused(node.start_mark, (), "a recursive alias (a value that contains "
                           "itself) is not a JSON value", "remove the alias")
        entered.add(nid)
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in size)
    if aliases and (size[id(root)] > MAX_NODES or chars[id(root)] > MAX_FILE_BYTES):
        _, path, mark = max(aliases, key=lambda a: (size[id(a[0])], chars[id(a[0])]))
        raise _Refused(mark, path, f"aliases expand this file to {size[id(root)]:,} values, "
                       f"{chars[id(root)]:,} characters (at most {MAX_NODES:,} values, "
                       f"{MAX_FILE_BYTES:,} characters): a YAML alias bomb is refused",
                       "write the values out, or use fewer aliases")
    if depth[id(root)] > MAX_DEPTH:
        raise _Refused(root.start_mark, (), f"aliases nest this file deeper than {MAX_DEPTH} "
                       "levels", _DEEP_HINT)


def parse(text: str, file: str) -> YamlDoc:
    """Parse one YAML document within the bounds above; a syntax error or a refused value
    becomes a YamlError with its location."""
    if len(text) * 4 > MAX_FILE_BYTES and len(text.encode("utf-8")) > MAX_FILE_BYTES:
        raise YamlError(Finding(file, 1, 1, "$", f"file is larger than {MAX_FILE_BYTES:,} "
                                "bytes", "experiment files are small; data lives in storage",
                                "yaml"))
    loader = None
    try:
        if _depth_bound(text) > MAX_DEPTH:
            _check_depth_events(text, _Loader12)
        loader = _Loader12(text)
        node = loader.get_single_node()
        if node is not None:
            _check_nodes(loader, node, "&" in text)
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        line, col = (exc.mark.line + 1, exc.mark.column + 1) if exc.mark else (1, 1)
        raise YamlError(Finding(file, line, col, json_path(exc.path), exc.message, exc.hint,
                                "yaml")) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        if "nesting depth" in problem:  # libyaml's own limit, met before ours
            raise YamlError(Finding(file, line, col, "$", f"nested deeper than {MAX_DEPTH} "
                                    "levels", _DEEP_HINT, "yaml")) from None
        raise YamlError(
            Finding(file, line, col, "$", f"YAML syntax error: {problem}",
                    "fix the YAML syntax (indentation, quotes, colons)", "yaml")
        ) from None
    except yaml.YAMLError as exc:
        raise YamlError(Finding(file, 1, 1, "$", f"YAML error: {exc}", "", "yaml")) from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDoc(file, data, node, text)


# The parse cache: what `parse` gave for each accepted file, so that a fresh `ftops lint`
# of a large tree (pre-commit, CI with its cache) does not parse it again. One pack per
# folder ({key: marshal bytes of the data}) in the user cache folder
# (`render.usercache`), read once per process when a file of that folder is loaded and
# written at exit when it gained entries: a first lint of 1,000 files writes ~50 packs,
# not 1,000 files (each costs ~1 ms on a slow disk). The key is the text, this module's
# own source and PyYAML's version (a change to either is a new key). Refused texts are
# never cached. Texts given to `parse` directly (git objects, imports) are not cached.
_CACHE = "parsed-yaml"
_MAX_PACK = 4096  # entries; a larger pack keeps only those this process used
_MAX_PACKS = 1000  # packs; beyond it, the least recently written half is removed


@cache
def _code_key() -> bytes:
    source = Path(__file__).read_bytes()
    return hashlib.sha256(source + yaml.__version__.encode() + _Loader.__name__.encode()
                          ).digest()


class _Pack:
    """The cached data of one folder's files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        loaded = load_marshal(path)
        self.entries: dict[str, bytes] = loaded if isinstance(loaded, dict) else {}
        self.used: set[str] = set()
        self.dirty = False

    def get(self, key: str) -> Any:
        blob = self.entries.get(key)
        if isinstance(blob, bytes):
            try:
                data = marshal.loads(blob)  # noqa: S302 - this user's own file (usercache)
            except (EOFError, ValueError, TypeError):
                return _MISSING
            self.used.add(key)
            return data
        return _MISSING

    def put(self, key: str, data: Any) -> None:
        self.entries[key] = marshal.dumps(data)  # a snapshot: callers may change `data`
        self.used.add(key)
        self.dirty = True


_MISSING = object()
_packs: dict[str, _Pack] = {}


def _pack(folder: Path) -> _Pack:
    name = hashlib.sha256(os.fsencode(os.path.abspath(folder))).hexdigest()[:32]
    pack = _packs.get(name)
    if pack is None:
        if not _packs:
            atexit.register(flush_cache)
        pack = _packs[name] = _Pack(cache_dir(_CACHE) / f"{name}.marshal")
    return pack


def flush_cache() -> None:
    """Write the packs that gained entries (run at exit)."""
    dirty = [p for p in _packs.values() if p.dirty]
    for pack in dirty:
        entries = pack.entries
        if len(entries) > _MAX_PACK:
            entries = {k: v for k, v in entries.items() if k in pack.used}
        write_quietly(pack.path, marshal.dumps(entries))
        pack.dirty = False
    if dirty:
        _prune(cache_dir(_CACHE))


def _prune(folder: Path) -> None:
    try:
        packs = [(e.stat().st_mtime, e.path) for e in os.scandir(folder)
                 if e.name.endswith(".marshal")]
        if len(packs) > _MAX_PACKS:
            for _, path in sorted(packs)[: len(packs) - _MAX_PACKS // 2]:
                os.unlink(path)
    except OSError:
        pass


def load(path: Path, display: str | None = None) -> YamlDoc:
    """Read and `parse` a file; a text accepted before comes from the parse cache: its
    data as this code made it, without parsing or checking it again (the node tree is
    composed only if a finding needs a location)."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise YamlError(Finding(name, 1, 1, "$", "file is not UTF-8 text",
                                "save the file as UTF-8", "yaml")) from None
    except OSError as exc:
        raise FatalError(f"{name}: cannot read: {exc.strerror}") from None
    pack = _pack(path.parent)
    key = hashlib.sha256(_code_key() + text.encode("utf-8", "surrogatepass")).hexdigest()
    data = pack.get(key)
    if data is not _MISSING:
        return YamlDoc(name, data, None, text, composed=False)
    doc = parse(text, name)
    pack.put(key, doc.data)
    return doc


class YamlError(FatalError):
    """A file that is not valid YAML; carries the Finding to report."""

    def __init__(self, finding: Finding) -> None:
        super().__init__(finding.format())
        self.finding = finding
