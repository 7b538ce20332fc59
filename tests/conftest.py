"""Shared fixtures: a real GCS emulator server (tests/gcs_emulator.py) and ``devcluster``,
one real local Kubernetes control plane per test session (tests/devcluster).

The control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, KWOK
fake GPU nodes and the JobSet and Kueue managers) is built from the Go module proxy on
first use. Set FTOPS_DEVCLUSTER_KUBECONFIG to reuse a cluster started with
``scripts/devcluster up`` instead of starting one (the real-node tests need their own).

``realnode``: a real node (containerd, runc, kubelet, kube-proxy, CoreDNS) joined to the
session's cluster, running the training image built from the root Dockerfile
(tests/devcluster/node.py). When a session will use it, the image is built (if its
cache lacks it) in the background from the start of the session, beside the other
tests and the control plane's Go build, instead of after them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from devcluster import build, cluster
from gcs_emulator import gcs_emulator  # noqa: F401

_image_build: subprocess.Popen[bytes] | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start building the training image now when a selected test needs the real node
    (a cache hit takes a second; a cold build ~15 minutes, mostly downloads, which then
    overlap the tests that run first). A separate process (`python -m devcluster.image`)
    that holds the image lock: the real node waits for it, and builds (or reports the
    error) itself if it failed; a session that ends first stops it."""
    global _image_build
    if session.config.option.collectonly or not any(
            "realnode" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    from devcluster import image, node

    if node.missing_prerequisites():
        return  # the realnode fixture says what is missing
    image.cache_root().mkdir(parents=True, exist_ok=True)
    with open(image.cache_root() / "prebuild.log", "wb") as log:
        _image_build = subprocess.Popen(
            [sys.executable, "-m", "devcluster.image"], stdout=log, stderr=subprocess.STDOUT,
            cwd=Path(__file__).parent, start_new_session=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _image_build is not None and _image_build.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(_image_build.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            _image_build.wait(timeout=30)


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


@pytest.fixture(scope="module")
def demo_assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's tiny model and data (`ftops demo`'s assets), made once per test module:
    runs in one module may share it, a module's runs never see another's files."""
    from render.launch.demo import make_demo_assets

    dest = tmp_path_factory.mktemp("demo-assets")
    make_demo_assets(dest)
    return dest


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
    if _image_build is not None and _image_build.poll() is None:
        from devcluster import image

        print(f"\n[realnode] waiting for the training image build "
              f"({image.cache_root() / 'prebuild.log'})", file=sys.stderr)
    rn = node.RealNode(devcluster)
    rn.up()
    try:
        print(f"\n[realnode] up: {rn.timings}", file=sys.stderr)
        yield rn
    finally:
        rn.down()
