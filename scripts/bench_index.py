#!/usr/bin/env python3
"""Benchmarks for the outputs-index.

    python scripts/bench_index.py readme  [--runs 100000] [--full]
        Generate N synthetic RunRecords in memory (20 datasets x 10 models, 64 loss
        points each), time render_index -- every generated file: the map README, one
        README per dataset/model, one SVG loss curve per run -- (best of --repeat), and
        print runs/s, sizes and peak memory. Target: 100k runs < 5 s. Then, separately,
        the time to write those files into an empty folder, to re-check them when
        nothing changed, and (with --full) `ftops index readme` and `ftops index check`
        from N entry files on disk: with no state kept (every entry read, as in a fresh
        clone), then as fresh processes after a regeneration kept its state
        (render.browse.verified): nothing changed, one new entry. Targets: readme < 3 s,
        check < 5 s.

    python scripts/bench_index.py publish [--publishers 50] [--attempts 8] [--no-verifier]
        Start a bare git remote in a temp dir, run N concurrent publishers (threads,
        each with its own scratch clone) that publish one run each, as the post-run
        hook does (its run.json in file storage, its `launched` entry on main, a
        StorageVerifier: whoever lands sweeps the others' staged records), print
        p50/p95/max latency, attempts, and how many entries are missing on the remote
        (target 0), and check every generated file equals render_index(all runs).

    python scripts/bench_index.py publish --entries 100000 [--repeat 3]
        Seed a bare remote (partial clones allowed, as on GitHub) whose outputs-index/
        holds N synthetic entries and their generated files (written once, one
        `git add`), then time single publishes of one new record each (--repeat of
        them, one after another, each a fresh publisher); the baseline they replace is
        a full regeneration (`write_readme`) over the same tree, timed in the same run.
        Checks that outputs-index/ on the remote is, byte for byte, that full
        regeneration of every entry, and ends with the line
        `publish at N entries: <best s> s, lost <entries missing>`. Target < 2 s.

Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from render.browse import sync, verified  # noqa: E402
from render.browse.readme import render_index, render_readme  # noqa: E402
from render.record.publish import PublishError, publish  # noqa: E402
from render.record.runrecord import IDENTITY_FIELDS, Metrics, RunRecord  # noqa: E402
from render.record.trust import RUN_JSON, StorageVerifier  # noqa: E402

DATASETS = ["alpaca", "wiki", "gsm8k", "oasst", "dolly", "code-alpaca", "slimorca", "ultrachat",
            "sharegpt", "lima", "flan", "openhermes", "metamath", "orca-math", "tulu-3",
            "wizardlm", "hh-rlhf", "ultrafeedback", "magpie", "no-robots"]  # fmt: skip
MODELS = ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b-v0.3", "gemma-2-9b", "phi-3-mini",
          "llama-3.2-3b", "qwen2.5-14b", "gemma-2-2b", "mixtral-8x7b", "olmo-2-7b"]  # fmt: skip
POINTS = 64


def _loss_points(rng: random.Random, total_steps: int) -> list[list[float]]:
    """64 [step, loss] pairs as the hook stores them: evenly picked logging steps,
    a decaying noisy loss rounded to 4 significant digits."""
    start, floor, rate = rng.uniform(1.5, 3.0), rng.uniform(0.2, 0.9), rng.uniform(2, 8)
    out = []
    for i in range(POINTS):
        step = max(1, round((i + 1) * total_steps / POINTS))
        frac = step / total_steps
        loss = floor + (start - floor) * 2.718281828 ** (-rate * frac)
        out.append([step, float(f"{loss * rng.uniform(0.95, 1.05):.4g}")])
    return out
STATUSES = ["succeeded"] * 6 + ["failed", "cancelled", "running", "launched"]


def synthetic(n: int, seed: int = 0) -> list[RunRecord]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data
    out = []
    for i in range(n):
        ds, model = rng.choice(DATASETS), rng.choice(MODELS)
        lr = rng.choice([1e-5, 2e-5, 5e-5, 1e-4, 2e-4])
        rank = rng.choice([8, 16, 32, 64])
        exp = f"sft_lora_r{rank}_lr{lr:g}_v{rng.randint(1, 9)}"
        status = rng.choice(STATUSES)
        done = status in ("succeeded", "failed")
        total_steps = rng.choice([300, 600, 1200, 2500, 5000, 12000]) * rng.choice([1, 2, 3])
        out.append(
            RunRecord(
                run_id=f"20260101T{i:06d}Z-{rng.getrandbits(24):06x}",
                experiment=exp,
                experiment_path=f"experiments/{ds}/{model}/{exp}.yaml",
                dataset=ds,
                model=model,
                config_hash=f"sha256:{rng.getrandbits(64):016x}",
                git_sha=f"{rng.getrandbits(160):040x}",
                owner=rng.choice(["jk", "ana", "li | wei", "o'brien", "<bot>"]),
                mode="cluster",
                nodes=rng.choice([1, 2, 4]),
                gpus_per_node=8,
                status=status,
                exit_code=0 if status == "succeeded" else (1 if status == "failed" else None),
                duration_s=rng.uniform(60, 86400) if done else None,
                metrics=Metrics(
                    final_train_loss=rng.uniform(0.3, 2.5) if done else None,
                    best_train_loss=rng.uniform(0.2, 2.0) if done else None,
                    eval_loss=rng.uniform(0.3, 2.5) if done and rng.random() < 0.8 else None,
                ),
                hyperparameters={
                    "finetuning_type": "lora",
                    "learning_rate": lr,
                    "num_train_epochs": float(rng.choice([1, 2, 3])),
                    "lora_rank": rank,
                    "per_device_train_batch_size": rng.choice([1, 2, 4]),
                },
                artifacts_url=f"https://console.cloud.google.com/storage/browser/b/{ds}/{model}/{exp}",
                loss_curve=f"gs://b/experiments/{ds}/{model}/{exp}/training_loss.png",
                tracker_url=f"https://mlflow.example.com/#/experiments/1/runs/{i}",
                loss_points=_loss_points(rng, total_steps) if status != "launched" else [],
            )
        )
    return out


def bench_readme(args: argparse.Namespace) -> bool:
    t0 = time.perf_counter()
    records = synthetic(args.runs)
    gen_s = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu = [], []
    files: dict[str, str] = {}
    for _ in range(args.repeat):
        files = {}
        t, c = time.perf_counter(), time.process_time()
        files = render_index(records)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    best = min(times)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    render_index(records)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    sizes = {k: len(v.encode()) for k, v in files.items()}
    readmes = [k for k in files if k.endswith("/README.md")]
    svgs = [k for k in files if k.endswith(".svg")]
    print(f"generated {args.runs} records ({POINTS} loss points each but 'launched') "
          f"in {gen_s:.2f} s")
    print(
        f"render_index (all generated content, in memory): best {best:.3f} s of "
        f"{args.repeat} (all: {', '.join(f'{t:.3f}' for t in times)}) "
        f"-> {args.runs / best:,.0f} runs/s"
    )
    print(
        f"  CPU time: best {min(cpu):.3f} s; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs (wall time suffers when the machine is busy)"
    )
    print(
        f"files: {len(files)} = top README {sizes['README.md'] / 1e3:.1f} kB + "
        f"{len(readmes)} model READMEs (largest "
        f"{max(sizes[k] for k in readmes) / 1e6:.2f} MB) + {len(svgs)} SVGs "
        f"(mean {sum(sizes[k] for k in svgs) / max(1, len(svgs)):.0f} B); "
        f"{sum(sizes.values()) / 1e6:.1f} MB in all"
    )
    print(
        f"peak memory: render allocations {peak / 2**20:.0f} MiB (tracemalloc); "
        f"process max RSS {rss_after / 1024:.0f} MiB "
        f"(records alone: {rss_before / 1024:.0f} MiB)"
    )
    ok = best < args.target_s
    print(f"target < {args.target_s} s: {'OK' if ok else 'MISSED'}")

    with tempfile.TemporaryDirectory(prefix="bench-index-", dir=args.tmp) as tmp:
        root = Path(tmp) / "outputs-index"
        root.mkdir()
        t = time.perf_counter()
        written = sync._sync_files(root, files, sync._scan_generated(root), write=True)
        write_s = time.perf_counter() - t
        t = time.perf_counter()
        again = sync._sync_files(root, files, sync._scan_generated(root), write=False)
        check_s = time.perf_counter() - t
        print(f"write {len(written)} files into an empty folder: {write_s:.2f} s; "
              f"re-check them unchanged (scan + read + compare): {check_s:.2f} s "
              f"({len(again)} differ)")
        if args.full:
            del files
            t = time.perf_counter()
            _write_entries(root, records)
            print(f"--full: wrote {len(records)} entry files in {time.perf_counter() - t:.1f} s")
            like = records[0]
            del records  # memory: the commands read the entries from disk
            ok = _bench_commands(args, Path(tmp), root, like) and ok
    return ok


def _bench_commands(args: argparse.Namespace, tmp: Path, root: Path, like: RunRecord) -> bool:
    """`ftops index readme` and `ftops index check` from the entry files on disk: first
    with no state kept (a fresh clone: every entry read), then as people run them, fresh
    processes after a regeneration left its state (render.browse.verified): nothing
    changed, one new entry (regenerated, and found stale by a check)."""
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")  # a cache of its own, empty
    t = time.perf_counter()
    sync.write_readme(root)
    cold_readme = time.perf_counter() - t
    verified.forget(root)
    t = time.perf_counter()
    assert sync.check_readme(root)  # current: keeps the state
    cold_check = time.perf_counter() - t
    print(f"no state (a fresh clone): `index readme` {cold_readme:.2f} s, `index check` "
          f"{cold_check:.2f} s (every entry read and rendered; load average "
          f"{os.getloadavg()[0]:.1f})")
    ftops = [str(Path(sys.executable).parent / "ftops"), "--repo", str(root.parent), "index"]

    def timed(action: str, expect: int) -> float:
        took = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            proc = subprocess.run([*ftops, action], capture_output=True, text=True,
                                  check=False)
            took.append(time.perf_counter() - t)
            assert proc.returncode == expect, proc.stderr[-2000:]
        return min(took)

    check_same = timed("check", 0)
    rows = [("index check, nothing changed", check_same, args.check_target_s)]
    new = replace(like, run_id=like.run_id[:-6] + "ffffff", started_at="2026-12-01T00:00:00Z")
    _write_entries(root, [new])
    rows.append(("index check, one new entry (found stale)", timed("check", 1),
                 args.check_target_s))
    t = time.perf_counter()
    subprocess.run([*ftops, "readme"], check=True, capture_output=True)
    rows.append(("index readme, one new entry", time.perf_counter() - t,
                 args.readme_target_s))
    rows.append(("index readme, nothing changed", timed("readme", 0), args.readme_target_s))
    rows.append(("index check after it", timed("check", 0), args.check_target_s))
    ok = True
    for label, took, target in rows:
        met = took < target
        ok = ok and met
        print(f"{label}: {took:.2f} s (fresh process, best of {args.repeat} where "
              f"repeated); target < {target} s: {'OK' if met else 'MISSED'}; vs no state "
              f"{(cold_check if 'check' in label else cold_readme) / took:.0f}x")
    verified.forget(root)  # the incremental result is the full regeneration's
    equal = sync.check_readme(root)
    print(f"after the incremental runs, a check with no state (every entry) passes: {equal}")
    return ok and equal


def _write_entries(root: Path, records: list[RunRecord]) -> None:
    made: set[Path] = set()
    for r in records:
        path = root / r.index_key
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_text(r.to_json(), encoding="utf-8")


def _git(*a: str, cwd: Path | None = None) -> None:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd or Path.cwd()),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@example.com",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@example.com",
    }
    subprocess.run(["git", *a], cwd=cwd, env=env, check=True, capture_output=True)


def _show(bare: Path, path: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(bare), "show", f"main:{path}"],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1"},
    ).stdout


def _git_out(*a: str) -> str:
    return subprocess.run(["git", *a], check=True, capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1",
                               "GIT_CONFIG_GLOBAL": os.devnull}).stdout


def bench_publish_at_scale(args: argparse.Namespace) -> bool:
    n = args.entries
    with tempfile.TemporaryDirectory(prefix="bench-publish-", dir=args.tmp) as tmp:
        base = Path(tmp)
        seed, bare = base / "seed", base / "remote.git"
        root = seed / "outputs-index"
        t = time.perf_counter()
        records = synthetic(n)
        new = [replace(r, run_id=f"20270101T{i:06d}Z-000000")
               for i, r in enumerate(synthetic(args.repeat, seed=99))]
        _write_entries(root, records)
        del records
        sync.write_readme(root)
        print(f"seed: {n} entries and their generated files written in "
              f"{time.perf_counter() - t:.1f} s")
        t = time.perf_counter()
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
        _git("config", "uploadpack.allowFilter", "true", cwd=bare)  # as GitHub does
        tree = ("--git-dir", str(bare), "--work-tree", str(seed))
        _git(*tree, "add", "--all", cwd=seed)
        _git(*tree, "commit", "--quiet", "-m", f"seed: {n} entries", cwd=seed)
        # packed, as a hosted remote's objects are (and no gc in the request path)
        _git("repack", "-a", "-d", "-q", "--window=0", cwd=bare)
        _git("config", "gc.auto", "0", cwd=bare)
        print(f"seed: committed to the bare remote in {time.perf_counter() - t:.1f} s "
              "(one `git add`, then `git repack`)")
        # the seed wrote ~2 GB; let the disk take it before timing (else the publishes
        # below pay for flushing the seed's pages)
        t = time.perf_counter()
        os.sync()
        print(f"seed: flushed to disk in {time.perf_counter() - t:.1f} s")

        took = []
        for r in new:
            t = time.perf_counter()
            res = publish([r], remote=bare.as_uri(), workdir=base / "work", attempts=1)
            took.append(time.perf_counter() - t)
            assert res.published == (r.run_id,), res
        best = min(took)
        print(f"publish of one new record at {n}+ entries: best {best:.2f} s of "
              f"{len(took)} ({', '.join(f'{x:.2f}' for x in took)}); load average "
              f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")

        # the baseline: what every publish did before, a full regeneration over the
        # same tree (the new entries in it), not counting the git cost of a full clone
        for r in new:
            (root / r.index_key).write_text(r.to_json(), encoding="utf-8")
        t = time.perf_counter()
        sync.write_readme(root)
        full_s = time.perf_counter() - t
        print(f"baseline: full regeneration (write_readme) over the same tree: {full_s:.2f} s "
              f"-> the publish takes {best / full_s:.1%} of it ({full_s / best:.0f}x faster)")

        # the remote's outputs-index/ must be that full regeneration, byte for byte
        _git("--git-dir", str(bare), "--work-tree", str(seed), "add", "--all", cwd=seed)
        want = _git_out("--git-dir", str(bare), "write-tree", "--prefix=outputs-index/")
        got = _git_out("--git-dir", str(bare), "rev-parse", "main:outputs-index")
        listed = _git_out("--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main",
                          "outputs-index/").split()
        on_remote = {p for p in listed if p.endswith(".json")}
        on_disk = {"outputs-index/" + p.relative_to(root).as_posix()
                   for p in root.rglob("*.json")}
        lost = len(on_disk - on_remote)
        exact = want.strip() == got.strip()
        print(f"remote outputs-index/ equals a full regeneration of all "
              f"{len(on_disk)} entries: {exact}")
        ok = exact and lost == 0 and best < args.target_s
        print(f"target < {args.target_s} s: {'OK' if best < args.target_s else 'MISSED'}")
        print(f"publish at {n} entries: {best:.2f} s, lost {lost}")
        return ok


def bench_publish(args: argparse.Namespace) -> bool:
    if args.entries:
        return bench_publish_at_scale(args)
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        root = Path(tmp)
        bare = root / "remote.git"
        _git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
        seed = root / "seed"
        _git("init", "--quiet", "--initial-branch=main", str(seed))
        (seed / "outputs-index").mkdir()
        (seed / "outputs-index/README.md").write_text(render_readme([]))
        _git("add", "-A", cwd=seed)
        _git("commit", "--quiet", "-m", "seed", cwd=seed)
        _git("push", "--quiet", str(bare), "main", cwd=seed)
        url = bare.as_uri()
        records = synthetic(args.publishers, seed=1)
        if not args.no_verifier:
            # as the real post-run hook: each run's final record is its run.json in
            # storage and its launcher's `launched` entry is on main (one publish, as
            # launches go out before their runs end), so a publisher that lands also
            # lands the records other publishers staged, once it has checked them
            store = root / "store"
            for i, r in enumerate(records):
                folder = store / r.dataset / r.model / r.experiment / r.run_id
                folder.mkdir(parents=True)
                records[i] = r = replace(r, artifacts_uri=folder.as_uri())
                (folder / RUN_JSON).write_text(r.to_json(), encoding="utf-8")
            publish([RunRecord(**{f: getattr(r, f) for f in (*IDENTITY_FIELDS, "mode")},
                               status="launched") for r in records],
                    remote=url, workdir=root / "work")

        def one(r: RunRecord) -> tuple[float, int, str]:
            t = time.perf_counter()
            try:
                res = publish(
                    [r],
                    remote=url,
                    workdir=root / "work",
                    attempts=args.attempts,
                    base_delay=args.base_delay,
                    max_delay=args.max_delay,
                    verify=None if args.no_verifier else StorageVerifier(),
                )
                return time.perf_counter() - t, res.attempts, ""
            except PublishError as exc:
                return time.perf_counter() - t, args.attempts, str(exc)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.publishers) as pool:
            results = list(pool.map(one, records))
        wall = time.perf_counter() - t0

        lat = sorted(r[0] for r in results)
        att = [r[1] for r in results]
        errors = [r[2] for r in results if r[2]]
        present = 0
        for r in records:
            try:
                _show(bare, f"outputs-index/{r.index_key}")
                present += 1
            except subprocess.CalledProcessError:
                pass
        lost = len(records) - present
        expected = render_index(records)
        def shows(path: str, text: str) -> bool:
            try:
                return _show(bare, path) == text
            except subprocess.CalledProcessError:  # missing (a record that did not land)
                return False

        readme_ok = all(shows(f"outputs-index/{k}", v) for k, v in expected.items())
        listed = subprocess.run(
            ["git", "--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main",
             "outputs-index"], check=True, capture_output=True, text=True,
            env={"PATH": os.environ["PATH"], "GIT_CONFIG_NOSYSTEM": "1"},
        ).stdout.split()  # fmt: skip
        generated = {p[len("outputs-index/") :] for p in listed if not p.endswith(".json")}
        readme_ok = readme_ok and generated == set(expected)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, round(p * (len(lat) - 1)))]

        print(
            f"{args.publishers} concurrent publishers, attempts={args.attempts}, "
            f"backoff {args.base_delay}..{args.max_delay} s, {os.cpu_count()} CPUs, "
            + ("no verifier (each lands its own records only)" if args.no_verifier else
               "verifier as the post-run hook's (landers sweep verified staged records)")
        )
        print(
            f"latency p50 {pct(0.5):.2f} s  p95 {pct(0.95):.2f} s  max {lat[-1]:.2f} s  "
            f"mean {statistics.mean(lat):.2f} s; wall {wall:.1f} s"
        )
        print(f"attempts: mean {statistics.mean(att):.1f}, max {max(att)}")
        print(f"publish errors: {len(errors)}; entries lost: {lost}; "
              f"generated files exact ({len(expected)}): {readme_ok}")
        for e in errors[:3]:
            print("  error:", e[:200], "...", e[-300:])
        return lost == 0 and readme_ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("readme")
    r.add_argument("--runs", type=int, default=100_000)
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--target-s", type=float, default=5.0)
    r.add_argument("--full", action="store_true",
                   help="also write N entry files and time `ftops index readme` and "
                        "`ftops index check` from them")
    r.add_argument("--readme-target-s", type=float, default=3.0)
    r.add_argument("--check-target-s", type=float, default=5.0)
    r.add_argument("--tmp", default=None, help="folder for the temporary index")
    q = sub.add_parser("publish")
    q.add_argument("--publishers", type=int, default=50)
    q.add_argument("--attempts", type=int, default=8)
    q.add_argument("--base-delay", type=float, default=0.2)
    q.add_argument("--max-delay", type=float, default=5.0)
    q.add_argument("--no-verifier", action="store_true",
                   help="publishers that cannot verify each other's staged records "
                        "(the post-run hook can: StorageVerifier)")
    q.add_argument("--entries", type=int, default=0,
                   help="time single publishes into an index of this many entries")
    q.add_argument("--repeat", type=int, default=3, help="(--entries) publishes timed")
    q.add_argument("--target-s", type=float, default=2.0, help="(--entries) per publish")
    q.add_argument("--tmp", default=None, help="folder for the temporary repositories")
    args = p.parse_args()
    ok = bench_readme(args) if args.cmd == "readme" else bench_publish(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
