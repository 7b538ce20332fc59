"""Validate rendered objects against the real schemas of the pinned upstream versions.

JobSet and Kueue objects: the openAPIV3Schema of their CRDs, read from the Go module
cache of the pinned versions (`go mod download`, cached by Go; nothing is copied into
this repository). Unknown fields are errors here (the API server would silently prune
them). Core kinds: kubernetes-validate's schemas for the matching Kubernetes version.
CEL rules and webhooks are not evaluated here; the server-side dry run on the local
control plane covers them. A ConfigMap over the API server's size limit is refused here.

A CRD object is first given to a compiled yes/no check of the same schema (fastjsonschema,
kept in the user's cache like lint's: ~0.2 ms a JobSet against ~3 ms); only an object it
refuses is walked by jsonschema, which gives the errors (and the verdict).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from render.errors import FatalError
from render.k8snames import CONFIGMAP_MAX_BYTES
from render.manifests.versions import JOBSET, KUBERNETES, KUEUE
from render.propose.schema import compiled_check

MODULES = {
    "jobset.x-k8s.io": ("sigs.k8s.io/jobset", JOBSET),
    "kueue.x-k8s.io": ("sigs.k8s.io/kueue", KUEUE),
}
CORE_VERSION = KUBERNETES.lstrip("v").rsplit(".", 1)[0]  # "1.36"


@cache
def module_dir(module: str, version: str) -> Path:
    go = shutil.which("go")
    if go is None:
        raise FatalError("validating JobSet/Kueue objects needs Go (to fetch their CRDs from "
                         "the Go module proxy); install Go or skip --validate")
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"],
                          capture_output=True, text=True, check=False)
    try:
        return Path(json.loads(proc.stdout)["Dir"])
    except (ValueError, KeyError):
        raise FatalError(f"cannot download {module}@{version}: {proc.stderr.strip()}") from None


def _to_json_schema(node: Any) -> Any:
    """Kubernetes structural schema -> JSON Schema (strict about unknown fields)."""
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "format"):
            continue
        if key == "properties":
            out[key] = {k: _to_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_json_schema(v) for v in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["type"] = ["integer", "string"]
        # the same as the type list; as a branch that fails for every string, it would
        # cost the compiled check an exception per quantity ("180", "1620Gi")
        if out.get("anyOf") == [{"type": "integer"}, {"type": "string"}]:
            del out["anyOf"]
    if node.get("nullable") and "type" in out:
        types = out["type"] if isinstance(out["type"], list) else [out["type"]]
        out["type"] = [*types, "null"]
    if ("properties" in out and "additionalProperties" not in out
            and not node.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> JSON Schema, for every served version of the pinned CRDs."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for group, (module, version) in MODULES.items():
        bases = module_dir(module, version) / "config" / "components" / "crd" / "bases"
        for path in sorted(bases.glob(f"{group}_*.yaml")):
            crd = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
            kind = crd["spec"]["names"]["kind"]
            for ver in crd["spec"]["versions"]:
                if not ver.get("served"):
                    continue
                schema = _to_json_schema(ver["schema"]["openAPIV3Schema"])
                schema.setdefault("properties", {})["metadata"] = {"type": "object"}
                out[(f"{group}/{ver['name']}", kind)] = schema
    return out


@cache
def crd_validators() -> dict[tuple[str, str], Draft202012Validator]:
    """(apiVersion, kind) -> validator, for every served version of the pinned CRDs."""
    return {key: Draft202012Validator(schema) for key, schema in crd_schemas().items()}


@cache
def crd_check(api: str, kind: str) -> Callable[[Any], Any] | None:
    """The compiled yes/no check of a served CRD version's schema (see the module), or
    None where fastjsonschema cannot compile it (a Kueue pattern starts with `(?i)`):
    such objects go to jsonschema alone."""
    from fastjsonschema import JsonSchemaDefinitionException

    try:
        return compiled_check(f"crd-{kind.lower()}-{api.replace('/', '-')}",
                              crd_schemas()[(api, kind)])
    except (JsonSchemaDefinitionException, re.error):
        return None


def configmap_bytes(doc: dict[str, Any]) -> int:
    """What the API server counts against CONFIGMAP_MAX_BYTES: keys and values of data
    (UTF-8) and binaryData (decoded)."""
    import base64

    total = 0
    for key, value in (doc.get("data") or {}).items():
        total += len(str(key).encode()) + len(str(value).encode())
    for key, value in (doc.get("binaryData") or {}).items():
        total += len(str(key).encode()) + len(base64.b64decode(str(value)))
    return total


def validate_object(doc: dict[str, Any]) -> list[str]:
    api, kind = str(doc.get("apiVersion", "")), str(doc.get("kind", ""))
    name = f"{kind}/{doc.get('metadata', {}).get('name', '?')}"
    if kind == "ConfigMap" and configmap_bytes(doc) > CONFIGMAP_MAX_BYTES:
        return [f"{name}: data holds {configmap_bytes(doc):,} bytes; the API server refuses "
                f"more than {CONFIGMAP_MAX_BYTES:,}"]
    group = api.split("/", 1)[0] if "/" in api else ""
    if group in MODULES:
        validator = crd_validators().get((api, kind))
        if validator is None:
            return [f"{name}: {api} {kind} is not served by the pinned CRDs"]
        check = crd_check(api, kind)
        if check is not None and _passes(check, doc):
            return []
        return [f"{name}: {'.'.join(str(p) for p in e.absolute_path) or '$'}: {e.message}"
                for e in validator.iter_errors(doc)]
    validator = core_validator(api, kind)
    if validator is None:
        return [f"{name}: no schema for {api} {kind} in Kubernetes {CORE_VERSION}"]
    return [f"{name}: {'.'.join(str(p) for p in e.absolute_path) or '$'}: {e.message}"
            for e in validator.iter_errors(doc)]


def _passes(check: Callable[[Any], Any], doc: dict[str, Any]) -> bool:
    from fastjsonschema import JsonSchemaException

    try:
        check(doc)
    except JsonSchemaException:
        return False
    return True


@cache
def core_validator(api: str, kind: str) -> Draft202012Validator | None:
    """kubernetes-validate's strict schema for a core kind, built once per kind (its own
    `validate()` reloads the schema files on every call: ~10 ms an object)."""
    from kubernetes_validate.utils import schema_contents
    from referencing import Registry, Resource

    version = f"v{CORE_VERSION}.0-local-strict"
    api_part = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api)
    try:
        schema = schema_contents(
            f"kubernetes-json-schema/{version}/{kind.lower()}-{api_part}.json", CORE_VERSION)
        definitions = schema_contents(f"kubernetes-json-schema/{version}/_definitions.json",
                                      CORE_VERSION)
    except (FileNotFoundError, OSError):
        return None
    registry: Registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions) @ registry
    return Draft202012Validator(schema, registry=registry)


def validate_manifests(docs: Sequence[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    for doc in docs:
        problems.extend(validate_object(doc))
    return problems
