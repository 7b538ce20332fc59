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
