"""Lint benchmark: 1,000 generated experiments, and one changed file in a large tree.

    python scripts/bench_lint.py [--n 1000]

Targets (issue 2): the 1,000 files in under 2 s; one changed experiment in under 1 s
however large the tree is.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import make_tree, peak_rss_mib  # noqa: E402

from render.propose.experiment import Workspace  # noqa: E402
from render.propose.lint import lint  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--big", type=int, default=5000, help="tree size for the one-file case")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        make_tree(root, args.n)
        # warm imports and the schema (a CLI process pays this once: see "startup")
        t0 = time.perf_counter()
        Workspace(root)
        lint(Workspace(root), [root / "experiments/ds0/llama-3.1-8b/sft_lora_0_v1.yaml"])
        startup = time.perf_counter() - t0

        t0 = time.perf_counter()
        result = lint(Workspace(root))
        full = time.perf_counter() - t0
        assert result.ok, result.findings[:3]
        n = len(result.experiments)
        print(f"lint all: {n} experiments in {full:.2f} s = {n / full:.0f} files/s "
              f"(target: 1,000 in < 2 s); schema+imports warm-up {startup:.2f} s")

        big = Path(tmp) / "big"
        paths = make_tree(big, args.big)
        changed = paths[len(paths) // 2]
        t0 = time.perf_counter()
        one = lint(Workspace(big), [changed])
        single = time.perf_counter() - t0
        assert one.ok
        print(f"lint one changed file in a {args.big}-experiment tree: {single * 1000:.0f} ms "
              "in process (target: < 1 s)")
        ftops = Path(sys.executable).parent / "ftops"
        t0 = time.perf_counter()
        proc = subprocess.run([str(ftops), "--repo", str(big), "lint", str(changed)],
                              capture_output=True, text=True)
        cli = time.perf_counter() - t0
        assert proc.returncode == 0, proc.stdout + proc.stderr
        print(f"  the same as a fresh `ftops lint FILE` process (pre-commit): {cli:.2f} s")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
