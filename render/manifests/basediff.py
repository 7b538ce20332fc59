"""What a change to k8s-base/ does to the manifests of every experiment.

`ftops changes` selects no experiment for a pull request that only changes k8s-base/
(nothing is relaunched), yet every run launched after it merges gets the new manifests.
The plan therefore shows them: `manifest_diffs(repo, base, commit)` renders every
experiment that lints clean twice, from the base commit's `experiments/` and `k8s-base/`
(exported with `git archive`) and from the checkout, with the same code and the same
commit, and returns a unified diff of the built objects per experiment that changes.
"""

from __future__ import annotations

import difflib
import io
import subprocess
import tarfile
import tempfile
from pathlib import Path

from render.errors import FatalError
from render.manifests.overlay import render
from render.manifests.runspec import RunSpec
from render.propose.experiment import EXPERIMENTS_DIR, Experiment, Workspace
from render.propose.lint import lint
from render.propose.profile import PROFILE_PATH

K8S_BASE = PROFILE_PATH.parts[0]  # k8s-base


def k8s_base_changed(repo: Path, base: str) -> bool:
    """Whether the checkout's k8s-base/ differs from commit `base`'s."""
    proc = subprocess.run(["git", "-C", str(repo), "diff", "--quiet", base, "--",
                           f"{K8S_BASE}/"], capture_output=True, check=False)
    if proc.returncode not in (0, 1):
        raise FatalError(f"git diff failed in {repo}: "
                         f"{proc.stderr.decode('utf-8', 'replace').strip()}")
    return proc.returncode == 1


def _export(repo: Path, base: str, dest: Path) -> None:
    proc = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar", base, "--",
                           EXPERIMENTS_DIR, K8S_BASE], capture_output=True, check=False)
    if proc.returncode != 0:
        raise FatalError(f"cannot export {K8S_BASE}/ and {EXPERIMENTS_DIR}/ at {base}: "
                         f"{proc.stderr.decode('utf-8', 'replace').strip()}")
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        tar.extractall(dest, filter="data")


def _clean(ws: Workspace) -> list[Experiment]:
    """The experiments with no lint finding in any file they resolve from."""
    result = lint(ws)
    bad = {f.file for f in result.findings}
    return [e for e in result.experiments
            if not ({e.doc.file} | {d.file for d in e.origins.values()}) & bad]


def _built(ws: Workspace, out: Path, commit: str) -> dict[str, list[str]]:
    """Built manifests by run: an experiment's path, a sweep point's path and label;
    pipeline stages that wait for their input are not rendered."""
    specs = [RunSpec(e, commit) for e in _clean(ws) if not e.waiting]
    return {_key(r.spec): (r.folder / "manifests.yaml").read_text("utf-8").splitlines()
            for r in render(specs, out, ws.root)}


def _key(spec: RunSpec) -> str:
    point = spec.exp.point
    return spec.exp.path if point is None else f"{spec.exp.path} ({point.label})"


def manifest_diffs(repo: Path, base: str, commit: str) -> list[tuple[str, list[str]]]:
    """(experiment path, unified diff lines) for every experiment in both trees whose
    built manifests differ between `base` and the checkout."""
    with tempfile.TemporaryDirectory(prefix="ftops-basediff-") as scratch:
        root = Path(scratch)
        _export(repo, base, root / "base")
        old = _built(Workspace(root / "base"), root / "old", commit)
        new = _built(Workspace(repo), root / "new", commit)
    out = []
    for path in sorted(old.keys() & new.keys()):
        diff = list(difflib.unified_diff(old[path], new[path], f"{path} ({base[:12]})",
                                         f"{path} (this change)", lineterm="", n=2))
        if diff:
            out.append((path, diff))
    return out
