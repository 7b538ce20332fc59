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
    sub.add_parser("down", help="stop the cluster started by `up`")
    sub.add_parser("env", help="print KUBECONFIG=... for the running cluster")
    sub.add_parser("status", help="print the state file")
    sub.add_parser("build", help="only build the binaries")
    args = ap.parse_args(argv)
    workdir = Path(args.dir) if args.dir else cluster.default_workdir()

    if args.cmd == "build":
        t = time.monotonic()
        print(f"binaries in {build.ensure_built()} ({time.monotonic() - t:.0f}s)")
        return 0
    if args.cmd == "down":
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
    dc = cluster.DevCluster(workdir, opts)
    try:
        dc.up()
    except cluster.ClusterError as e:
        print(str(e), file=sys.stderr)
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
            dc.down(remove=False)
        return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
