"""Render benchmark: 1,000 experiments to overlays plus built, validated manifests,
against the cost of one Kustomize process per experiment.

    python scripts/bench_render.py [--n 1000] [--no-validate] [--sample 10]

Target (issue 15): the 1,000 in under 5 s, and at least 15x faster than building each
overlay with its own `kubectl kustomize` process (timed here on a sample of the same
overlays, one process each, and extrapolated). The last line says both, for scripts:

    render 1000: <s> s, <r>x vs one kustomize process per overlay

and the exit status is 1 when either target is missed. Loading and linting the
experiments are timed apart and not counted; neither is loading the pinned schemas (a
cached Go module download; the compiled checks are kept in ~/.cache/ftops).

A render creates ~8 files per experiment, so the file system's cost of a new file
matters; the bench measures it in its own temporary folder and prints it. On a
development VM whose ext4 has no journal, a folder in a block group where many files
were recently deleted paid ~1 ms of kernel time per new file (ext4 skips recently
deleted inodes one by one, `recently_deleted` in `find_inode_bit`), against ~0.03 ms in
a fresh one; `TMPDIR=/some/new/top-level/folder` puts the bench in a fresh one.
"""

from __future__ import annotations

import argparse
import os
import resource
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
from render.manifests.validate import crd_check, crd_schemas, validate_manifests  # noqa: E402
from render.propose.experiment import Workspace  # noqa: E402
from render.propose.lint import lint  # noqa: E402

TARGET_S = 5.0  # for 1,000 experiments; scaled with --n
TARGET_RATIO = 15.0


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def new_file_cost(folder: Path, count: int = 500) -> float:
    """Seconds to create one small file in `folder` (left there: deleting them now would
    make the render's new files slower, as above)."""
    folder.mkdir()
    t0 = time.perf_counter()
    for i in range(count):
        (folder / f"f{i}").write_text("x" * 1000)
    return (time.perf_counter() - t0) / count


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--no-validate", action="store_true")
    parser.add_argument("--sample", type=int, default=10,
                        help="overlays built one process each, to extrapolate")
    args = parser.parse_args()
    for api, kind in crd_schemas():  # the pinned CRDs, and the JobSet's compiled check
        if kind == "JobSet":
            crd_check(api, kind)
    with tempfile.TemporaryDirectory() as tmp:
        per_file = new_file_cost(Path(tmp) / "probe")
        root = Path(tmp) / "repo"
        make_tree(root, args.n)
        t0 = time.perf_counter()
        result = lint(Workspace(root))
        specs = [RunSpec(e, "1" * 40) for e in result.experiments]
        t_load = time.perf_counter() - t0
        kustomize_cpu, python_cpu = -cpu(resource.RUSAGE_CHILDREN), -cpu(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        rendered = render(specs, root / ".rendered", root)
        t_render = time.perf_counter() - t0
        kustomize_cpu += cpu(resource.RUSAGE_CHILDREN)
        t_val = 0.0
        if not args.no_validate:
            t0 = time.perf_counter()
            problems = validate_manifests([d for r in rendered for d in r.manifests])
            t_val = time.perf_counter() - t0
            assert not problems, problems[:3]
        python_cpu += cpu(resource.RUSAGE_SELF)
        total = t_render + t_val
        n = len(rendered)
        print(f"load+lint {n} experiments: {t_load:.2f} s (not counted)")
        files = sum(1 for f in (root / ".rendered").rglob("*") if f.is_file())
        built = sum(1 for r in rendered if r.objects is not None)
        print(f"render {n} (overlays, built objects): {t_render:.2f} s; "
              f"validate: {t_val:.2f} s; total {total:.2f} s = "
              f"{total / n * 1000:.1f} ms per experiment")
        print(f"{built} of {n} runs built by ftops (the rest by Kustomize); {files} files "
              f"written; a new file here costs {per_file * 1000:.3f} ms "
              f"(~{files * per_file:.2f} s of the render)")
        print(f"CPU time: Kustomize {kustomize_cpu:.2f} s, Python {python_cpu:.2f} s, "
              f"on {os.cpu_count()} cores")
        t0 = time.perf_counter()
        sample = rendered[: args.sample]
        for r in sample:
            subprocess.run([kubectl(), "kustomize", str(r.folder)], check=True,
                           capture_output=True)
        per_proc = (time.perf_counter() - t0) / len(sample)
        baseline = per_proc * n
        ratio = baseline / total
        print(f"one kustomize process per overlay: {per_proc * 1000:.0f} ms each "
              f"(sample of {len(sample)}) -> ~{baseline:.1f} s for {n}")
    target_s = TARGET_S * args.n / 1000
    met = total < target_s and ratio >= TARGET_RATIO
    print(f"peak RSS: {peak_rss_mib():.0f} MiB; load average {os.getloadavg()[0]:.2f}; "
          f"target < {target_s:g} s and >= {TARGET_RATIO:g}x: {'met' if met else 'MISSED'}")
    print(f"render {n}: {total:.2f} s, {ratio:.1f}x vs one kustomize process per overlay")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
