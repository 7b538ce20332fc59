#!/usr/bin/env python3
"""Benchmarks for the outputs-index.

    python scripts/bench_index.py readme  [--runs 100000]
        Generate N synthetic RunRecords in memory, time render_readme (best of
        --repeat), print runs/s, README size and peak memory. Target: 100k runs < 5 s.

    python scripts/bench_index.py publish [--publishers 50] [--attempts 8]
        Start a bare git remote in a temp dir, run N concurrent publishers (threads,
        each with its own scratch clone) that publish one run each, print p50/p95/max
        latency, attempts, and how many entries are missing on the remote (target 0),
        and check the README equals render_readme(all runs).

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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from render.index import render_readme  # noqa: E402
from render.publish import PublishError, publish  # noqa: E402
from render.record import Metrics, RunRecord  # noqa: E402

DATASETS = ["alpaca", "wiki", "gsm8k", "oasst", "dolly", "code-alpaca", "slimorca", "ultrachat"]
MODELS = ["llama-3.1-8b", "qwen2.5-7b", "mistral-7b-v0.3", "gemma-2-9b", "phi-3-mini"]
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
            )
        )
    return out


def bench_readme(args: argparse.Namespace) -> bool:
    t0 = time.perf_counter()
    records = synthetic(args.runs)
    gen_s = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, cpu = [], []
    text = ""
    for _ in range(args.repeat):
        t, c = time.perf_counter(), time.process_time()
        text = render_readme(records)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    best = min(times)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    render_readme(records)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"generated {args.runs} records in {gen_s:.2f} s")
    print(
        f"render_readme: best {best:.3f} s of {args.repeat} "
        f"(all: {', '.join(f'{t:.3f}' for t in times)}) -> {args.runs / best:,.0f} runs/s"
    )
    print(
        f"  CPU time: best {min(cpu):.3f} s; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs (wall time suffers when the machine is busy)"
    )
    print(f"README: {len(text.encode()) / 1e6:.1f} MB, {text.count(chr(10))} lines")
    print(
        f"peak memory: render allocations {peak / 2**20:.0f} MiB (tracemalloc); "
        f"process max RSS {rss_after / 1024:.0f} MiB "
        f"(records alone: {rss_before / 1024:.0f} MiB)"
    )
    ok = best < args.target_s
    print(f"target < {args.target_s} s: {'OK' if ok else 'MISSED'}")
    return ok


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


def bench_publish(args: argparse.Namespace) -> bool:
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
        readme_ok = _show(bare, "outputs-index/README.md") == render_readme(records)

        def pct(p: float) -> float:
            return lat[min(len(lat) - 1, round(p * (len(lat) - 1)))]

        print(
            f"{args.publishers} concurrent publishers, attempts={args.attempts}, "
            f"backoff {args.base_delay}..{args.max_delay} s, {os.cpu_count()} CPUs"
        )
        print(
            f"latency p50 {pct(0.5):.2f} s  p95 {pct(0.95):.2f} s  max {lat[-1]:.2f} s  "
            f"mean {statistics.mean(lat):.2f} s; wall {wall:.1f} s"
        )
        print(f"attempts: mean {statistics.mean(att):.1f}, max {max(att)}")
        print(f"publish errors: {len(errors)}; entries lost: {lost}; README exact: {readme_ok}")
        for e in errors[:3]:
            print("  error:", e[:300])
        return lost == 0 and readme_ok


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("readme")
    r.add_argument("--runs", type=int, default=100_000)
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--target-s", type=float, default=5.0)
    q = sub.add_parser("publish")
    q.add_argument("--publishers", type=int, default=50)
    q.add_argument("--attempts", type=int, default=8)
    q.add_argument("--base-delay", type=float, default=0.2)
    q.add_argument("--max-delay", type=float, default=5.0)
    args = p.parse_args()
    ok = bench_readme(args) if args.cmd == "readme" else bench_publish(args)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
