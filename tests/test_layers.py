"""Imports run one way through the stages of the flow (README: "Repository layout").

    core (render/*.py) <- record <- browse
                          record <- propose <- manifests <- launch <- cli

A module may import its own stage and the stages below it. An import against that
direction is allowed only where a comment right above it starts with "Layer exception
(<from> -> <to>):" and says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "render"
RANK = {"core": 0, "record": 1, "browse": 2, "propose": 2, "manifests": 3, "launch": 4,
        "cli": 5}


def stage_of_module(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "render":
        raise ValueError(module)
    if len(parts) >= 2 and parts[1] in RANK:
        return parts[1]
    if len(parts) >= 2 and parts[1] in ("cli", "__main__"):
        return "cli"
    return "core"


def stage_of_file(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    return stage_of_module(".".join(rel.parts))


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported render module) for every import in the file, at any depth."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "render":
                found += [(node.lineno, f"render.{a.name}") for a in node.names]
            elif node.module.startswith("render."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("render.")]
    return found


def exception_reason(lines: list[str], lineno: int, src: str, dst: str) -> str | None:
    """The reason given in the comment block right above line `lineno` (1-based)."""
    i = lineno - 2
    block: list[str] = []
    while i >= 0 and lines[i].strip().startswith("#"):
        block.insert(0, lines[i].strip().lstrip("#").strip())
        i -= 1
    text = " ".join(block)
    marker = f"Layer exception ({src} -> {dst}):"
    if marker in text:
        reason = text.split(marker, 1)[1].strip()
        return reason or None
    return None


def violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = stage_of_file(path)
        lines = path.read_text(encoding="utf-8").splitlines()
        for lineno, module in imports(path):
            dst = stage_of_module(module)
            if dst == src or RANK[dst] < RANK[src]:
                continue
            if exception_reason(lines, lineno, src, dst):
                continue
            out.append(f"{path.relative_to(PACKAGE.parent)}:{lineno}: {src} imports {module} "
                       f"({dst}) against the flow")
    return out


def test_imports_run_one_way() -> None:
    assert violations() == []


def test_every_module_belongs_to_a_stage() -> None:
    stages = {stage_of_file(p) for p in PACKAGE.rglob("*.py")}
    assert stages == set(RANK)


@pytest.mark.parametrize("line,expected", [
    ("from render.launch.cluster import apply", "launch"),
    ("from render.record import index", "record"),
    ("from render import markdown", "core"),
])
def test_the_checker_sees_imports(tmp_path: Path, line: str, expected: str) -> None:
    f = tmp_path / "x.py"
    f.write_text(f"def f():\n    {line}\n")
    ((_, module),) = imports(f)
    assert stage_of_module(module) == expected


def test_an_exception_needs_its_comment() -> None:
    lines = ["    # Layer exception (record -> browse): READMEs are part of the commit.",
             "    from render.browse.sync import write_readme"]
    assert exception_reason(lines, 2, "record", "browse") == "READMEs are part of the commit."
    assert exception_reason(["x = 1", "from render.browse import sync"], 2,
                            "record", "browse") is None
