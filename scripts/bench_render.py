"""Render benchmark: 1,000 experiments to overlays plus built, validated manifests,
against the cost of one Kustomize process per experiment.

    python scripts/bench_render.py [--n 1000] [--no-validate]

Target (issue 3): the 1,000 in under 5 s.
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

from render.manifests.kustomize import kubectl  # noqa: E402
from render.manifests.overlay import render  # noqa: E402
from render.manifests.runspec import RunSpec  # noqa: E402
from render.manifests.validate import crd_validators, validate_manifests  # noqa: E402
from render.propose.experiment import Workspace  # noqa: E402
from render.propose.lint import lint  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--sample", type=int, default=10,
                        help="overlays built one process each, to extrapolate")
    args = parser.parse_args()
    crd_validators()  # load the pinned CRD schemas once (a cached Go module download)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "repo"
        make_tree(root, args.n)
        t0 = time.perf_counter()
        result = lint(Workspace(root))
        specs = [RunSpec(e, "1" * 40) for e in result.experiments]
        t_load = time.perf_counter() - t0
        t0 = time.perf_counter()
        rendered = render(specs, root / ".rendered", root)
        t_render = time.perf_counter() - t0
        t_val = 0.0
        if not args.no_validate:
            t0 = time.perf_counter()
            problems = validate_manifests([d for r in rendered for d in r.manifests])
            t_val = time.perf_counter() - t0
            assert not problems, problems[:3]
        total = t_render + t_val
        n = len(rendered)
        print(f"load+lint {n} experiments: {t_load:.2f} s")
        print(f"render {n} (overlays + one kustomize build): {t_render:.2f} s; "
              f"validate: {t_val:.2f} s; total {total:.2f} s = "
              f"{total / n * 1000:.1f} ms per experiment (target: 1,000 in < 5 s)")
        t0 = time.perf_counter()
        for r in rendered[: args.sample]:
            subprocess.run([kubectl(), "kustomize", str(r.folder)], check=True,
                           capture_output=True)
        per_proc = (time.perf_counter() - t0) / args.sample
        print(f"one kustomize process per overlay: {per_proc * 1000:.0f} ms each -> "
              f"~{per_proc * n:.0f} s for {n}")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
