"""The same static checks pre-commit runs, so CI fails when they would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    proc = subprocess.run([str(BIN / "ruff"), "check", "render", "tests", "scripts"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_mypy_strict_is_clean() -> None:
    proc = subprocess.run([str(BIN / "mypy"), "render"], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_mypy_strict_devcluster_harness_is_clean() -> None:
    """The local control plane's harness (a test package, not shipped) stays typed too."""
    harness = sorted(str(p.relative_to(REPO / "tests"))
                     for p in (REPO / "tests" / "devcluster").glob("*.py")
                     if not p.name.startswith(("test_", "conftest")))
    env = {**os.environ, "MYPYPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}
    proc = subprocess.run([str(BIN / "mypy"), "--strict", "--explicit-package-bases",
                           "--config-file", str(REPO / "pyproject.toml"), *harness],
                          cwd=REPO / "tests", capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_outputs_index_readme_is_current() -> None:
    from render.browse.sync import check_readme

    assert check_readme(REPO / "outputs-index")
