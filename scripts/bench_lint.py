"""Lint benchmark: 1,000 generated experiments, one changed file in a large tree, and
hostile files (YAML alias bombs, deep nesting) that must be refused fast.

    python scripts/bench_lint.py [--n 1000]

Fresh processes are timed best of 3, with and without the parse cache (a cache folder of
the benchmark's own; the user's ~/.cache/ftops is neither read nor written).

Targets: the 1,000 files in under 2 s and one changed experiment in under 1 s however
large the tree is (issue 2); an alias bomb refused in under 0.1 s (issue 10); 1,000 and
5,000 experiments in ONE model folder linted in time that grows linearly (issue 15: the
duplicate rule groups a folder by config hash once instead of comparing every pair).
"""

from __future__ import annotations

import argparse
import os
import shutil
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
    parser.add_argument("--no-hostile", action="store_true",
                        help="skip the hostile files (to time a version that cannot refuse them)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # a cache folder of its own: figures that do not depend on what this user's
        # earlier runs left in ~/.cache/ftops (compiled schema checks, parsed YAML)
        cache = Path(tmp) / "cache"
        os.environ["XDG_CACHE_HOME"] = str(cache)
        parsed = cache / "ftops" / "parsed-yaml"
        root = Path(tmp) / "repo"
        make_tree(root, args.n)
        # warm imports and the schema (a CLI process pays this once: see "startup")
        t0 = time.perf_counter()
        Workspace(root)
        lint(Workspace(root), [root / "experiments/ds0/llama-3.1-8b/sft_lora_0_v1.yaml"])
        startup = time.perf_counter() - t0
        shutil.rmtree(parsed, ignore_errors=True)

        t0 = time.perf_counter()
        result = lint(Workspace(root))
        full = time.perf_counter() - t0
        assert result.ok, result.findings[:3]
        n = len(result.experiments)
        t0 = time.perf_counter()
        lint(Workspace(root))
        again = time.perf_counter() - t0
        print(f"lint all: {n} experiments in {full:.2f} s = {n / full:.0f} files/s, "
              f"{again:.2f} s with the parse cache (target: 1,000 in < 2 s); "
              f"schema+imports warm-up {startup:.2f} s")
        ftops = Path(sys.executable).parent / "ftops"
        # without the console script (a bare interpreter), the same CLI as a module
        cmd = [str(ftops)] if ftops.exists() else [sys.executable, "-m", "render"]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}

        def fresh(argv: list[str], cold: bool = False) -> float:
            """Best of 3 fresh processes (`cold`: each with the parse cache emptied)."""
            best = float("inf")
            for _ in range(3):
                if cold:
                    shutil.rmtree(parsed, ignore_errors=True)
                t0 = time.perf_counter()
                proc = subprocess.run([*cmd, *argv], capture_output=True, text=True, env=env)
                best = min(best, time.perf_counter() - t0)
                assert proc.returncode == 0, proc.stdout + proc.stderr
            return best

        cold = fresh(["--repo", str(root), "lint"], cold=True)
        warm = fresh(["--repo", str(root), "lint"])
        print(f"  the same as a fresh `ftops lint` process, best of 3: {warm:.2f} s with the "
              f"parse cache (pre-commit, CI with its cache), {cold:.2f} s without (target: "
              f"< 2 s)")

        big = Path(tmp) / "big"
        paths = make_tree(big, args.big)
        changed = paths[len(paths) // 2]
        t0 = time.perf_counter()
        one = lint(Workspace(big), [changed])
        single = time.perf_counter() - t0
        assert one.ok
        print(f"lint one changed file in a {args.big}-experiment tree: {single * 1000:.0f} ms "
              "in process (target: < 1 s)")
        cli = fresh(["--repo", str(big), "lint", str(changed)])
        cli_cold = fresh(["--repo", str(big), "lint", str(changed)], cold=True)
        print(f"  the same as a fresh `ftops lint FILE` process (pre-commit), best of 3: "
              f"{cli:.2f} s; {cli_cold:.2f} s without the parse cache (target: < 0.3 s)")
        print(f"  a fresh `ftops --help` process, best of 3: {fresh(['--help']):.2f} s "
              "(target: < 0.3 s)")
        one_folder(Path(tmp) / "flat", (args.n, args.big))
        if not args.no_hostile:
            hostile(Path(tmp) / "hostile")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    return 0


def one_folder(root: Path, sizes: tuple[int, ...]) -> None:
    """Every experiment in one <dataset>/<model> folder: the duplicate rule's worst case
    (each experiment has every other as a sibling)."""
    times = []
    for n in sizes:
        make_tree(root, n, per_folder=n)
        t0 = time.perf_counter()
        result = lint(Workspace(root))
        times.append(time.perf_counter() - t0)
        assert result.ok, result.findings[:3]
        print(f"lint all: {n} experiments in one folder in {times[-1]:.2f} s")
    if len(times) == 2:
        print(f"  {sizes[1] / sizes[0]:.0f}x the experiments took {times[1] / times[0]:.1f}x "
              "the time (linear: about the same ratio; pairwise comparison: its square)")


def _bomb(levels: int) -> str:
    out = "    a: &a [x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, levels + 1):
        prev, name = chr(96 + i), chr(97 + i)
        out += f"    {name}: &{name} [{', '.join(['*' + prev] * 9)}]\n"
    return out


def hostile(root: Path) -> None:
    """Each hostile file linted alone (in process, warm), best of 5: refused, and how fast."""
    (target,) = make_tree(root, 1)
    clean = target.read_text()
    cases = {
        "alias bomb, 7 levels (1 KB -> 48M values)": clean.replace(
            "  tags: [bench]\n", "  tags: [bench]\n  x:\n" + _bomb(7)),
        "alias bomb, 9 levels (1.3 KB -> 3.9G values)": clean.replace(
            "  tags: [bench]\n", "  tags: [bench]\n  x:\n" + _bomb(9)),
        "lists nested 100,000 deep": clean.replace(
            "tags: [bench]", "tags: " + "[" * 100_000 + "]" * 100_000),
    }
    lint(Workspace(root), [target])  # warm
    for name, text in cases.items():
        target.write_text(text)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            result = lint(Workspace(root), [target])
            best = min(best, time.perf_counter() - t0)
            assert not result.ok, name
        print(f"refused {name}: {best * 1000:.1f} ms (target: < 100 ms)  "
              f"[{result.findings[0].message[:60]}]")
    target.write_text(clean)


if __name__ == "__main__":
    raise SystemExit(main())
