"""``scripts/devcluster up|down|env|status|build`` (PYTHONPATH=tests python -m devcluster)."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from devcluster import build, cluster


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="scripts/devcluster", description="Local Kubernetes control plane (no Docker)"
    )
    ap.add_argument(
        "--dir",
        default=None,
        help="state directory (default $FTOPS_DEVCLUSTER_DIR or /tmp/ftops-devcluster)",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build if needed, start, wait until ready")
    up.add_argument(
        "--foreground", action="store_true", help="stay attached; Ctrl-C stops the cluster"
    )
    up.add_argument("--timings", action="store_true", help="print per-component start times")
    up.add_argument(
        "--run-seconds", type=float, default=3.0, help="how long fake pods run before they succeed"
    )
    up.add_argument(
        "--no-k8s-base", action="store_true", help="do not apply k8s-base/cluster-admin"
    )
    up.add_argument("--real-node", action="store_true",
                    help="also start the real node (root; needs --foreground: it is torn "
                         "down when this process ends)")
    sub.add_parser("down", help="stop the cluster started by `up` (and a real node's leftovers)")
    sub.add_parser("env", help="print KUBECONFIG=... for the running cluster")
    sub.add_parser("status", help="print the state file")
    build_p = sub.add_parser("build", help="only build the binaries")
    build_p.add_argument("--node", action="store_true",
                         help="also the real node's binaries and the training image")
    args = ap.parse_args(argv)
    workdir = Path(args.dir) if args.dir else cluster.default_workdir()

    if args.cmd == "build":
        t = time.monotonic()
        print(f"binaries in {build.ensure_built()} ({time.monotonic() - t:.0f}s)")
        if args.node:
            from devcluster import image

            build.ensure_built(["node", "coredns"])
            img = image.ensure_train_image()
            print(f"training image {img.name} {img.digest} ({img.size_bytes / 2**30:.2f} GiB) "
                  f"({time.monotonic() - t:.0f}s in all)")
        return 0
    if args.cmd == "down":
        from devcluster import node

        leftover = node.NodeState.load()
        if leftover is not None:
            node.teardown(leftover)
        stopped = cluster.stop_from_state(workdir)
        print("stopped" if stopped else f"no cluster running in {workdir}")
        return 0
    if args.cmd in ("env", "status"):
        state_file = workdir / "state.json"
        if not state_file.exists():
            print(f"no cluster running in {workdir}", file=sys.stderr)
            return 1
        state = json.loads(state_file.read_text())
        if args.cmd == "env":
            print(f"KUBECONFIG={state['kubeconfig']}")
        else:
            print(json.dumps(state, indent=2))
        return 0

    # up
    if (workdir / "state.json").exists():
        print(f"a cluster is already running in {workdir}; `down` first", file=sys.stderr)
        return 1
    if workdir.exists():
        shutil.rmtree(workdir)
    opts = cluster.Options(
        run_seconds=args.run_seconds,
        apply_k8s_base=not args.no_k8s_base,
        die_with_parent=args.foreground,
    )
    if args.real_node and not args.foreground:
        print("--real-node needs --foreground (the node is torn down when `up` ends)",
              file=sys.stderr)
        return 2
    dc = cluster.DevCluster(workdir, opts)
    realnode = None
    try:
        dc.up()
        if args.real_node:
            from devcluster import node

            realnode = node.RealNode(dc).up()
            print(f"real node {node.NODE_NAME} Ready; training image {realnode.image_ref}",
                  file=sys.stderr)
            if args.timings:
                for k, v in realnode.timings.items():
                    print(f"node: {k:26s} {v:6.1f}s", file=sys.stderr)
    except (cluster.ClusterError, KeyboardInterrupt) as e:
        print(str(e) or "interrupted", file=sys.stderr)
        dc.down(remove=False)
        return 1
    if args.timings:
        for k, v in dc.timings.items():
            print(f"{k:32s} {v:6.1f}s", file=sys.stderr)
        bt = build.build_timings()
        if bt:
            print(f"{'cold build (recorded)':32s} {sum(bt.values()):6.1f}s {bt}", file=sys.stderr)
    print(f"KUBECONFIG={dc.kubeconfig}")
    if args.foreground:
        print("running; Ctrl-C to stop", file=sys.stderr)
        try:
            while all(p.alive() for p in dc.procs):
                time.sleep(1)
            dead = [p.name for p in dc.procs if not p.alive()]
            print(f"component(s) exited: {dead}; see {dc.logs}", file=sys.stderr)
        except KeyboardInterrupt:
            pass
        finally:
            if realnode is not None:
                realnode.down()
            dc.down(remove=False)
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
