"""Measure the real node and the training image: build times (cold ones as recorded when
they were built, warm ones measured now), the image's size, the node's start, and one
merge -> index entry of the 2-node CPU experiment (apply -> pods Running, merge -> entry).

    sudo .venv/bin/python scripts/bench_realnode.py [--rebuild-node] [--rebuild-image-layer]

--rebuild-node rebuilds kubelet, kube-proxy and CoreDNS with the Go build cache as it is
(warm after the first build); --rebuild-image-layer rebuilds the training image after a
change under render/ (a copy of the sources with one comment added): the ftops layer
only. The harness is the test package tests/devcluster (not part of the installed ftops).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from devcluster import build, cluster, image, node, realloop  # noqa: E402
from devcluster.kube import wait_for  # noqa: E402


def _rebuild_node() -> float:
    names = [n for c in ("node", "coredns") for n in build.versions.all_components()[c][3]]
    with tempfile.TemporaryDirectory() as keep:
        for n in names:
            shutil.move(str(build.binary(n)), Path(keep) / n)
        t = time.monotonic()
        try:
            build.ensure_built(["node", "coredns"])
        except BaseException:
            for n in names:
                if not build.binary(n).exists():
                    shutil.move(str(Path(keep) / n), build.binary(n))
            raise
        return time.monotonic() - t


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rebuild-node", action="store_true")
    ap.add_argument("--rebuild-image-layer", action="store_true")
    args = ap.parse_args()
    fig: dict[str, object] = {}
    t = time.monotonic()
    build.ensure_built()
    build.ensure_built(["node", "coredns"])
    fig["node binaries: cached check (s)"] = round(time.monotonic() - t, 2)
    recorded = build.build_timings()
    fig["node binaries: cold build as recorded (s)"] = {
        k: round(v) for k, v in recorded.items() if k in ("node", "coredns")}
    if args.rebuild_node:
        fig["node binaries: rebuild, Go cache warm (s)"] = round(_rebuild_node(), 1)
    t = time.monotonic()
    img = image.ensure_train_image()
    fig["image: cached check (s)"] = round(time.monotonic() - t, 2)
    fig["image: cold build stages as recorded (s)"] = image.build_timings()
    fig["image: size, uncompressed layers (GiB)"] = round(img.size_bytes / 2**30, 2)
    if args.rebuild_image_layer:
        fig["image: rebuild after a render/ change (s)"] = round(_rebuild_image_layer(), 1)
        image.ensure_train_image()  # the repository's own image again

    work = Path(tempfile.mkdtemp(prefix="ftops-bench-realnode-"))
    dc = cluster.DevCluster(work / "cluster")
    rn = None
    try:
        t = time.monotonic()
        dc.up()
        fig["control plane up (s)"] = round(time.monotonic() - t, 1)
        rn = node.RealNode(dc).up()
        fig["real node up (s)"] = rn.timings
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
    print(json.dumps(fig, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
