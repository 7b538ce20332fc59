"""`ftops`: one command for everything the project does. Argument parsing only; each
subcommand's work lives in the module named after it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import yaml

from render.errors import FatalError
from render.experiment import Workspace

Handler = Callable[[argparse.Namespace], int]


def _workspace(args: argparse.Namespace) -> Workspace:
    return Workspace(Path(args.repo))


def cmd_lint(args: argparse.Namespace) -> int:
    from render.lint import lint

    if args.deep:
        import importlib.util

        if importlib.util.find_spec("llamafactory") is None:
            raise FatalError("--deep runs LLaMA-Factory's own parser, which is not installed. "
                             "Install the training extra: pip install -e '.[train]'")
    ws = _workspace(args)
    paths = [Path(p) for p in args.paths] if args.paths else None
    if args.fix:
        from render.propose.fix import fix

        changes = fix(ws, paths)
        for change in changes:
            print(f"fixed {change.format()}", file=sys.stderr)
        print(f"fix: {len(changes)} change(s)", file=sys.stderr)
        ws = _workspace(args)
    result = lint(ws, paths, deep=args.deep)
    if args.format == "json":
        print(json.dumps({"ok": result.ok, "files_checked": result.files_checked,
                          "findings": [f.as_dict() for f in result.findings]}, indent=2))
    else:
        for finding in result.findings:
            print(finding.format())
        files = len({f.file for f in result.findings})
        if result.findings:
            print(f"{len(result.findings)} problem(s) in {files} file(s)", file=sys.stderr)
        else:
            print(f"ok: {result.files_checked} file(s) checked, "
                  f"{len(result.experiments)} experiment(s)", file=sys.stderr)
    if args.show:
        for exp in result.experiments:
            print(f"# {exp.path} (resolved)")
            print(yaml.safe_dump(exp.resolved(), sort_keys=False), end="")
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftops", description="GitOps for LLaMA-Factory fine-tuning experiments.")
    parser.add_argument("--repo", default=".", help="repository root (default: .)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("lint", help="check experiment files (schema, arguments, rules)")
    p.add_argument("paths", nargs="*", help="files to check (default: all of experiments/)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--show", action="store_true", help="print each resolved experiment")
    p.add_argument("--deep", action="store_true",
                   help="also run LLaMA-Factory's own argument parser (training extra)")
    p.add_argument("--fix", action="store_true",
                   help="first remove keys ftops owns and normalize spellings LLaMA-Factory "
                        "reads as equal (prints every change)")
    p.set_defaults(func=cmd_lint)

    from render import commands

    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Handler = args.func
    try:
        return func(args)
    except FatalError as exc:
        print(f"ftops: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ftops: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
