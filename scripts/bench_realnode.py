"""Measure the real node and the training image: build times (cold ones as recorded when
they were built, warm ones measured now), the image's size, the node's start (warm, and
with containerd's image store emptied), and one merge -> index entry of the 2-node CPU
experiment (apply -> pods Running, merge -> entry on the remote); optionally the wall
time of the real-node tests themselves.

    sudo .venv/bin/python scripts/bench_realnode.py [--rebuild-node] [--rebuild-node-cold]
        [--rebuild-image-layer] [--train-uncached] [--cold-containerd] [--tests]

--rebuild-node rebuilds kubelet, kube-proxy and CoreDNS with the Go build cache as it is
(warm after the first build); --rebuild-node-cold does it with an empty Go build cache
(the module cache stays: no downloads); --rebuild-image-layer rebuilds the training image
after a change under render/ (a copy of the sources with one comment added): the ftops
layer only; --train-uncached builds the Dockerfile's stage on the cached base without
the build cache (that stage's cold build); --cold-containerd empties the node's
containerd store first, so the node preloads the image's layers and the kubelet pulls
it again; --tests runs tests/devcluster/test_realnode.py and prints its wall time, and
that time less the control plane's start (which CI pays once for every cluster test).
The harness is the test package tests/devcluster (not part of the installed ftops).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from devcluster import build, cluster, image, node, realloop  # noqa: E402
from devcluster.kube import wait_for  # noqa: E402

NODE_COMPONENTS = ("node", "coredns")


def _rebuild_node(go_cache: str | None) -> float:
    """Seconds to build the node's binaries again (into a scratch folder: the cached ones
    stay), with the Go build cache as it is, or with `go_cache` (an empty folder)."""
    old = os.environ.get("GOCACHE")
    if go_cache is not None:
        os.environ["GOCACHE"] = go_cache
    try:
        with tempfile.TemporaryDirectory(prefix="ftops-bench-node-") as out:
            return sum(build.build_component(c, Path(out) / c) for c in NODE_COMPONENTS)
    finally:
        if go_cache is not None:
            if old is None:
                os.environ.pop("GOCACHE", None)
            else:
                os.environ["GOCACHE"] = old


def _rebuild_image_layer() -> float:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp)
        for rel in image.TRAIN_INPUTS:
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / rel, src / rel)
        shutil.copytree(ROOT / "render", src / "render",
                        ignore=shutil.ignore_patterns("__pycache__"))
        init = src / "render" / "__init__.py"
        init.write_text(init.read_text() + f"# bench {time.time()}\n")
        t = time.monotonic()
        image.ensure_train_image(root=src)
        return time.monotonic() - t


def _du(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 and out.stdout else 0


def _tests() -> dict[str, object]:
    """Run the real-node tests; their wall time and the per-phase durations pytest saw."""
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=0",
         "-vv", str(ROOT / "tests" / "devcluster" / "test_realnode.py")],
        cwd=ROOT, capture_output=True, text=True)
    wall = time.monotonic() - t
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    durations = {}
    for line in proc.stdout.splitlines():
        m = re.match(r"\s*([0-9.]+)s (setup|call|teardown)\s+\S+::(\S+)", line)
        if m and float(m.group(1)) >= 1:
            durations[f"{m.group(3)} ({m.group(2)})"] = float(m.group(1))
    if proc.returncode != 0:
        print(proc.stdout[-6000:], proc.stderr[-3000:], file=sys.stderr)
    return {"result": tail, "wall (s)": round(wall, 1), "durations >= 1 s": durations}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rebuild-node", action="store_true")
    ap.add_argument("--rebuild-node-cold", action="store_true")
    ap.add_argument("--rebuild-image-layer", action="store_true")
    ap.add_argument("--train-uncached", action="store_true")
    ap.add_argument("--cold-containerd", action="store_true")
    ap.add_argument("--tests", action="store_true")
    args = ap.parse_args()
    fig: dict[str, object] = {}
    t = time.monotonic()
    build.ensure_built()
    build.ensure_built(list(NODE_COMPONENTS))
    fig["node binaries: cached check (s)"] = round(time.monotonic() - t, 2)
    recorded = build.build_timings()
    fig["node binaries: build as recorded when built (s)"] = {
        k: round(v) for k, v in recorded.items() if k in NODE_COMPONENTS}
    if args.rebuild_node:
        fig["node binaries: rebuild, Go build cache warm (s)"] = round(_rebuild_node(None), 1)
    if args.rebuild_node_cold:
        with tempfile.TemporaryDirectory(prefix="ftops-bench-gocache-") as cache:
            fig["node binaries: rebuild, Go build cache empty (s)"] = round(
                _rebuild_node(cache), 1)
    t = time.monotonic()
    img = image.ensure_train_image()
    fig["image: cached check, warm (s)"] = round(time.monotonic() - t, 2)
    fig["image: cold build per stage as recorded when built (s)"] = image.build_timings()
    fig["image: size, uncompressed layers (GiB)"] = round(img.size_bytes / 2**30, 2)
    fig["image: buildah store on disk, all stages (GiB)"] = round(
        _du(image.cache_root() / "storage") / 2**30, 2)
    if args.rebuild_image_layer:
        fig["image: rebuild after a render/ change (s)"] = round(_rebuild_image_layer(), 1)
        t = time.monotonic()
        image.ensure_train_image()  # the repository's own image again
        fig["image: back to the repository's image (s)"] = round(time.monotonic() - t, 1)
    if args.train_uncached:
        fig["image: the Dockerfile's stage without build cache, base cached (s)"] = round(
            image.time_train_build_uncached(), 1)
    if args.cold_containerd:
        shutil.rmtree(node.cache_dir() / "containerd", ignore_errors=True)

    work = Path(tempfile.mkdtemp(prefix="ftops-bench-realnode-"))
    dc = cluster.DevCluster(work / "cluster")
    rn = None
    try:
        t = time.monotonic()
        dc.up()
        control_plane = time.monotonic() - t
        fig["control plane up (s)"] = round(control_plane, 1)
        t = time.monotonic()
        rn = node.RealNode(dc).up()
        fig["real node up (s)"] = round(time.monotonic() - t, 1)
        fig["real node up, parts (s)" + (" (containerd store emptied)"
                                         if args.cold_containerd else "")] = rn.timings
        with realloop.loop(work / "loop", dc, rn) as lp:
            name = "sft_lora_2node_v1"
            m = lp.merge(name, realloop.experiment_yaml())
            t_apply = time.monotonic()
            run_id, _ = lp.launch(m)

            def running() -> bool:
                pods = lp.pods(run_id)
                return len(pods) == 2 and all(p.status.phase == "Running" for p in pods)

            wait_for("pods Running", running, timeout=600, interval=0.5)
            fig["apply -> both pods Running (s)"] = round(time.monotonic() - t_apply, 1)
            entry = lp.wait_entry(name, run_id, {"succeeded", "failed"}, timeout=1200)
            fig["merge -> index entry on the remote (s)"] = round(
                time.monotonic() - m.merged_at, 1)
            fig["run"] = {"status": entry["status"], "train_runtime_s":
                          entry["metrics"]["train_runtime_s"], "steps":
                          entry["metrics"]["total_steps"]}
    finally:
        if rn is not None:
            rn.down()
        dc.down()
        shutil.rmtree(work, ignore_errors=True)
    if args.tests:
        tests = _tests()
        fig["real-node tests"] = tests
        wall = tests["wall (s)"]
        assert isinstance(wall, float)
        fig["real-node tests: added to a suite that starts the control plane anyway (s)"] = \
            round(wall - control_plane, 1)
    print(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
