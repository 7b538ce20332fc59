"""Measure the devcluster: cold build time (recorded when the binaries were built), warm
start time (up -> ready -> Kueue configured) and the peak resident memory of all its
processes combined while starting and while running a small JobSet.

    python scripts/bench_devcluster.py [--rebuild]

The harness is the test package tests/devcluster (not part of the installed ftops).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from devcluster import build, cluster, kube  # noqa: E402


def _rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


class RssSampler(threading.Thread):
    """Samples the summed VmRSS of a changing set of pids."""

    def __init__(self, pids: Callable[[], list[int]], interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak_kib = 0
        self.peak_detail: dict[int, int] = {}
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            detail = {p: _rss_kib(p) for p in self.pids()}
            total = sum(detail.values())
            if total > self.peak_kib:
                self.peak_kib, self.peak_detail = total, detail
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--rebuild",
        action="store_true",
        help="delete the built binaries first and time a build (the Go build "
        "cache in ~/.cache/go-build still helps; clear it for a true cold "
        "build)",
    )
    ap.add_argument("--no-workload", action="store_true")
    args = ap.parse_args(argv)

    result: dict[str, object] = {}
    if args.rebuild:
        shutil.rmtree(build.bin_dir(), ignore_errors=True)
        t = time.monotonic()
        build.ensure_built()
        result["build_s"] = round(time.monotonic() - t, 1)
    result["recorded_cold_build_s"] = {k: round(v, 1) for k, v in build.build_timings().items()}
    build.ensure_built()

    dc = cluster.DevCluster(cluster.new_workdir())
    names: dict[int, str] = {}

    def pids() -> list[int]:
        out = []
        for p in dc.procs:
            if p.popen is not None:
                out.append(p.pid)
                names[p.pid] = p.name
        return out

    sampler = RssSampler(pids)
    sampler.start()
    t = time.monotonic()
    try:
        dc.up()
    except BaseException:
        sampler.stop()
        dc.down()
        raise
    result["warm_start_s"] = round(time.monotonic() - t, 1)
    result["start_phases_s"] = {k: round(v, 1) for k, v in dc.timings.items()}
    try:
        if not args.no_workload:
            from kubernetes import client

            co = client.CustomObjectsApi(dc.api_client())
            js = _small_jobset("bench")
            t = time.monotonic()
            kube.create_from_yaml(dc, js)
            kube.wait_for(
                "bench JobSet Completed",
                lambda: kube.is_true(
                    co.get_namespaced_custom_object(
                        "jobset.x-k8s.io", "v1alpha2", "llm-experiments", "jobsets", "bench"
                    ),
                    "Completed",
                ),
                timeout=120,
            )
            result["jobset_submit_to_completed_s"] = round(time.monotonic() - t, 1)
    finally:
        try:
            sampler.stop()
        finally:
            dc.down()
    result["peak_rss_mib_total"] = round(sampler.peak_kib / 1024)
    result["peak_rss_mib_by_process"] = {
        names.get(p, str(p)): round(k / 1024) for p, k in sampler.peak_detail.items()
    }
    result["cpus"] = os.cpu_count()
    print(json.dumps(result, indent=2))
    return 0


def _small_jobset(name: str) -> dict[str, object]:
    pod = {
        "restartPolicy": "Never",
        "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": "trainer",
                "image": "registry.invalid/x:1",
                "resources": {"limits": {"nvidia.com/gpu": "8"}},
            }
        ],
    }
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {
            "name": name,
            "namespace": "llm-experiments",
            "labels": {"kueue.x-k8s.io/queue-name": "research"},
        },
        "spec": {
            "suspend": True,
            "replicatedJobs": [
                {
                    "name": "node",
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "parallelism": 2,
                            "completions": 2,
                            "completionMode": "Indexed",
                            "backoffLimit": 0,
                            "template": {"spec": pod},
                        }
                    },
                }
            ],
        },
    }


if __name__ == "__main__":
    raise SystemExit(main())
