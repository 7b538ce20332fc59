"""Lint: every problem in every file at once, each with file, line, field and a fix.

`lint(ws, paths)` checks the given files (what pre-commit and CI pass: the changed
ones) or the whole tree. A changed `_defaults.yaml` or `dataset.yaml` re-checks every
experiment under it. Work grows with the files checked, not with the tree: rules that
compare experiments only look at the same <dataset>/<model> folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from render.errors import FatalError, Finding
from render.propose import layout, schema
from render.propose.experiment import EXPERIMENTS_DIR, Experiment, Workspace
from render.propose.profile import PROFILE_PATH
from render.propose.rules import EXPERIMENT_RULES, Context, secrets
from render.propose.yamlsource import PathPart, YamlError
from render.record.indexref import IndexAt


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)
    experiments: list[Experiment] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


def select(ws: Workspace, paths: Iterable[Path] | None) -> tuple[list[str], list[Path]]:
    """(all files to check, the experiment files among them), repo-relative."""
    root = ws.root
    if paths is None:
        files = sorted(p for p in (root / EXPERIMENTS_DIR).rglob("*") if p.is_file())
    else:
        files = [_absolute(root, p) for p in paths]
        if any(ws.rel(f) == PROFILE_PATH.as_posix() for f in files):
            # what the cluster offers changed: every experiment may be affected
            files = sorted(p for p in (root / EXPERIMENTS_DIR).rglob("*") if p.is_file())
    rels: dict[str, None] = {}
    experiments: dict[Path, None] = {}
    for path in files:
        rel = ws.rel(path)
        kind = layout.classify(rel)
        if kind == "other":
            continue
        rels[rel] = None
        if kind == "experiment":
            experiments[path] = None
        elif kind in ("defaults", "dataset") and path.exists():
            for exp in sorted(path.parent.rglob("*.yaml")):
                if layout.classify(ws.rel(exp)) == "experiment":
                    experiments[exp] = None
                    rels[ws.rel(exp)] = None
    return list(rels), [p for p in experiments if p.exists()]


def _absolute(root: Path, path: Path) -> Path:
    """Paths are taken relative to the repository root, else to the current folder."""
    if path.is_absolute():
        return Path(os.path.normpath(path))
    if not (root / path).exists() and path.exists():
        return Path(os.path.abspath(path))
    return Path(os.path.normpath(root / path))


def lint(ws: Workspace, paths: Iterable[Path] | None = None, *, deep: bool = False,
         index_at: IndexAt | None = None) -> LintResult:
    """Lint `paths` (default: every file under experiments/). `index_at`: judge what has
    run by that commit's outputs-index/ (the base branch in CI), not the checkout's."""
    rels, exp_paths = select(ws, paths)
    result = LintResult(files_checked=len(rels))
    findings: set[Finding] = set()
    ctx = Context(ws, index_at)
    scanned: set[str] = set()
    deep_queue: list[Experiment] = []

    for rel in rels:
        findings.update(layout.check(rel))
        kind = layout.classify(rel)
        if kind == "dataset" and (ws.root / rel).exists():
            findings.update(_check_dataset(ws, ws.root / rel))
    for path in exp_paths:
        exp, load_findings = ws.load(path)
        findings.update(load_findings)
        if exp is None:
            continue
        result.experiments.append(exp)
        for doc in {exp.doc, *exp.origins.values()}:
            if doc.file not in scanned:
                scanned.add(doc.file)
                findings.update(secrets.scan_text((ws.root / doc.file).read_text("utf-8"),
                                                  doc.file))

        def locate(parts: tuple[PathPart, ...], message: str, hint: str,
                   exp: Experiment = exp) -> Finding:
            return exp.finding(parts, message, hint, "schema")

        schema_findings = schema.validate("experiment.schema.json", exp.merged, locate)
        findings.update(schema_findings)
        for rule in EXPERIMENT_RULES:
            findings.update(rule(exp, ctx))
        if deep and not schema_findings:
            deep_queue.append(exp)
    if deep_queue:
        from render.propose.deepcheck import deep_check

        results = deep_check([e.train for e in deep_queue])
        for exp, res in zip(deep_queue, results, strict=True):
            if res.error is not None:
                findings.add(exp.finding(("train",), "LLaMA-Factory rejects the arguments: "
                                         f"{res.error}", "fix the argument it names", "deep"))
    result.findings = sorted(findings)
    return result


def _check_dataset(ws: Workspace, path: Path) -> list[Finding]:
    try:
        doc = ws.doc(path)
    except YamlError as exc:
        return [exc.finding]
    if doc is None:
        return []
    out = list(secrets.scan_text(path.read_text("utf-8"), doc.file))

    def locate(parts: tuple[PathPart, ...], message: str, hint: str) -> Finding:
        return doc.finding(parts, message, hint, "schema")

    out.extend(schema.validate("dataset.schema.json", doc.data, locate))
    return out


def require_clean(ws: Workspace, paths: Iterable[Path] | None = None, *,
                  index_at: IndexAt | None = None) -> list[Experiment]:
    """The experiments of `paths` (default: all), sorted by path, when they lint clean;
    else a FatalError listing every finding (render, plan, apply and launch refuse to go
    on with any problem)."""
    result = lint(ws, paths, index_at=index_at)
    if not result.ok:
        raise FatalError(f"{len(result.findings)} lint problem(s); fix them first "
                         "(`ftops lint` shows them again)",
                         tuple(f.format() for f in result.findings))
    if paths is not None and not result.experiments:
        shown = ", ".join(str(p) for p in paths)
        raise FatalError(f"{shown}: not an experiment file "
                         "(experiments/<dataset>/<model>/<name>_v<N>.yaml)")
    return sorted(result.experiments, key=lambda e: e.path)
