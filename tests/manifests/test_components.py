"""ftops applies a k8s-base component itself only when it uses what ftops models (plain
labels, inline JSON 6902 patches on plain targets); anything else is Kustomize's, with the
reason said. What it applies must equal what Kustomize builds, for every RFC 6902 op."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from lint_harness import make_workspace

from render.manifests.components import Component, load_component
from render.manifests.kustomize import kubectl
from render.manifests.overlay import render
from render.manifests.runspec import RunSpec
from render.propose.experiment import Workspace
from render.propose.lint import require_clean

HEAD = "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n"
PATCH = """patches:
  - target: {target}
    patch: |-
      {ops}
"""


def _component(tmp_path: Path, body: str) -> Component | str:
    (tmp_path / "c").mkdir(exist_ok=True)
    (tmp_path / "c" / "kustomization.yaml").write_text(HEAD + body)
    return load_component(tmp_path, "c")


@pytest.mark.parametrize(("body", "reason"), [
    ("replacements: []\n", "it uses replacements"),
    ("commonLabels: {a: b}\n", "it uses commonLabels"),
    ("resources: [x.yaml]\n", "it uses resources"),
    ("labels:\n  - pairs: {a: b}\n    includeSelectors: true\n", "labels"),
    ("labels:\n  - pairs: {a: b}\n    includeTemplates: true\n", "labels"),
    ("labels:\n  - pairs: {a: b}\n    fields: [{path: spec/x}]\n", "labels"),
    ("labels:\n  - pairs: {a: 1}\n", "labels"),
    (PATCH.format(target="{kind: JobSet}", ops="spec: {suspend: false}"),
     "a strategic-merge patch"),
    (PATCH.format(target="{kind: 'Job.*'}", ops="- {op: remove, path: /spec}"),
     "plain target"),
    (PATCH.format(target="{kind: JobSet, labelSelector: 'a=b'}",
                  ops="- {op: remove, path: /spec}"), "plain target"),
    ("patches:\n  - path: patch.yaml\n", "plain target"),
    (PATCH.format(target="{kind: JobSet}", ops="- {op: frobnicate, path: /spec}"),
     "not a JSON 6902 list"),
    (PATCH.format(target="{kind: JobSet}", ops="- {op: add}"), "not a JSON 6902 list"),
    (PATCH.format(target="{kind: JobSet}", ops="- [unclosed"), "not YAML"),
])
def test_what_ftops_does_not_model_is_left_to_kustomize(tmp_path: Path, body: str,
                                                       reason: str) -> None:
    got = _component(tmp_path, body)
    assert isinstance(got, str) and reason in got


def test_a_component_ftops_models(tmp_path: Path) -> None:
    body = ("labels:\n  - pairs: {team: ml}\n    includeSelectors: false\n"
            + PATCH.format(target="{group: jobset.x-k8s.io, kind: JobSet}",
                           ops="- {op: replace, path: /spec/suspend, value: true}"))
    got = _component(tmp_path, body)
    assert isinstance(got, Component)
    assert got.labels == {"team": "ml"} and len(got.patches) == 1
    assert "cannot read it" in str(load_component(tmp_path, "missing"))


def test_every_patch_operation_builds_as_kustomize_builds_it(tmp_path: Path) -> None:
    """add, replace, remove, copy, move and test, on the JobSet of every shipped
    experiment: ftops's objects equal `kubectl kustomize <overlay>`'s."""
    root = make_workspace(tmp_path)
    common = root / "k8s-base/components/jobset-common/kustomization.yaml"
    common.write_text(common.read_text() + """\
  - target:
      kind: JobSet
    patch: |-
      - op: test
        path: /spec/suspend
        value: true
      - op: replace
        path: /spec/failurePolicy/maxRestarts
        value: 7
      - op: remove
        path: /spec/ttlSecondsAfterFinished
      - op: copy
        from: /metadata/labels/ftops.dev~1run-id
        path: /metadata/annotations/copied
      - op: move
        from: /metadata/annotations/copied
        path: /metadata/annotations/moved
      - op: add
        path: /spec/replicatedJobs/0/template/spec/template/spec/volumes/0
        value: {name: first, emptyDir: {}}
""")
    specs = [RunSpec(e, "1" * 40) for e in require_clean(Workspace(root)) if not e.waiting]
    rendered = render(specs, root / "out", root)
    assert all(r.objects is not None for r in rendered)
    for r in rendered:
        alone = subprocess.run([kubectl(), "kustomize", str(r.folder)], check=True,
                               capture_output=True, text=True).stdout
        assert [d for d in yaml.safe_load_all(alone) if d] == r.manifests
        jobset = r.manifests[1]
        assert jobset["spec"]["failurePolicy"]["maxRestarts"] == 7
        assert "ttlSecondsAfterFinished" not in jobset["spec"]
        assert jobset["metadata"]["annotations"]["moved"] == r.spec.run_id
