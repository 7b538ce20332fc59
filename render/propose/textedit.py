"""Edit a YAML file's text in place: remove a key, replace a scalar, append to a
mapping; every other byte (comments, blank lines, quoting, key order) stays as it was.

Edits are located with PyYAML's node marks, so they need the parsed node tree of the
same text (`yamlsource.parse`). New text is always produced by the YAML library
(`yaml.safe_dump`), never by pasting a user's string into YAML: a value can never turn
into structure.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class Edit:
    start: int  # character offsets into the text
    end: int
    new: str


def apply(text: str, edits: list[Edit]) -> str:
    """Apply non-overlapping edits (any order)."""
    out = text
    last = len(text) + 1
    for edit in sorted(edits, key=lambda e: e.start, reverse=True):
        if edit.end > last:
            raise ValueError("overlapping edits")
        out = out[: edit.start] + edit.new + out[edit.end:]
        last = edit.start
    return out


def find(node: yaml.Node | None, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    """(key node, value node) of `key` in a mapping node."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _line_start(text: str, index: int) -> int:
    return text.rfind("\n", 0, index) + 1


def _line_end(text: str, index: int) -> int:
    """Index just past the newline ending the line that holds `index`."""
    end = text.find("\n", index)
    return len(text) if end < 0 else end + 1


def remove_key(text: str, mapping: yaml.MappingNode, key: str) -> Edit | None:
    """Delete `key: value` from a mapping, with its own end-of-line comment."""
    pair = find(mapping, key)
    if pair is None:
        return None
    knode, vnode = pair
    if mapping.flow_style:
        items = mapping.value
        i = next(n for n, (k, _) in enumerate(items) if k is knode)
        start, end = knode.start_mark.index, vnode.end_mark.index
        if i + 1 < len(items):  # "a: 1, b: 2" -> remove up to the next key
            end = items[i + 1][0].start_mark.index
        elif i > 0:  # last item: remove from the end of the previous value
            start = items[i - 1][1].end_mark.index
        return Edit(start, end, "")
    start = _line_start(text, knode.start_mark.index)
    if text[start:knode.start_mark.index].strip():
        return None  # something else on the line before the key: leave it to a person
    # the value ends where its node ends; a block scalar's end mark is the next line
    end_index = vnode.end_mark.index
    if isinstance(vnode, yaml.ScalarNode) and vnode.style in ("|", ">"):
        end = end_index
    else:
        end = _line_end(text, max(end_index - 1, knode.end_mark.index))
    return Edit(start, end, "")


def replace_scalar(node: yaml.ScalarNode, new_text: str) -> Edit:
    return Edit(node.start_mark.index, node.end_mark.index, new_text)


def scalar_text(value: object) -> str:
    """A value as one YAML flow scalar, written by the YAML library."""
    dumped = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10**6)
    return dumped.removesuffix("\n...\n").rstrip("\n")


def append_to_mapping(text: str, mapping: yaml.MappingNode, entries: dict[str, object]
                      ) -> Edit | None:
    """Add entries at the end of a block mapping, indented like its keys."""
    if mapping.flow_style or not mapping.value:
        return None
    first_key = mapping.value[0][0]
    indent = first_key.start_mark.column
    last_value = mapping.value[-1][1]
    end_index = last_value.end_mark.index
    if isinstance(last_value, yaml.ScalarNode) and last_value.style in ("|", ">"):
        at = end_index
    else:
        at = _line_end(text, max(end_index - 1, 0))
    dumped = yaml.safe_dump(entries, sort_keys=False, default_flow_style=False,
                            allow_unicode=True, width=100)
    block = "".join(" " * indent + line if line.strip() else line
                    for line in dumped.splitlines(keepends=True))
    prefix = "" if at == 0 or text[at - 1] == "\n" else "\n"
    return Edit(at, at, prefix + block)
