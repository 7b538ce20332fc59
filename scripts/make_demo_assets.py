#!/usr/bin/env python3
"""Write the tiny demo model, tokenizer and alpaca data (offline, deterministic, idempotent).

Usage: python scripts/make_demo_assets.py [--dest .demo] [--n-examples 64] [--seed 0]
Needs the training extra (torch, transformers, tokenizers).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from render.launch.demo import make_demo_assets  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--dest", type=Path, default=Path(".demo"))
    ap.add_argument("--n-examples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    assets = make_demo_assets(args.dest, n_examples=args.n_examples, seed=args.seed)
    print(f"model_dir:    {assets.model_dir}")
    print(f"data_dir:     {assets.data_dir}")
    print(f"dataset_file: {assets.dataset_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
