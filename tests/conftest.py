"""Shared fixtures: a real GCS emulator server (tests/gcs_emulator.py) and ``devcluster``,
one real local Kubernetes control plane per test session (tests/devcluster).

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK
fake GPU nodes and the JobSet and Kueue managers) is built from the Go module proxy on
first use. Set FTOPS_DEVCLUSTER_KUBECONFIG to reuse a cluster started with
``scripts/devcluster up`` instead of starting one (the real-node tests need their own).

``realnode``: a real node (containerd, runc, kubelet, kube-proxy, CoreDNS) joined to the
session's cluster, running the training image built from the root Dockerfile
(tests/devcluster/node.py).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from devcluster import build, cluster
from gcs_emulator import gcs_emulator  # noqa: F401


@dataclass
class ExistingCluster:
    """A cluster started elsewhere (``scripts/devcluster up``)."""

    kubeconfig: Path

    def api_client(self) -> Any:
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        cfg.proxy = None
        return client.ApiClient(cfg)


@pytest.fixture(scope="session")
def devcluster() -> Iterator[Any]:
    reuse = os.environ.get("FTOPS_DEVCLUSTER_KUBECONFIG")
    if reuse:
        yield ExistingCluster(Path(reuse))
        return
    missing = [
        n
        for _, _, _, names in build.versions.COMPONENTS.values()
        for n in names
        if not build.binary(n).exists()
    ]
    if missing and shutil.which("go") is None:
        # Not a skip: CI must run these tests, so a missing toolchain is an error.
        pytest.fail(f"devcluster binaries {missing} are not built and there is no `go` to "
                    "build them: install Go >= 1.26 (the README's prerequisites)")
    dc = cluster.DevCluster(cluster.new_workdir())
    dc.up()  # raises ClusterError naming the failing component and its log tail
    try:
        yield dc
    finally:
        dc.down(remove=not os.environ.get("FTOPS_DEVCLUSTER_KEEP"))


@pytest.fixture(scope="module")
def realnode(devcluster: Any) -> Iterator[Any]:
    """The real CPU node ``cpu-node-0`` in the session's cluster, the training image
    built from the root Dockerfile and pulled by digest; for one test module (the other
    cluster tests expect CPU pods to find no node), deleted from the cluster after it.
    Not a skip when the machine cannot run it: CI must, so a missing prerequisite is an
    error that says what to install."""
    from devcluster import node

    if not isinstance(devcluster, cluster.DevCluster):
        pytest.fail("the real-node tests start their own cluster: unset "
                    "FTOPS_DEVCLUSTER_KUBECONFIG")
    missing = node.missing_prerequisites()
    if missing:
        pytest.fail("the real node needs " + "; ".join(missing)
                    + " (`bash scripts/setup.sh --dev` as root installs the packages)")
    rn = node.RealNode(devcluster)
    rn.up()
    try:
        print(f"\n[realnode] up: {rn.timings}", file=sys.stderr)
        yield rn
    finally:
        rn.down()
