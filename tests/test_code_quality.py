"""The same static checks pre-commit runs, so CI fails when they would."""

from __future__ import annotations

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


def test_outputs_index_readme_is_current() -> None:
    from render.index import check_readme

    assert check_readme(REPO / "outputs-index")
