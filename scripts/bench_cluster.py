"""Apply and status at scale against the local control plane (tests/devcluster).

    python scripts/bench_cluster.py [--n 100]

Uses the cluster of $FTOPS_DEVCLUSTER_KUBECONFIG when set (`scripts/devcluster
up`), else starts one. Prints the time to server-side apply N rendered experiments
(2 objects each) and the time of `status` over N runs; deletes them afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from bench_common import make_tree  # noqa: E402

from render.launch.cluster import RUN_LABEL, Cluster, apply, status  # noqa: E402
from render.manifests.overlay import render  # noqa: E402
from render.manifests.runspec import RunSpec  # noqa: E402
from render.propose.experiment import Workspace  # noqa: E402
from render.propose.lint import lint  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100)
    args = parser.parse_args()
    dc = None
    kubeconfig = os.environ.get("FTOPS_DEVCLUSTER_KUBECONFIG")
    if not kubeconfig:
        from devcluster import cluster as devcluster

        dc = devcluster.DevCluster(devcluster.new_workdir())
        dc.up()
        kubeconfig = str(dc.kubeconfig)
    try:
        from render.launch.cluster import connect

        cluster = Cluster(connect(kubeconfig), "llm-experiments")
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp) / "repo"
            make_tree(root, args.n)
            commit = os.urandom(20).hex()
            specs = [RunSpec(e, commit) for e in lint(Workspace(root)).experiments]
            rendered = render(specs, root / ".rendered", root)
            runs = [(r.spec.run_id, r.spec.exp.path, r.manifests) for r in rendered]
            t0 = time.perf_counter()
            results = apply(cluster, runs)
            t_apply = time.perf_counter() - t0
            assert sum(r.action == "created" for r in results) == len(runs)
            t0 = time.perf_counter()
            again = apply(cluster, runs)
            t_again = time.perf_counter() - t0
            assert all(r.action == "unchanged" for r in again)
            t0 = time.perf_counter()
            rows = status(cluster)
            t_status = time.perf_counter() - t0
            ours = [r for r in rows if r.run_id in {s.run_id for s in specs}]
            assert len(ours) == len(runs)
            print(f"apply {len(runs)} experiments ({2 * len(runs)} objects, server-side "
                  f"apply): {t_apply:.2f} s = {t_apply / len(runs) * 1000:.0f} ms each")
            print(f"re-apply (idempotent, nothing sent): {t_again:.2f} s")
            print(f"status over {len(rows)} runs: {t_status:.2f} s "
                  f"(states: {sorted({r.state for r in ours})})")
            jobsets = cluster.resource("jobset.x-k8s.io", "v1alpha2", "jobsets")
            jobsets.delete(namespace="llm-experiments", label_selector=f"{RUN_LABEL}",
                           body={"propagationPolicy": "Background"})
    finally:
        if dc is not None:
            dc.down()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
