#!/usr/bin/env python3
"""Measure `Storage.upload_dir` throughput for several worker counts.

    python scripts/bench_upload.py                       # local GCS emulator (started here)
    python scripts/bench_upload.py --files 200 --size-kib 256 --workers 1,8,16
    python scripts/bench_upload.py --root gs://my-bucket/bench   # a real bucket (ADC)
    python scripts/bench_upload.py --root /tmp/bench-store       # the file backend

Each run uploads to a fresh key prefix (so nothing is skipped), then a second call on the
same prefix shows the cost of the "already there" check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from render.record.storage import open_storage  # noqa: E402


def make_files(base: Path, count: int, size: int) -> None:
    for i in range(count):
        sub = base / f"checkpoint-{i // 50}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"shard-{i:04d}.bin").write_bytes(os.urandom(size))


def _one_run(root: str | None, src: Path, workers: int, count: int) -> tuple[float, float]:
    """(MB/s of a full upload to a fresh prefix, seconds of the no-op re-run)."""
    with ExitStack() as stack:
        if root is None:
            # A fresh emulator per run: it rewrites the metadata of *every* object it holds
            # on each upload, so it slows down as it fills and runs would not compare.
            from gcs_emulator import EMULATOR_PROJECT, EmulatorProcess

            emu = stack.enter_context(EmulatorProcess())
            emu.create_bucket("bench-bucket")
            os.environ["STORAGE_EMULATOR_HOST"] = emu.host
            os.environ["GOOGLE_CLOUD_PROJECT"] = EMULATOR_PROJECT
            root = "gs://bench-bucket/bench"
        store = open_storage(root)
        store.write_text(f"warmup-{time.time_ns()}.txt", "x")  # client, imports, connection
        prefix = f"run-{workers}-{time.time_ns()}"
        report = store.upload_dir(src, prefix, workers=workers)
        assert len(report.uploaded) == count, report
        again = store.upload_dir(src, prefix, workers=workers)
        assert again.uploaded == [] and len(again.skipped) == count
        return report.mb_per_s, again.seconds


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--root", help="storage root; default: a gcp-storage-emulator started here")
    ap.add_argument("--files", type=int, default=200)
    ap.add_argument("--size-kib", type=int, default=256)
    ap.add_argument("--workers", default="1,8", help="comma-separated worker counts")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    worker_counts = [int(w) for w in args.workers.split(",")]

    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        src = Path(tmp)
        make_files(src, args.files, args.size_kib * 1024)
        total_mb = args.files * args.size_kib * 1024 / 1e6
        where = args.root or "a fresh local gcp-storage-emulator per run"
        print(
            f"target: {where}; data: {args.files} files x {args.size_kib} KiB = "
            f"{total_mb:.1f} MB; {args.repeat} interleaved runs per worker count; "
            f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
        )
        rates: dict[int, list[float]] = {w: [] for w in worker_counts}
        recheck: dict[int, list[float]] = {w: [] for w in worker_counts}
        for _ in range(args.repeat):
            for workers in worker_counts:
                rate, again = _one_run(args.root, src, workers, args.files)
                rates[workers].append(rate)
                recheck[workers].append(again)
        for workers in worker_counts:
            med = statistics.median(rates[workers])
            print(
                f"workers={workers:>3}: {med:7.1f} MB/s median, {max(rates[workers]):7.1f} best "
                f"({total_mb / med:.2f} s); re-run with nothing to send: "
                f"{statistics.median(recheck[workers]):.2f} s"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
