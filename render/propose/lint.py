"""Lint: every problem in every file at once, each with file, line, field and a fix.

`lint(ws, paths)` checks the given files and folders (what pre-commit and CI pass: the
changed ones) or the whole tree. A changed `_defaults.yaml` or `dataset.yaml` re-checks
every experiment under it; a changed cluster profile or Kueue component, every one.
Work grows with the files checked, not with the tree: rules that compare experiments
only look at the same <dataset>/<model> folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from render.errors import FatalError, Finding
from render.fsutil import symlink_under
from render.propose import budget, layout, needs, schema, sweep
from render.propose.experiment import (
    EXPERIMENTS_DIR,
    Experiment,
    Workspace,
    read_deepspeed,
    uses_torchrun,
)
from render.propose.profile import PROFILE_PATH
from render.propose.quotas import KUEUE_DIR
from render.propose.rules import EXPERIMENT_RULES, Context, secrets
from render.propose.yamlsource import PathPart, YamlDoc, YamlError, json_path
from render.record.indexref import IndexAt


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)  # errors: lint fails
    experiments: list[Experiment] = field(default_factory=list)
    files_checked: int = 0
    warnings: list[Finding] = field(default_factory=list)  # reported; lint passes

    @property
    def ok(self) -> bool:
        return not self.findings


def select(ws: Workspace, paths: Iterable[Path] | None
           ) -> tuple[list[str], list[Path], list[Finding]]:
    """(all files to check, the experiment files among them, problems with the selection
    itself), repo-relative. A folder stands for every file under it; a path that does not
    exist, lies outside experiments/, or is a symlink is a finding, never silence."""
    root = ws.root
    problems: list[Finding] = []
    if paths is None:
        files = _walk(root / EXPERIMENTS_DIR)
    else:
        files = []
        for given in paths:
            path = _inside(root, _absolute(root, given))
            rel = ws.rel(path) if path is not None else ""
            if path is None:
                problems.append(Finding(str(given), 1, 1, "$", "is outside the repository",
                                        f"lint files under {ws.root}/{EXPERIMENTS_DIR}/",
                                        "layout"))
            elif _relints_all(rel):
                # what the cluster offers changed: every experiment may be affected
                files += _walk(root / EXPERIMENTS_DIR)
            elif not path.exists() and not path.is_symlink():
                problems.append(Finding(rel, 1, 1, "$", "no such file or folder",
                                        "check the path (from the repository root)",
                                        "layout"))
            elif path.is_dir() and not path.is_symlink() and (
                    (root / EXPERIMENTS_DIR).is_relative_to(path)):
                files += _walk(root / EXPERIMENTS_DIR)  # the root stands for experiments/
            elif path.is_dir() and not path.is_symlink() and layout.classify(rel) != "other":
                files += _walk(path)
            else:
                files.append(path)
    rels: dict[str, None] = {}
    experiments: dict[Path, None] = {}
    for path in files:
        rel = ws.rel(path)
        if layout.classify(rel) == "other":
            if rel not in (".", ""):
                problems.append(Finding(rel, 1, 1, "$", "is not under experiments/",
                                        "lint checks experiment files: " + layout.LAYOUT_HINT,
                                        "layout"))
            continue
        if symlink_under(root, path) is not None:
            problems.append(layout.symlink_finding(ws.rel(symlink_under(root, path) or path)))
            continue
        kind = layout.classify(rel)
        rels[rel] = None
        if kind == "experiment":
            experiments[path] = None
        elif kind in ("defaults", "dataset"):
            for exp in _walk(path.parent):
                if layout.classify(ws.rel(exp)) == "experiment" and not exp.is_symlink():
                    experiments[exp] = None
                    rels[ws.rel(exp)] = None
    return list(rels), list(experiments), sorted(set(problems))


def _absolute(root: Path, path: Path) -> Path:
    """Paths are taken relative to the repository root, else to the current folder."""
    if path.is_absolute():
        return Path(os.path.normpath(path))
    if not (root / path).exists() and path.exists():
        return Path(os.path.abspath(path))
    return Path(os.path.normpath(root / path))


def _inside(root: Path, path: Path) -> Path | None:
    """`path` spelled under `root` (its folder resolved, not its last part: that may be a
    link to report), or None when it lies outside the repository."""
    for candidate in (path, Path(os.path.realpath(path.parent)) / path.name):
        rel = os.path.relpath(candidate, root)
        if rel != ".." and not rel.startswith(".." + os.sep):
            return candidate
    return None


def _relints_all(rel: str) -> bool:
    return (rel in (PROFILE_PATH.as_posix(), budget.BUDGETS_PATH.as_posix())
            or rel.startswith(KUEUE_DIR.as_posix() + "/"))


def _walk(folder: Path) -> list[Path]:
    """Every entry under `folder` that is not a real folder (files, and symlinks to
    anything, dangling ones included), sorted; links to folders are not entered."""
    if folder.is_symlink() or not folder.is_dir():
        return [folder] if folder.is_symlink() or folder.exists() else []
    out: list[Path] = []
    for dirpath, dirs, names in os.walk(folder):
        here = Path(dirpath)
        out.extend(here / d for d in dirs if os.path.islink(os.path.join(dirpath, d)))
        out.extend(here / n for n in names)
    return sorted(out)


def lint(ws: Workspace, paths: Iterable[Path] | None = None, *, deep: bool = False,
         index_at: IndexAt | None = None) -> LintResult:
    """Lint `paths` (default: every file under experiments/). `index_at`: judge what has
    run by that commit's outputs-index/ (the base branch in CI), not the checkout's."""
    rels, exp_paths, problems = select(ws, paths)
    result = LintResult(files_checked=len(rels))
    findings: set[Finding] = set(problems)
    ctx = Context(ws, index_at)
    scanned: set[str] = set()
    deep_queue: list[Experiment] = []

    def scan(file: str, text: str, data: Any = None, locate: secrets.Locate | None = None
             ) -> None:
        """Secrets in one file, once: its text; and its values where no experiment's
        merged view covers them (dataset.yaml, DeepSpeed configs)."""
        if file in scanned:
            return
        scanned.add(file)
        findings.update(secrets.scan_text(text, file))
        if locate is not None:
            findings.update(secrets.scan_fields(data, locate))
            findings.update(secrets.scan_values(data, text, locate))

    def scan_doc(doc: YamlDoc) -> None:
        scan(doc.file, doc.text, doc.data, lambda p, m: doc.finding(p, m, secrets.HINT,
                                                                     "secrets"))

    def scan_deepspeed(rel: str, data: dict[str, Any] | None) -> None:
        if data is None or rel in scanned:
            return
        text = (ws.root / rel).read_text(encoding="utf-8")
        scan(rel, text, data, lambda p, m: _json_finding(rel, text, p, m))

    for rel in rels:
        findings.update(layout.check(rel))
        kind = layout.classify(rel)
        if kind == "dataset" and (ws.root / rel).exists():
            findings.update(_check_dataset(ws, ws.root / rel, scan_doc))
        elif kind == "deepspeed":
            try:
                scan_deepspeed(rel, read_deepspeed(ws.root, rel))
            except ValueError as exc:
                findings.add(Finding(rel, 1, 1, "$", f"DeepSpeed config {exc}", "fix the file",
                                     "deepspeed"))
    for path in exp_paths:
        exp, load_findings = ws.load(path)
        findings.update(load_findings)
        if exp is None:
            continue
        exp = needs.resolve(exp, ctx.runs_of)
        for doc in {exp.doc, *exp.origins.values()}:
            scan(doc.file, doc.text)
        if exp.dataset_doc is not None:
            scan_doc(exp.dataset_doc)
        ds = exp.train.get("deepspeed")
        if isinstance(ds, str):
            scan_deepspeed(ds, exp.deepspeed_config)

        def locate(parts: tuple[PathPart, ...], message: str, hint: str,
                   exp: Experiment = exp) -> Finding:
            return exp.finding(parts, message, hint, "schema")

        schema_findings = schema.validate("experiment.schema.json", exp.merged, locate)
        findings.update(schema_findings)
        if sweep.is_sweep(exp):
            sweep_findings = sweep.problems(exp)
            findings.update(sweep_findings)
            if schema_findings or sweep_findings:
                continue
            points = sweep.expand(exp)
            findings.update(_check_points(exp, points, ctx))
            result.experiments.extend(points)
            if deep:
                deep_queue.extend(points)
            continue
        result.experiments.append(exp)
        for rule in EXPERIMENT_RULES:
            findings.update(rule(exp, ctx))
        if deep and not schema_findings:
            deep_queue.append(exp)
    if deep_queue:
        findings.update(_deep(deep_queue))
    # the budget is judged once nothing else is wrong (warnings, such as a tag-only
    # image, do not hold it back)
    if result.experiments and not any(f.severity == "error" for f in findings):
        findings.update(budget.check(ws.root, result.experiments, ctx.all_runs))
    result.findings = sorted(f for f in findings if f.severity == "error")
    result.warnings = sorted(f for f in findings if f.severity != "error")
    return result


def _check_points(base: Experiment, points: list[Experiment], ctx: Context) -> set[Finding]:
    """Every point of a sweep checked as a full experiment: a finding every point shares
    is said once, as of the file; one only some points have names its point."""
    per_point: list[set[Finding]] = []
    for point in points:
        def locate(parts: tuple[PathPart, ...], message: str, hint: str,
                   exp: Experiment = point) -> Finding:
            return exp.finding(parts, message, hint, "schema")

        mine = set(schema.validate("experiment.schema.json", point.merged, locate))
        for rule in EXPERIMENT_RULES:
            mine.update(rule(point, ctx))
        per_point.append(mine)
    shared = set.intersection(*per_point) if per_point else set()
    out = set(shared)
    for point, mine in zip(points, per_point, strict=True):
        assert point.point is not None
        out.update(sweep.relocate(base, point.point, f) for f in mine - shared)
    return out


def _json_finding(file: str, text: str, path: tuple[PathPart, ...], message: str) -> Finding:
    """A finding in a JSON file, at the first line naming the last key of `path`."""
    key = next((p for p in reversed(path) if isinstance(p, str)), None)
    at = text.find(json.dumps(key)) if key is not None else -1
    line = text.count("\n", 0, at) + 1 if at >= 0 else 1
    return Finding(file, line, 1, json_path(path), message, secrets.HINT, "secrets")


def _deep(queue: list[Experiment]) -> list[Finding]:
    """LLaMA-Factory's own parser on each experiment, started as its pods start it."""
    from render.propose.deepcheck import Launcher, deep_check

    def launcher(exp: Experiment) -> Launcher:
        ds = exp.deepspeed_config or {}
        zero = ds.get("zero_optimization") if isinstance(ds, dict) else None
        stage = zero.get("stage") if isinstance(zero, dict) else None
        deepspeed = exp.train.get("deepspeed") is not None
        return Launcher(uses_torchrun(exp.launch.processes, deepspeed), stage == 3)

    out = []
    results = deep_check([e.train for e in queue], launchers=[launcher(e) for e in queue])
    for exp, res in zip(queue, results, strict=True):
        if res.error is not None and res.environment:
            out.append(exp.finding(("train",), "not checked: the environment running the "
                                   f"deep check lacks a package this config needs ({res.error})",
                                   "install it here to run `ftops lint --deep` (the training "
                                   "image needs it too); this is not a mistake in the "
                                   "experiment", "deep-environment"))
        elif res.error is not None:
            out.append(exp.finding(("train",), "LLaMA-Factory rejects the arguments: "
                                   f"{res.error}", "fix the argument it names", "deep"))
    return out


def _check_dataset(ws: Workspace, path: Path, scan_doc: Callable[[YamlDoc], None]
                   ) -> list[Finding]:
    try:
        doc = ws.doc(path)
    except YamlError as exc:
        return [exc.finding]
    if doc is None:
        return []
    scan_doc(doc)

    def locate(parts: tuple[PathPart, ...], message: str, hint: str) -> Finding:
        return doc.finding(parts, message, hint, "schema")

    return schema.validate("dataset.schema.json", doc.data, locate)


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
