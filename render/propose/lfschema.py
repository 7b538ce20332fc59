"""LLaMA-Factory's training arguments as a JSON Schema (the generator).

`build_schema()` walks the argument dataclasses that `llamafactory.hparams.get_train_args`
parses (ModelArguments, DataArguments, TrainingArguments, FinetuningArguments,
GeneratingArguments) and writes one JSON Schema that lint can use without importing torch.
`scripts/gen_llamafactory_schema.py` writes it to `schemas/llamafactory-<version>.schema.json`;
`tests/propose/test_lfschema.py` regenerates it and fails on drift.

Only `build_schema` imports llamafactory; importing this module is cheap. The deep check
(LLaMA-Factory's own parser in a child process) is `render.propose.deepcheck`.

`build_other_modes` lists the keys LLaMA-Factory accepts only in another mode than the
one ftops runs: with transformers 4.x (TrainingArguments fields that 5.x removed) or in
Megatron mode (`USE_MCA=1`, mcore_adapter's arguments). Those packages are not installed
here, so their sources are read as text (`dataclass_fields`); the result is
`schemas/llamafactory-<version>.other-modes.json` (`scripts/gen_other_modes.py`), and
lint's hint for such a key says which mode it belongs to instead of "check the spelling".
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import json
import math
import os
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from render.propose.deepcheck import LF_MODE_ENV
from render.propose.schema import LF_SCHEMA, LLAMAFACTORY_VERSION, OTHER_MODES, SCHEMA_DIR

SCHEMA_PATH = SCHEMA_DIR / LF_SCHEMA
OTHER_MODES_PATH = SCHEMA_DIR / OTHER_MODES
HELP_MAX_CHARS = 300

# JSON Schema type names in the order they are listed ("null" always last).
_TYPE_ORDER = ("array", "boolean", "integer", "number", "object", "string")
_SCALARS: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}


class _Unmappable(Exception):
    """A Python annotation with no clean JSON Schema equivalent (accept anything)."""


# --------------------------------------------------------------------------- schema


def _literal_enum(values: Iterable[Any]) -> tuple[list[str], list[Any]]:
    types_: list[str] = []
    enum_: list[Any] = []
    for v in values:
        if isinstance(v, enum.Enum):
            v = v.value if isinstance(v.value, str) else str(v.value)
        if v is None:
            types_.append("null")
        elif type(v) in _SCALARS:
            types_.append(_SCALARS[type(v)])
        else:
            raise _Unmappable(repr(v))
        if v not in enum_:
            enum_.append(v)
    return types_, enum_


def _map_type(tp: Any) -> tuple[list[str], list[Any] | None]:
    """(JSON types, enum values or None) for one annotation; raise _Unmappable if unclear."""
    if tp is type(None) or tp is None:
        return ["null"], None
    if tp is Any:
        raise _Unmappable("Any")
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        all_types: list[str] = []
        enum_: list[Any] | None = None
        free_types: list[str] = []  # types that admit any value of that type
        for arm in typing.get_args(tp):
            arm_types, arm_enum = _map_type(arm)
            all_types += arm_types
            if arm_enum is None:
                free_types += [t for t in arm_types if t != "null"]
            else:
                enum_ = (enum_ or []) + [v for v in arm_enum if v not in (enum_ or [])]
        if enum_ is not None:
            # Union[SomeEnum, str]: HF converts the str with SomeEnum(value) in
            # __post_init__, so only the enum's values are valid. A str arm therefore
            # does not widen the enum; any other free arm does: accept it by type.
            widening = [t for t in free_types if t != "string" or not _enum_is_strs(enum_)]
            if widening:
                return _dedupe(all_types), None
            if "null" in all_types and None not in enum_:
                enum_.append(None)
        return _dedupe(all_types), enum_
    if origin is typing.Literal:
        return _literal_enum(typing.get_args(tp))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _literal_enum(list(tp))
    if origin in (list, tuple, set, frozenset, Sequence) or tp in (list, tuple, set):
        # HfArgumentParser also accepts comma lists on the command line; in a dict the
        # value is passed through as is, and LLaMA-Factory splits strings itself.
        return ["array", "string"], None
    if origin is dict or tp is dict or origin is typing.Mapping:
        return ["object"], None
    if tp in _SCALARS:
        return [_SCALARS[tp]], None
    raise _Unmappable(repr(tp))


def _enum_is_strs(values: list[Any]) -> bool:
    return all(isinstance(v, str) or v is None for v in values)


def _dedupe(names: list[str]) -> list[str]:
    present = set(names)
    if "number" in present:
        present.discard("integer")  # "number" accepts integers
    out = [t for t in _TYPE_ORDER if t in present]
    if "null" in present:
        out.append("null")
    return out


def _json_default(f: dataclasses.Field[Any]) -> tuple[bool, Any]:
    if f.default is dataclasses.MISSING:
        return False, None
    value = f.default
    if isinstance(value, enum.Enum):
        value = value.value if isinstance(value.value, str) else str(value.value)
    if isinstance(value, float) and not math.isfinite(value):
        return False, None
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False, None
    if isinstance(value, tuple):
        value = list(value)
    return True, value


def _property(f: dataclasses.Field[Any], annotation: Any) -> dict[str, Any]:
    prop: dict[str, Any] = {}
    try:
        json_types, enum_ = _map_type(annotation)
    except _Unmappable:
        json_types, enum_ = [], None
    json_types = _dedupe(json_types)
    if json_types:
        prop["type"] = json_types[0] if len(json_types) == 1 else json_types
    if enum_ is not None:
        prop["enum"] = enum_
    help_text = f.metadata.get("help") if f.metadata else None
    if help_text:
        prop["description"] = " ".join(str(help_text).split())[:HELP_MAX_CHARS]
    has_default, default = _json_default(f)
    if has_default:
        prop["default"] = default
    return prop


def _literal_values(cls: type, name: str) -> list[Any]:
    hints = typing.get_type_hints(cls)
    _, values = _map_type(hints[name])
    if values is None:
        raise RuntimeError(f"{cls.__name__}.{name} is no longer a Literal; update lfschema")
    return [v for v in values if v is not None]


def build_schema() -> dict[str, Any]:
    """The schema as a dict, from the installed llamafactory (imports torch)."""
    for var in LF_MODE_ENV:
        if os.environ.get(var):
            raise RuntimeError(f"unset {var} before generating the schema")
    import llamafactory
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams import parser as lf_parser
    from llamafactory.hparams.finetuning_args import FinetuningArguments

    version = str(llamafactory.__version__)
    if version != LLAMAFACTORY_VERSION:
        raise RuntimeError(f"llamafactory {version} is installed, the schema is for "
                           f"{LLAMAFACTORY_VERSION}")

    properties: dict[str, Any] = {}
    owners: dict[str, str] = {}
    for cls in lf_parser._TRAIN_ARGS:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name in properties:  # HfArgumentParser itself would refuse duplicates
                raise RuntimeError(f"duplicate argument {f.name!r} in {cls.__name__}")
            properties[f.name] = _property(f, hints.get(f.name, f.type))
            owners[f.name] = cls.__name__

    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": LF_SCHEMA,
        "$comment": (
            "Generated by `python scripts/gen_llamafactory_schema.py` from llamafactory "
            f"{version}. Do not edit by hand."
        ),
        "title": f"LLaMA-Factory {version} training arguments",
        "type": "object",
        "additionalProperties": False,
        "properties": properties,
        "x-llamafactory": {
            "version": version,
            "templates": sorted(TEMPLATES),
            "stages": _literal_values(FinetuningArguments, "stage"),
            "finetuning_types": _literal_values(FinetuningArguments, "finetuning_type"),
            "dataclasses": owners,
        },
    }


def render_schema(schema: dict[str, Any] | None = None) -> str:
    """The schema file's exact text (stable: sorted keys, 2-space indent, final newline)."""
    return json.dumps(schema if schema is not None else build_schema(), indent=2,
                      sort_keys=True, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------ other modes


def dataclass_fields(source: str, classes: Iterable[str]) -> list[str]:
    """The init fields of the named dataclasses in a Python source text (read, never
    imported): `name: type = ...` lines in each class body, less `field(init=False)`."""
    wanted = set(classes)
    out: list[str] = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.ClassDef) or node.name not in wanted:
            continue
        for stmt in node.body:
            if not isinstance(stmt, ast.AnnAssign) or not isinstance(stmt.target, ast.Name):
                continue
            value = stmt.value
            if isinstance(value, ast.Call) and any(
                    k.arg == "init" and isinstance(k.value, ast.Constant) and k.value.value is False
                    for k in value.keywords):
                continue
            if not stmt.target.id.startswith("_"):
                out.append(stmt.target.id)
    return out


def build_other_modes(transformers4: dict[str, str], mca: dict[str, str],
                      sources: str) -> dict[str, Any]:
    """The other-modes file: each key LLaMA-Factory's parser has only with transformers 4.x
    or only in Megatron mode, given the source texts ({file name: text}) of transformers
    4.x's training_args.py + training_args_seq2seq.py and of mcore_adapter's
    training_args.py; `sources` says which versions they are (for the header)."""
    ours = set(json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))["properties"])
    hf4 = set(dataclass_fields(transformers4.get("training_args.py", ""), ["TrainingArguments"]))
    hf4 |= set(dataclass_fields(transformers4.get("training_args_seq2seq.py", ""),
                                ["Seq2SeqTrainingArguments"]))
    megatron = set(dataclass_fields(mca.get("training_args.py", ""), [
        "DistributingParallelArguments", "MegatronArguments", "TrainingArguments"]))
    return {
        "$comment": ("Generated by `python scripts/gen_other_modes.py` from " + sources
                     + ". Keys LLaMA-Factory " + LLAMAFACTORY_VERSION + " parses only in "
                     "another mode than ftops runs. Do not edit by hand."),
        "transformers4": sorted(hf4 - ours),
        "megatron": sorted(megatron - ours - hf4),
    }
