"""JSON Schema checks with locations and "did you mean" hints.

The schemas in `schemas/` are the single source of truth: the experiment format
(`experiment.schema.json`, which refers to the generated LLaMA-Factory argument schema
for `train:`) and the dataset registration (`dataset.schema.json`).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from render.errors import Finding
from render.propose.synonyms import SYNONYMS, expected_words, value_words
from render.propose.yamlsource import PathPart

LLAMAFACTORY_VERSION = "0.9.5"
LF_SCHEMA = f"llamafactory-{LLAMAFACTORY_VERSION}.schema.json"
SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"  # <repo>/schemas

Locate = Callable[[tuple[PathPart, ...], str, str], Finding]


@cache
def load_schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / name).read_text(encoding="utf-8"))
    return data


@cache
def _registry() -> Registry:
    resources = [
        (name, Resource.from_contents(load_schema(name)))
        for name in ("experiment.schema.json", "dataset.schema.json", LF_SCHEMA)
    ]
    return Registry().with_resources(resources)


@cache
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(name), registry=_registry())


def lf_meta() -> dict[str, Any]:
    meta: dict[str, Any] = load_schema(LF_SCHEMA).get("x-llamafactory", {})
    return meta


def lf_keys() -> set[str]:
    return set(load_schema(LF_SCHEMA)["properties"])


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
                hint = did_you_mean(str(key), props)
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
                       desc or f"must match {error.validator_value}")]
    if validator_name in ("anyOf", "oneOf"):
        best = jsonschema.exceptions.best_match(error.context or [])
        if best is not None:
            return _error_to_finding(best, locate)
    return [locate(path, error.message, schema.get("description", "") if schema else "")]


@cache
def fast_validator(name: str) -> Callable[[Any], Any]:
    """A compiled yes/no check of the same schema (fastjsonschema, ~50x faster than a
    full jsonschema pass): clean files, the common case, never pay for error reporting.

    fastjsonschema speaks draft-07; our schemas use only keywords that mean the same in
    draft-07 and 2020-12, so the `$ref`s are inlined and the dialect is restated for it.
    """
    import copy

    import fastjsonschema

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) >= {"$ref"} and str(node["$ref"]).endswith(".json"):
                ref = dict(inline(copy.deepcopy(load_schema(node["$ref"]))))
                ref.update({k: v for k, v in node.items() if k != "$ref"})
                return ref
            return {k: inline(v) for k, v in node.items()
                    if k not in ("$schema", "$id", "$comment")}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    schema = inline(load_schema(name))
    schema["$schema"] = "http://json-schema.org/draft-07/schema#"
    compiled: Callable[[Any], Any] = fastjsonschema.compile(schema, use_default=False)
    return compiled


def is_valid(name: str, data: Any) -> bool:
    import fastjsonschema

    try:
        fast_validator(name)(data)
    except fastjsonschema.JsonSchemaException:
        return False
    return True


def validate(name: str, data: Any, locate: Locate) -> list[Finding]:
    if is_valid(name, data):
        return []
    findings: list[Finding] = []
    for error in validator(name).iter_errors(data):
        findings.extend(_error_to_finding(error, locate))
    return findings
