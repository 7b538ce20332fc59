"""LLaMA-Factory's training arguments as a JSON Schema, and a deep check with its own parser.

`build_schema()` walks the argument dataclasses that `llamafactory.hparams.get_train_args`
parses (ModelArguments, DataArguments, TrainingArguments, FinetuningArguments,
GeneratingArguments) and writes one JSON Schema that lint can use without importing torch.
`scripts/gen_llamafactory_schema.py` writes it to `schemas/llamafactory-<version>.schema.json`;
`tests/test_lfschema.py` regenerates it and fails on drift.

`deep_check(train)` runs LLaMA-Factory's own parser on a copy of a train dict in a child
process (it imports torch, sets env vars, seeds RNGs and configures logging: none of that
may leak into the caller) and returns None or the parser's one-line error.

Only `build_schema` and the child process import llamafactory; importing this module is cheap.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LF_VERSION = "0.9.5"
SCHEMA_ID = f"llamafactory-{LF_VERSION}.schema.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
SCHEMA_PATH = REPO_ROOT / "schemas" / SCHEMA_ID
HELP_MAX_CHARS = 300
DEEP_CHECK_TIMEOUT_S = 180.0

# JSON Schema type names in the order they are listed ("null" always last).
_TYPE_ORDER = ("array", "boolean", "integer", "number", "object", "string")
_SCALARS: dict[type, str] = {bool: "boolean", int: "integer", float: "number", str: "string"}

# Environment variables that change which dataclasses LLaMA-Factory parses or how.
_LF_MODE_ENV = ("USE_MCA", "ALLOW_EXTRA_ARGS", "USE_RAY", "USE_KT", "USE_V1")


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
    for var in _LF_MODE_ENV:
        if os.environ.get(var):
            raise RuntimeError(f"unset {var} before generating the schema")
    import llamafactory
    from llamafactory.data.template import TEMPLATES
    from llamafactory.hparams import parser as lf_parser
    from llamafactory.hparams.finetuning_args import FinetuningArguments

    version = str(llamafactory.__version__)
    if version != LF_VERSION:
        raise RuntimeError(f"llamafactory {version} is installed, the schema is for {LF_VERSION}")

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
        "$id": SCHEMA_ID,
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


def write_schema(path: Path = SCHEMA_PATH) -> bool:
    """Write the schema; return True when the file changed."""
    text = render_schema()
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """The committed schema (no llamafactory import)."""
    result: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return result


# --------------------------------------------------------------------------- deep check


@dataclass
class DeepCheckResult:
    error: str | None  # None: LLaMA-Factory's parser accepted the config
    notes: list[str] = field(default_factory=list)  # what was changed before parsing
    seconds: float = 0.0


# Runs in the child. Reads {"configs": [...]} on stdin, writes one JSON line per config.
_CHILD = r"""
import json, os, sys, tempfile, traceback
req = json.load(sys.stdin)
out = sys.stdout
sys.stdout = sys.stderr  # the parser prints help on some errors: keep the protocol clean
def one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
try:
    import torch
    from llamafactory.hparams import get_train_args
except BaseException as exc:
    err = "cannot import llamafactory: " + one_line(exc)
    for _ in req["configs"]:
        out.write(json.dumps({"error": err, "notes": []}) + "\n")
    sys.exit(0)
try:
    import deepspeed  # noqa: F401
    has_deepspeed = True
except BaseException:
    has_deepspeed = False
cuda = torch.cuda.is_available()
for cfg in req["configs"]:
    notes = []
    try:
        if not isinstance(cfg, dict):
            raise TypeError(f"train must be a mapping, got {type(cfg).__name__}")
        cfg = dict(cfg)
        with tempfile.TemporaryDirectory(prefix="ftops-deepcheck-") as tmp:
            cfg["output_dir"] = os.path.join(tmp, "out")
            if not cuda:
                for key in ("bf16", "fp16", "pure_bf16"):
                    if cfg.get(key):
                        cfg[key] = False
                        notes.append(f"{key}: set to false for the check (no GPU here)")
            if cfg.get("deepspeed") is not None:
                if not has_deepspeed:
                    notes.append("deepspeed: removed for the check (not installed here)")
                else:
                    notes.append("deepspeed: removed for the check (needs a distributed launch)")
                cfg.pop("deepspeed")
            get_train_args(cfg)
        out.write(json.dumps({"error": None, "notes": notes}) + "\n")
    except BaseException as exc:
        out.write(json.dumps({"error": one_line(exc), "notes": notes}) + "\n")
    out.flush()
"""


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _LF_MODE_ENV}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # never look like a torchrun worker
    env.update({
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",  # same answer on every machine: CPU only
        "TOKENIZERS_PARALLELISM": "false",
        "LLAMAFACTORY_VERBOSITY": "WARN",
        "PYTHONWARNINGS": "ignore",
    })
    return env


def deep_check_many(trains: Sequence[Any], *, python: str | None = None,
                    timeout: float = DEEP_CHECK_TIMEOUT_S) -> list[DeepCheckResult]:
    """Check several train dicts with one child process (the import costs most of the time)."""
    if not trains:
        return []
    start = time.monotonic()
    payload = json.dumps({"configs": list(trains)}, default=str)
    with tempfile.TemporaryDirectory(prefix="ftops-deepcheck-cwd-") as cwd:
        try:
            proc = subprocess.run(
                [python or sys.executable, "-c", _CHILD],
                input=payload, capture_output=True, text=True, timeout=timeout,
                env=_child_env(), cwd=cwd, check=False,
            )
        except subprocess.TimeoutExpired:
            err = f"deep check timed out after {timeout:.0f}s"
            return [DeepCheckResult(err, seconds=time.monotonic() - start) for _ in trains]
        except OSError as exc:
            err = f"deep check could not start: {exc}"
            return [DeepCheckResult(err, seconds=time.monotonic() - start) for _ in trains]
    elapsed = time.monotonic() - start
    results: list[DeepCheckResult] = []
    for line in proc.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "error" in row:
            results.append(DeepCheckResult(row["error"], list(row.get("notes") or []), elapsed))
    if len(results) < len(trains):
        tail = " ".join(proc.stderr.strip().splitlines()[-1:]) or f"exit code {proc.returncode}"
        err = f"deep check crashed: {tail}"
        missing = len(trains) - len(results)
        results += [DeepCheckResult(err, seconds=elapsed) for _ in range(missing)]
    return results[: len(trains)]


def deep_check_report(train: Any, **kwargs: Any) -> DeepCheckResult:
    return deep_check_many([train], **kwargs)[0]


def deep_check(train: dict[str, Any]) -> str | None:
    """None when LLaMA-Factory's own parser accepts `train`, else its one-line error.

    Never raises for bad input. Runs in a child process on a copy with a throwaway
    output_dir; on a machine without a GPU bf16/fp16 are turned off, and `deepspeed`
    is removed (see `deep_check_report` for the notes).
    """
    return deep_check_report(train).error
