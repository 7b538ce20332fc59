"""JSON Schema checks with locations and "did you mean" hints.

The schemas in `schemas/` are the single source of truth: the experiment format
(`experiment.schema.json`, which refers to the generated LLaMA-Factory argument schema
for `train:`) and the dataset registration (`dataset.schema.json`).

Two validators read them and must give one verdict: a compiled yes/no check
(fastjsonschema) for the common clean file, and jsonschema to report every error with
its place. Both read the same prepared copy (`prepared`): patterns are translated from
the schema's ECMA-262 dialect to Python's (`$` ends the text, so "6h\\n" does not match
`^[0-9]+h$`; `\\d` is ASCII), and both take "integer" strictly (2.0 is a number, not an
integer: LLaMA-Factory would pass it on as a float). Should they still disagree, the
refusal wins: lint never accepts what either path refuses.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import marshal
import re
from collections.abc import Callable, Iterable
from functools import cache
from importlib.util import MAGIC_NUMBER
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any

from render.errors import Finding
from render.propose.synonyms import SYNONYMS, expected_words, value_words
from render.propose.yamlsource import PathPart
from render.usercache import cache_dir, load_marshal, write_quietly

if TYPE_CHECKING:  # jsonschema loads only when a file is refused (the full pass's errors)
    import jsonschema
    from jsonschema import Draft202012Validator
    from referencing import Registry

LLAMAFACTORY_VERSION = "0.9.5"
LF_SCHEMA = f"llamafactory-{LLAMAFACTORY_VERSION}.schema.json"
OTHER_MODES = f"llamafactory-{LLAMAFACTORY_VERSION}.other-modes.json"
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"  # <repo>/schemas

Locate = Callable[[tuple[PathPart, ...], str, str], Finding]


@cache
def load_schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return data


SCHEMAS = ("experiment.schema.json", "dataset.schema.json", LF_SCHEMA)


def python_pattern(pattern: str) -> str:
    """An ECMA-262 regular expression (JSON Schema's dialect) as a Python one with the same
    meaning on our inputs: an unescaped `$` matches only at the very end (Python's `$`
    also matches before a final newline), and `\\d` / `\\w` are ASCII only."""
    ascii_classes = {"d": ("[0-9]", "0-9"), "w": ("[A-Za-z0-9_]", "A-Za-z0-9_")}
    out: list[str] = []
    in_class = False
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            nxt = pattern[i + 1]
            out.append(ascii_classes[nxt][in_class] if nxt in ascii_classes else c + nxt)
            i += 2
            continue
        if c == "[" and not in_class:
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        elif c == "$" and not in_class:
            c = "\\Z"
        out.append(c)
        i += 1
    return "".join(out)


_ORIGINAL: dict[str, str] = {}  # translated pattern -> as the schema writes it


def _translate(pattern: str) -> str:
    _ORIGINAL[python_pattern(pattern)] = pattern
    return python_pattern(pattern)


@cache
def prepared(name: str) -> dict[str, Any]:
    """The schema both validators read: `load_schema(name)` with Python patterns."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: _translate(v) if k == "pattern" and isinstance(v, str) else walk(v)
                    for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    out: dict[str, Any] = walk(load_schema(name))
    # Without "$schema", a `$ref` into this schema keeps the referring validator's class
    # (ours, with strict integers); with it, jsonschema would switch to the stock class.
    out.pop("$schema", None)
    return out


@cache
def _registry() -> Registry:
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    return Registry().with_resources(
        [(name, Resource.from_contents(prepared(name), default_specification=DRAFT202012))
         for name in SCHEMAS])


def _strict_integer(checker: Any, instance: Any) -> bool:
    return isinstance(instance, int) and not isinstance(instance, bool)


@cache
def validator(name: str) -> Draft202012Validator:
    import jsonschema
    from jsonschema import Draft202012Validator

    strict = jsonschema.validators.extend(
        Draft202012Validator,
        type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
    )
    checker: Draft202012Validator = strict(prepared(name), registry=_registry())
    return checker


def lf_meta() -> dict[str, Any]:
    meta: dict[str, Any] = load_schema(LF_SCHEMA).get("x-llamafactory", {})
    return meta


def lf_keys() -> set[str]:
    return set(load_schema(LF_SCHEMA)["properties"])


@cache
def other_modes() -> dict[str, str]:
    """Keys LLaMA-Factory parses only in a mode ftops does not run -> the hint saying so."""
    data = load_schema(OTHER_MODES)
    hints = {key: (f"{key} is a TrainingArguments field of transformers 4.x; the training "
                   "image runs transformers 5, where it was removed: drop it or use its "
                   "replacement") for key in data.get("transformers4", [])}
    hints.update({key: (f"{key} exists only in LLaMA-Factory's Megatron mode (USE_MCA=1, "
                        "mcore_adapter), which ftops does not launch: remove it")
                  for key in data.get("megatron", [])})
    return hints


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f"did you mean {matches[0]!r}?" if matches else ""


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."


def _error_to_finding(error: jsonschema.ValidationError, locate: Locate) -> list[Finding]:
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    validator_name = error.validator
    in_train = bool(path) and path[0] == "train"
    if validator_name == "additionalProperties" and isinstance(error.instance, dict):
        props = schema.get("properties", {})
        out = []
        for key in error.instance:
            if key in props:
                continue
            synonym = SYNONYMS.get(str(key)) if in_train else None
            if synonym is not None and synonym.target in props:
                hint = synonym.hint(str(key))
            else:
                hint = (other_modes().get(str(key), "") if in_train and len(path) == 1
                        else "") or did_you_mean(str(key), props)
            where = "LLaMA-Factory " + LLAMAFACTORY_VERSION if in_train else "this section"
            if not hint and not path and str(key) in lf_keys():
                hint = "LLaMA-Factory arguments go under train:"
            out.append(locate((*path, key), f"unknown key {key!r}: {where} has no such field",
                              hint or "remove it or check the spelling"))
        return out
    if validator_name == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        prop = schema.get("properties", {}).get(missing, {})
        hint = prop.get("description", "") if isinstance(prop, dict) else ""
        return [locate(path, f"missing required key {missing!r}", hint)]
    if validator_name == "type":
        want = error.validator_value
        hint = ""
        if isinstance(error.instance, str) and "number" in str(want):
            try:
                float(error.instance)
                hint = "a quoted number stays a string: remove the quotes"
            except ValueError:
                pass
        return [locate(path, f"expected {expected_words(want)}, got "
                       f"{value_words(error.instance)}", hint)]
    if validator_name == "enum":
        choices = [str(c) for c in error.validator_value]
        hint = did_you_mean(str(error.instance), choices) or "one of: " + ", ".join(choices[:12])
        return [locate(path, f"{_describe(error.instance)} is not an allowed value", hint)]
    if validator_name == "pattern":
        desc = schema.get("description", "")
        return [locate(path, f"{_describe(error.instance)} does not match the expected form",
                       desc or "must match "
                       + _ORIGINAL.get(str(error.validator_value), str(error.validator_value)))]
    if validator_name in ("anyOf", "oneOf"):
        from jsonschema.exceptions import best_match

        best = best_match(error.context or [])
        if best is not None:
            return _error_to_finding(best, locate)
    return [locate(path, error.message, schema.get("description", "") if schema else "")]


@cache
def fast_validator(name: str) -> Callable[[Any], Any]:
    """A compiled yes/no check of the same schema (fastjsonschema, ~50x faster than a
    full jsonschema pass): clean files, the common case, never pay for error reporting.

    fastjsonschema speaks draft-07; our schemas use only keywords that mean the same in
    draft-07 and 2020-12, so the `$ref`s are inlined and the dialect is restated for it.
    Its draft-07 type check takes 2.0 for an integer; draft-04's (the one we use) does not.
    """

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) >= {"$ref"} and str(node["$ref"]).endswith(".json"):
                ref = dict(inline(copy.deepcopy(prepared(node["$ref"]))))
                ref.update({k: v for k, v in node.items() if k != "$ref"})
                return ref
            return {k: inline(v) for k, v in node.items()
                    if k not in ("$schema", "$id", "$comment")}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return compiled_check(name.removesuffix(".json"), inline(prepared(name)))


def compiled_check(label: str, schema: dict[str, Any]) -> Callable[[Any], Any]:
    """fastjsonschema's yes/no check of `schema` (read as draft-07, integers taken
    strictly), generated once and kept in the user's cache as `<label>-<hash>.marshal`.

    The check raises fastjsonschema.JsonSchemaException for data it refuses. It is for
    schemas whose keywords mean the same in draft-07 and 2020-12, and being strict about
    integers it refuses no less than jsonschema does: a caller that gets a refusal asks
    jsonschema for the errors.
    """
    from fastjsonschema.draft04 import CodeGeneratorDraft04
    from fastjsonschema.draft07 import CodeGeneratorDraft07
    from fastjsonschema.ref_resolver import RefResolver

    class StrictIntegers(CodeGeneratorDraft07):
        def generate_type(self) -> None:
            CodeGeneratorDraft04.generate_type(self)  # type: ignore[no-untyped-call]

    schema = {**schema, "$schema": "http://json-schema.org/draft-07/schema#"}
    # What fastjsonschema.compile does, with our generator class. Generating the code
    # costs ~1 s for the LLaMA-Factory schema, so a fresh `ftops lint FILE` (pre-commit)
    # reads it from the cache when the schema and fastjsonschema are the same.
    resolver = RefResolver.from_schema(schema, handlers={}, store={})
    key = hashlib.sha256(json.dumps(
        [_FAST_CACHE_VERSION, fastjsonschema_version(), MAGIC_NUMBER.hex(), schema],
        sort_keys=True).encode()).hexdigest()[:32]
    cached = cache_dir(_CACHE) / f"{label}-{key}.marshal"
    code = load_marshal(cached)
    if not isinstance(code, CodeType):  # missing, broken, foreign, or not code
        generator = StrictIntegers(schema, resolver=resolver,  # type: ignore[no-untyped-call]
                                   use_default=False)
        code = compile(generator.global_state_code + "\n" + generator.func_code,
                       f"<fastjsonschema {label}>", "exec")
        write_quietly(cached, marshal.dumps(code))
    state: dict[str, Any] = {}
    exec(code, state)  # noqa: S102 - code generated from our own schema
    compiled: Callable[[Any], Any] = state[resolver.get_scope_name()]
    return compiled


_CACHE = "schema-checks"  # under the user cache folder (render.usercache)
_FAST_CACHE_VERSION = 1  # bump when StrictIntegers or inline() change what is generated


def fastjsonschema_version() -> str:
    from fastjsonschema.version import VERSION

    return str(VERSION)


def fast_error(name: str, data: Any) -> Exception | None:
    """None when the compiled check accepts `data`, else its exception."""
    import fastjsonschema

    try:
        fast_validator(name)(data)
    except fastjsonschema.JsonSchemaException as exc:
        return exc
    return None


def is_valid(name: str, data: Any) -> bool:
    return fast_error(name, data) is None


def full_errors(name: str, data: Any) -> list[jsonschema.ValidationError]:
    return list(validator(name).iter_errors(data))


def validate(name: str, data: Any, locate: Locate) -> list[Finding]:
    refused = fast_error(name, data)
    if refused is None:
        return []
    findings: list[Finding] = []
    for error in full_errors(name, data):
        findings.extend(_error_to_finding(error, locate))
    if not findings:  # the two paths disagree: the refusal wins, never silence
        parts = tuple(int(p) if p.isdigit() else p
                      for p in getattr(refused, "path", ["data"])[1:])
        message = re.sub(r"^data\b\.?", "", str(getattr(refused, "message", refused)))
        findings.append(locate(parts, f"schema: {message.strip() or 'invalid'}",
                               "see the schema in schemas/"))
    return findings
