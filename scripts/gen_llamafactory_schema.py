#!/usr/bin/env python3
"""Regenerate schemas/llamafactory-<version>.schema.json from the installed llamafactory.

Usage: python scripts/gen_llamafactory_schema.py [--check] [--out PATH]
Needs the training extra (`pip install -e .[train]`): it imports llamafactory and torch.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from render.propose import lfschema  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--out", type=Path, default=lfschema.SCHEMA_PATH)
    ap.add_argument("--check", action="store_true",
                    help="exit 1 if the file differs from a fresh generation; write nothing")
    args = ap.parse_args(argv)
    text = lfschema.render_schema()
    current = args.out.read_text(encoding="utf-8") if args.out.exists() else None
    if args.check:
        if current != text:
            print(f"{args.out} is out of date: run python scripts/gen_llamafactory_schema.py",
                  file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    if current == text:
        print(f"{args.out} unchanged")
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
