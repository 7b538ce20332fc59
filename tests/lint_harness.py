"""Builds throwaway workspaces: a copy of the repository's real k8s-base/ and
experiments/ with fixture files placed at the path their header names."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HEADER = re.compile(r"^# (path|expect): (.*)$")


@dataclass
class Fixture:
    source: Path
    path: str  # where it goes in the workspace
    expect: list[str]  # exact formatted findings
    text: str


def read_fixture(source: Path) -> Fixture:
    text = source.read_text(encoding="utf-8")
    path, expect = "", []
    for line in text.splitlines():
        m = HEADER.match(line)
        if m and m.group(1) == "path":
            path = m.group(2).strip()
        elif m:
            expect.append(m.group(2).strip())
    assert path, f"{source}: fixture needs a '# path: experiments/...' header"
    return Fixture(source, path, expect, text)


def make_workspace(tmp: Path) -> Path:
    root = tmp / "repo"
    shutil.copytree(REPO / "k8s-base", root / "k8s-base")
    shutil.copytree(REPO / "experiments", root / "experiments")
    (root / "outputs-index").mkdir()
    return root


def fixtures(kind: str) -> list[Path]:
    return sorted((REPO / "tests" / "fixtures" / kind).rglob("*.yaml"))


def record_run(root: Path, experiment_path: str, run_id: str, config_hash: str,
               **fields: object) -> Path:
    """A real index entry (a RunRecord written by the index module) for an experiment of
    the workspace at `root`; `fields` set status, metrics and the rest."""
    from render.record.index import INDEX_DIR, write_entry
    from render.record.runrecord import Metrics, RunRecord

    _, dataset, model, name = experiment_path.removesuffix(".yaml").split("/")
    metrics = fields.pop("metrics", None)
    values: dict[str, object] = {"status": "succeeded", **fields}
    if isinstance(metrics, dict):
        values["metrics"] = Metrics(**metrics)
    record = RunRecord(run_id=run_id, experiment=name, experiment_path=experiment_path,
                       dataset=dataset, model=model, config_hash=config_hash,
                       git_sha="0" * 40, **values)  # type: ignore[arg-type]
    return write_entry(root / INDEX_DIR, record)
