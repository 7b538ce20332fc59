"""A run's built objects made in Python: what `kubectl kustomize <overlay>` makes of it,
for the k8s-base components this project ships, checked against real Kustomize.

Kustomize spends ~15-19 ms of CPU on each run (most of it the components' JSON patches,
each a JSON round trip of the whole JobSet), which made a 1,000-experiment render take
~16-20 s on two cores. A run's overlay asks Kustomize for little: a ConfigMap generated
from the run's files (no name hash), the JobSet as ftops wrote it, the namespace, and
each component's `labels` and JSON 6902 `patches` on the JobSet. ftops does exactly that
here, with `jsonpatch` for the patches, when every component of a group (runs that share
namespace and components) uses nothing else; a component that does (`replacements`, a
strategic-merge patch, a label selector in a target, a patch file...) sends its group to
Kustomize, as before, and says why.

Kustomize stays the judge: every render builds one run of each group with `kubectl
kustomize` on its own overlay (the command a person would run) and compares the objects
with ftops's; where they differ, the whole group is built by Kustomize instead and the
render says where they differed. The objects are the same either way; the bytes of
`manifests.yaml` are ftops's YAML (keys sorted as Kustomize sorts them, files in the
ConfigMap as literal blocks), not Kustomize's quoting.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonpatch
import yaml

from render.yamldump import Literal

# What a component may hold for ftops to apply it itself (anything else: Kustomize).
_COMPONENT_KEYS = {"apiVersion", "kind", "labels", "patches"}
_LABEL_KEYS = {"pairs", "includeSelectors", "includeTemplates"}
_TARGET_KEYS = {"group", "version", "kind", "name"}
_PLAIN_SELECTOR = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # no regex characters


@dataclass(frozen=True)
class Patch:
    target: dict[str, str]
    patch: jsonpatch.JsonPatch

    def applies_to(self, obj: dict[str, Any]) -> bool:
        group, _, version = str(obj.get("apiVersion", "")).rpartition("/")
        have = {"group": group, "version": version, "kind": obj.get("kind"),
                "name": obj.get("metadata", {}).get("name")}
        return all(have[k] == v for k, v in self.target.items())


@dataclass(frozen=True)
class Component:
    path: str  # repository-relative
    labels: dict[str, str]
    patches: tuple[Patch, ...]


def load_component(repo_root: Path, rel: str) -> Component | str:
    """The component at `rel`, or why ftops leaves it to Kustomize."""
    try:
        data = yaml.safe_load((repo_root / rel / "kustomization.yaml").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        return f"cannot read it ({type(e).__name__})"
    if not isinstance(data, dict) or data.get("kind") != "Component":
        return "it is not a kustomize Component"
    extra = sorted(set(data) - _COMPONENT_KEYS)
    if extra:
        return f"it uses {', '.join(extra)}"
    labels: dict[str, str] = {}
    for entry in data.get("labels") or []:
        if (not isinstance(entry, dict) or set(entry) - _LABEL_KEYS
                or entry.get("includeSelectors") or entry.get("includeTemplates")
                or not isinstance(entry.get("pairs"), dict)
                or not all(isinstance(k, str) and isinstance(v, str)
                           for k, v in entry["pairs"].items())):
            return "a `labels` entry other than plain pairs on metadata"
        labels.update(entry["pairs"])
    patches: list[Patch] = []
    for entry in data.get("patches") or []:
        target = entry.get("target") if isinstance(entry, dict) else None
        if (set(entry) != {"target", "patch"} or not isinstance(target, dict)
                or not target or set(target) - _TARGET_KEYS
                or not all(isinstance(v, str) and _PLAIN_SELECTOR.fullmatch(v)
                           for v in target.values())
                or not isinstance(entry["patch"], str)):
            return "a patch other than an inline JSON 6902 patch on a plain target"
        try:
            ops = yaml.safe_load(entry["patch"])
        except yaml.YAMLError:
            return "a patch that is not YAML"
        if not isinstance(ops, list):
            return "a strategic-merge patch"
        try:
            patch = jsonpatch.JsonPatch(ops)
        except (jsonpatch.JsonPatchException, TypeError, AttributeError, KeyError):
            return "a patch that is not a JSON 6902 list of operations"
        patches.append(Patch(dict(target), patch))
    return Component(rel, labels, tuple(patches))


class Unbuildable(Exception):
    """A patch that does not apply: the group goes to Kustomize, whose error is the one
    to show."""


def build_objects(namespace: str, comps: Sequence[Component], jobset: dict[str, Any],
                  generator: dict[str, Any], files: dict[str, str]) -> list[dict[str, Any]]:
    """The ConfigMap and the JobSet of one run, in Kustomize's order. `jobset` is the
    run's JobSet as written to its overlay (patched in place); `generator` its
    kustomization's ConfigMap generator, whose files are read from `files`."""
    configmap: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": generator["name"],
                     "labels": dict(generator.get("options", {}).get("labels", {}))},
        "data": {name: Literal(files[name]) for name in generator["files"]},
    }
    objects = [configmap, jobset]
    for comp in comps:  # in order; in each, patches before labels, as Kustomize does
        for obj in objects:
            for patch in comp.patches:
                if patch.applies_to(obj):
                    try:
                        patch.patch.apply(obj, in_place=True)
                    except (jsonpatch.JsonPatchException,
                            jsonpatch.JsonPointerException) as e:
                        detail = str(e)  # may quote the whole object: its start only
                        detail = detail if len(detail) <= 100 else detail[:100] + "..."
                        raise Unbuildable(
                            f"{comp.path}: a patch does not apply to {obj.get('kind')} "
                            f"{obj['metadata'].get('name')} ({detail})") from None
            if comp.labels:
                obj["metadata"].setdefault("labels", {}).update(comp.labels)
    for obj in objects:
        obj["metadata"]["namespace"] = namespace
    return objects


def first_difference(ours: Any, theirs: Any, path: str = "") -> str | None:
    """The first path where two objects differ, or None when they are equal."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        for key in sorted(set(ours) | set(theirs), key=str):
            if key not in ours or key not in theirs:
                return f"{path}/{key}"
            found = first_difference(ours[key], theirs[key], f"{path}/{key}")
            if found:
                return found
        return None
    if isinstance(ours, list) and isinstance(theirs, list):
        if len(ours) != len(theirs):
            return f"{path} (length)"
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            found = first_difference(a, b, f"{path}/{i}")
            if found:
                return found
        return None
    # equal, and of one type (True == 1), a Literal counting as the str it is
    same = ours == theirs and (type(ours) is type(theirs)
                               or isinstance(ours, str) and isinstance(theirs, str))
    return None if same else path or "/"
