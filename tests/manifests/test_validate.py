"""The compiled check in front of jsonschema never changes a verdict: an object it
accepts, jsonschema accepts; one it refuses is reported with jsonschema's errors."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from lint_harness import make_workspace
from test_render import specs_for

from render.manifests.overlay import render
from render.manifests.validate import (
    _passes,
    crd_check,
    crd_validators,
    validate_manifests,
)

Edit = Callable[[dict[str, Any]], None]


def _container(js: dict[str, Any]) -> dict[str, Any]:
    pod = js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    container: dict[str, Any] = pod["containers"][0]
    return container


def _set(path: str, value: Any) -> Edit:
    def edit(js: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = js
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[last] = value
    return edit


EDITS: dict[str, Edit] = {
    "as rendered": lambda js: None,
    "quantity as an integer": lambda js: _container(js)["resources"]["limits"].update(
        cpu=180),
    "quantity as a list": lambda js: _container(js)["resources"]["limits"].update(
        cpu=["180"]),
    "integer written 2.0": _set("spec.replicatedJobs.0.replicas", 2.0),
    "integer as a string": _set("spec.replicatedJobs.0.replicas", "two"),
    "unknown field": _set("spec.sucessPolicy", {}),
    "enum": _set("spec.successPolicy.operator", "Some"),
    "null where an object is": _set("spec.network", None),
}
VALID = {"as rendered", "quantity as an integer", "integer written 2.0"}


@pytest.fixture(scope="module")
def jobset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = make_workspace(tmp_path_factory.mktemp("validate"))
    rendered = render(specs_for(root), root / "out", root)
    return next(d for r in rendered for d in r.manifests if d["kind"] == "JobSet")


@pytest.mark.parametrize("name", EDITS)
def test_compiled_check_agrees_with_jsonschema(jobset: dict[str, Any], name: str) -> None:
    doc = copy.deepcopy(jobset)
    EDITS[name](doc)
    api, kind = doc["apiVersion"], doc["kind"]
    full = list(crd_validators()[(api, kind)].iter_errors(doc))
    assert (full == []) == (name in VALID)
    check = crd_check(api, kind)
    assert check is not None
    if _passes(check, doc):
        assert full == []
    assert len(validate_manifests([doc])) == len(full)
