"""`dump_yaml` walks the data itself and asks PyYAML only for what it cannot tell at a
glance; the bytes must be exactly PyYAML's, whatever the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from render.yamldump import Literal, _pyyaml, dump_yaml

GOLDEN = Path(__file__).resolve().parent / "golden"

# Text that reaches every scalar style: plain words, YAML 1.1/1.2 look-alikes, indicators,
# spaces at the ends, control and non-ASCII characters, long keys.
_tricky = st.sampled_from([
    "", " ", "a b", " a", "a ", "-", "--spec", "---", "...", "- a", "? a", ": a", "a: b",
    "a:b", "a #b", "#a", "a#b", "&a", "*a", "!a", "|", ">", "'", '"', "%a", "@a", "`a",
    "[a]", "{a}", "a,b", "yes", "No", "ON", "y", "N", "~", "null", "Null", "true", "1",
    "0x1F", "0o17", "0b101", "1e5", "1_000", "1:20", "2024-01-01", ".5", ".inf", "-.Inf",
    ".nan", "=", "<<", "a\nb", "a\n", "\n", "a\tb", "\x85", "\u2028", "é", "日本",
    "\U0001f600", "a\\b", "x" * 130, "/mnt/data", "gs://b/p", "04ba56a3cf", "_a", "a.b",
    "0b101", "0b1z", "0x1f", "0o17", "0o9", "04e12", "1e", "1e5x", "12ab", "1a2b3c", "9z",
    "0", "00", "1st", "3e", "1E5", "1e+5",
])
_text = st.one_of(_tricky, st.text(max_size=12),
                  st.from_regex(r"[0-9][0-9a-z+.:_-]{0,8}", fullmatch=True),
                  st.from_regex(r"[A-Za-z_/:#'\"][A-Za-z0-9_./=@+,()\-: #'\"!%]{0,20}",
                                fullmatch=True))
_scalars = st.one_of(
    _text, st.integers(), st.booleans(), st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e-05, 1e16, 0.0, -0.0, 2.5e-300, 1.0]),
    _text.map(Literal), st.sampled_from([Literal("a\nb\n"), Literal("a\n\n  b"),
                                          Literal("x \ny"), Literal(" lead\nx\n\n")]),
)
_data = st.recursive(
    _scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(_text, inner, max_size=4)),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(_data, st.booleans())
def test_bytes_are_pyyamls(data: Any, sort_keys: bool) -> None:
    assert dump_yaml(data, sort_keys=sort_keys) == _pyyaml(data, sort_keys)


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(_text, _data, min_size=1, max_size=5), st.booleans())
def test_mappings_read_back_as_written(data: dict[str, Any], sort_keys: bool) -> None:
    text = dump_yaml(data, sort_keys=sort_keys)
    assert text == _pyyaml(data, sort_keys)
    assert yaml.safe_load(text) == data or _has_nan(data)


def _has_nan(data: Any) -> bool:
    if isinstance(data, float):
        return data != data
    if isinstance(data, dict):
        return any(_has_nan(v) for v in data.values())
    if isinstance(data, list):
        return any(_has_nan(v) for v in data)
    return False


def test_rendered_objects_are_written_as_pyyaml_writes_them() -> None:
    """The real shapes: every golden object, in build order and sorted."""
    docs = [d for f in sorted(GOLDEN.rglob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if isinstance(d, dict)]
    assert len(docs) > 20
    for doc in docs:
        for sort_keys in (False, True):
            assert dump_yaml(doc, sort_keys=sort_keys) == _pyyaml(doc, sort_keys)


def test_a_literal_text_is_a_block_a_reader_takes_back_exactly() -> None:
    text = Literal('dataset: "x"\nlist:\n- a\n\n  indented: 1\n')
    out = dump_yaml({"data": {"train.yaml": text, "n": 1}})
    assert out.startswith("data:\n  train.yaml: |\n    dataset:")
    assert yaml.safe_load(out) == {"data": {"train.yaml": text, "n": 1}}
    # A text a block cannot hold exactly stays one double-quoted line.
    assert dump_yaml({"k": Literal("trailing \nspace")}) == 'k: "trailing \\nspace"\n'
