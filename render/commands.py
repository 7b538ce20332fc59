"""Subcommands beyond lint. Each handler parses nothing itself: it calls the module that
does the work and prints the result."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from render.errors import FatalError
from render.experiment import Workspace
from render.runspec import RunSpec, git_commit


def load_specs(args: argparse.Namespace) -> tuple[Workspace, list[RunSpec]]:
    """Lint the selected experiments; refuse to go on with any problem."""
    from render.lint import lint

    ws = Workspace(Path(args.repo))
    paths = [Path(p) for p in args.paths] if args.paths else None
    result = lint(ws, paths)
    if not result.ok:
        for finding in result.findings:
            print(finding.format(), file=sys.stderr)
        raise FatalError(f"{len(result.findings)} lint problem(s); fix them first "
                         "(`ftops lint` shows them again)")
    commit = args.commit or git_commit(ws.root)
    return ws, [RunSpec(e, commit) for e in sorted(result.experiments, key=lambda e: e.path)]


def cmd_render(args: argparse.Namespace) -> int:
    from render.overlay import check_tree, render

    ws, specs = load_specs(args)
    out = Path(args.out) if Path(args.out).is_absolute() else ws.root / args.out
    if args.check:
        drift = check_tree(specs, out, ws.root)
        for name in drift:
            print(f"drift: {out.name}/{name}")
        if drift:
            raise FatalError(f"{len(drift)} rendered file(s) differ from {args.out}; "
                             f"regenerate with: ftops render --commit {specs[0].commit if specs else '<sha>'} --out {args.out}")
        print(f"ok: {len(specs)} experiment(s) render exactly as in {args.out}", file=sys.stderr)
        return 0
    rendered = render(specs, out, ws.root)
    if args.validate:
        from render.validate import validate_manifests

        problems = validate_manifests([d for r in rendered for d in r.manifests])
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            raise FatalError(f"{len(problems)} rendered object(s) fail validation")
    for r in rendered:
        print(f"{r.spec.exp.path} -> {ws.rel(r.folder)}/ (run {r.spec.run_id}, "
              f"{len(r.manifests)} objects)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from render.plan import plan

    ws, specs = load_specs(args)
    text = plan(ws, specs)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", help="experiment files (default: all)")
    p.add_argument("--commit", help="launching commit (default: git HEAD)")


def register(sub: Any) -> None:
    p = sub.add_parser("render", help="write Kustomize overlays and built manifests")
    _selection(p)
    p.add_argument("--out", default=".rendered", help="output folder (default: .rendered)")
    p.add_argument("--check", action="store_true",
                   help="fail when --out differs from a fresh render (golden files)")
    p.add_argument("--validate", action="store_true",
                   help="validate every object against the pinned upstream schemas")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("plan", help="Markdown plan: what will run, where, how long")
    _selection(p)
    p.add_argument("--output", help="write the Markdown here instead of stdout")
    p.set_defaults(func=cmd_plan)
