"""Writing YAML that every reader takes the same way: `dump_yaml`.

Block style, no anchors or aliases, keys in the order they were built (or sorted), every
scalar on one line (a string with a line break or another control character is
double-quoted with escapes, so no line of the output starts with a user's text), and
strings that YAML 1.2 readers (Kustomize, kubectl, OmegaConf inside LLaMA-Factory) would
take for a number, boolean or null quoted, although PyYAML (YAML 1.1) would write them
plain. Data is dumped, never templated: a user's string stays a YAML string. The one
exception is `Literal`: a multi-line text of ours (a file in a ConfigMap) written as a
literal block, as Kustomize writes it, so a reviewer reads it line by line.

PyYAML decides every byte (`_pyyaml`). Its representer is Python and costs ~2 ms for a
JobSet, which is most of a 1,000-experiment render, so `dump_yaml` walks the data itself
and asks PyYAML only for the scalars it cannot tell at a glance (each distinct one once,
then remembered); anything else (another type, a key PyYAML would not write as a simple
key, a root that is not a non-empty mapping or list) goes to PyYAML whole.
`tests/test_yamldump.py` checks the two agree byte for byte on generated data.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class Literal(str):
    """A multi-line text of ours written as a literal block (`key: |`), one source line
    per output line; PyYAML falls back to a double-quoted scalar when a block cannot
    hold it exactly (trailing spaces, control characters)."""

    __slots__ = ()


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style, no aliases, keys in the order we built them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# Plain scalars that YAML 1.2 readers (Kustomize, kubectl, OmegaConf) take for numbers,
# booleans or null although PyYAML (YAML 1.1) would write them unquoted: 1e5, 0o17...
_NOT_A_STRING_12 = re.compile(
    r"[-+]?(\.inf|\.nan|[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?|\.[0-9]+([eE][-+]?[0-9]+)?"
    r"|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)|true|false|yes|no|on|off|y|n|null|~",
    re.IGNORECASE,
)


# Characters that would make a multi-line or hard-to-read scalar: such a string is written
# double-quoted with escapes ("a\\nb"), on one line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _represent_str(dumper: Any, value: str) -> Any:
    if _CONTROL.search(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    if _NOT_A_STRING_12.fullmatch(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


def _represent_literal(dumper: Any, value: Literal) -> Any:
    if "\n" in value and not _CONTROL.search(value.replace("\n", "")):
        return dumper.represent_scalar("tag:yaml.org,2002:str", str(value), style="|")
    return _represent_str(dumper, str(value))


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(Literal, _represent_literal)


def _pyyaml(data: Any, sort_keys: bool) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=sort_keys, default_flow_style=False,
                     allow_unicode=False, width=2**31 - 1)  # never fold a scalar


class _Whole(Exception):
    """Something the walk leaves to PyYAML: dump the whole document with it."""


# Strings PyYAML writes plain and reads back as strings, told at a glance: a letter, '_'
# or '/' first (not a digit, '-', '.', a quote or another indicator), then words of
# these characters joined by single spaces or by colons not followed by a space (no
# ' #', ': ', quote, bracket or control character, nothing at either end); the words
# YAML 1.1 or 1.2 read as booleans or null are left to PyYAML.
_PLAIN = re.compile(r"[A-Za-z_/][A-Za-z0-9_./=@+,()-]*(?:[ :][A-Za-z0-9_./=@+,()-]+)*")
_WORDS = frozenset({"y", "n", "yes", "no", "true", "false", "on", "off", "null"})
# And lower-case letters and digits with a digit first (a run id, a hash) but a letter
# somewhere: plain unless YAML reads a number in it (1e5, 0b101, 0x1f, 0o17).
_DIGIT_FIRST = re.compile(r"[0-9][0-9a-z]*[a-z][0-9a-z]*")
_NUMBER_LIKE = re.compile(r"[0-9]+e[0-9]+|0[box].*")


def _plain(text: str) -> bool:
    """Whether PyYAML writes `text` plain, told at a glance (False: ask PyYAML)."""
    if _PLAIN.fullmatch(text):
        return text.lower() not in _WORDS
    return bool(_DIGIT_FIRST.fullmatch(text)) and not _NUMBER_LIKE.fullmatch(text)
_MEMO_MAX = 100_000
_values: dict[str, str] = {}
_keys: dict[str, str] = {}


def _value(text: str) -> str:
    if type(text) is Literal:
        raise _Whole  # a block scalar spans lines; only mapping values take one (below)
    found = _values.get(text)
    if found is not None:
        return found
    if _plain(text):
        found = text
    else:
        found = _pyyaml({"k": text}, False)[3:-1]
        if "\n" in found:
            raise _Whole
    if len(_values) >= _MEMO_MAX:
        _values.clear()
    _values[text] = found
    return found


def _key(text: Any) -> str:
    if type(text) is not str:
        raise _Whole
    found = _keys.get(text)
    if found is not None:
        return found
    if len(text) < 100 and _plain(text):
        found = text
    else:
        out = _pyyaml({text: 0}, False)
        if out.startswith("? ") or not out.endswith(": 0\n") or out.count("\n") != 1:
            raise _Whole  # a complex key (too long, or not a simple scalar)
        found = out[:-4]
    if len(_keys) >= _MEMO_MAX:
        _keys.clear()
    _keys[text] = found
    return found


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str or kind is Literal:
        return _value(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if value is None:
        return "null"
    if kind is float:
        if value != value:
            return ".nan"
        if value in (float("inf"), float("-inf")):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value).lower()
        return text.replace("e", ".0e", 1) if "." not in text and "e" in text else text
    raise _Whole


def _literal(text: Literal, indent: int) -> str:
    """A Literal as a mapping value at `indent`: ' |...' and its indented lines."""
    block = _pyyaml({"k": text}, False)[2:]  # " |\n  line\n..." or a quoted scalar
    if "\n" not in block[:-1]:
        return block
    if block.endswith("\n...\n"):
        raise _Whole  # kept trailing line breaks ('|+') end the document with '...'
    pad = " " * indent
    head, _, body = block.partition("\n")
    return head + "\n" + "".join(pad + line if line.strip() else line
                                 for line in body.splitlines(keepends=True))


def _mapping(data: dict[Any, Any], indent: int, first: str, out: list[str],
             sort_keys: bool) -> None:
    """Each key of `data` on its own line at `indent`; the first line starts with
    `first` instead of the indentation (a list item's '- ')."""
    pad = " " * indent
    lead = first
    items = sorted(data.items()) if sort_keys else data.items()
    keys, values = _keys, _values
    for k, v in items:
        key = keys.get(k) if type(k) is str else None
        if key is None:
            key = _key(k)
        kind = type(v)
        if kind is str:  # the most common case, inlined
            value = values.get(v)
            out.append(f"{lead}{key}: {_value(v) if value is None else value}\n")
        elif kind is dict:
            if v:
                out.append(f"{lead}{key}:\n")
                _mapping(v, indent + 2, " " * (indent + 2), out, sort_keys)
            else:
                out.append(f"{lead}{key}: {{}}\n")
        elif kind is list:
            if v:
                out.append(f"{lead}{key}:\n")
                _sequence(v, indent, out, sort_keys)
            else:
                out.append(f"{lead}{key}: []\n")
        elif kind is Literal:
            out.append(f"{lead}{key}:{_literal(v, indent)}")
        else:
            out.append(f"{lead}{key}: {_scalar(v)}\n")
        lead = pad


def _sequence(data: list[Any], indent: int, out: list[str], sort_keys: bool) -> None:
    pad = " " * indent
    for item in data:
        kind = type(item)
        if kind is dict and item:
            _mapping(item, indent + 2, pad + "- ", out, sort_keys)
        elif kind is list and item:
            mark = len(out)
            _sequence(item, indent + 2, out, sort_keys)
            out[mark] = pad + "- " + out[mark][indent + 2:]
        elif kind is dict:
            out.append(f"{pad}- {{}}\n")
        elif kind is list:
            out.append(f"{pad}- []\n")
        else:
            out.append(f"{pad}- {_scalar(item)}\n")


def dump_yaml(data: Any, *, sort_keys: bool = False) -> str:
    """`data` as YAML text, exactly as PyYAML writes it with the settings above."""
    out: list[str] = []
    try:
        if type(data) is dict and data:
            _mapping(data, 0, "", out, sort_keys)
        elif type(data) is list and data:
            _sequence(data, 0, out, sort_keys)
        else:
            raise _Whole
    except (_Whole, TypeError):  # TypeError: keys that do not sort (PyYAML keeps them)
        return _pyyaml(data, sort_keys)
    return "".join(out)
