"""Pinned versions of the local control plane (built from the Go module proxy).

The Go wrapper modules in ``go/<component>/go.mod`` pin the same versions; a test keeps
the two in step. Kubernetes, JobSet and Kueue are the versions ftops renders for
(render/manifests/versions.py).
"""

from __future__ import annotations

from render.manifests.versions import JOBSET as JOBSET
from render.manifests.versions import KUBERNETES as KUBERNETES
from render.manifests.versions import KUEUE as KUEUE

ETCD = "v3.6.16"  # go.etcd.io/etcd/server/v3
KWOK = "v0.8.0"  # sigs.k8s.io/kwok
COREDNS = "v1.15.0"  # github.com/coredns/coredns (the real node's cluster DNS)

# component directory under go/ -> (module whose version is pinned, version, main packages,
# binary names in the same order)
COMPONENTS: dict[str, tuple[str, str, list[str], list[str]]] = {
    "etcd": ("go.etcd.io/etcd/server/v3", ETCD, ["."], ["etcd"]),
    "kubernetes": (
        "k8s.io/kubernetes",
        KUBERNETES,
        [
            "k8s.io/kubernetes/cmd/kube-apiserver",
            "k8s.io/kubernetes/cmd/kube-controller-manager",
            "k8s.io/kubernetes/cmd/kube-scheduler",
        ],
        ["kube-apiserver", "kube-controller-manager", "kube-scheduler"],
    ),
    "kwok": ("sigs.k8s.io/kwok", KWOK, ["sigs.k8s.io/kwok/cmd/kwok"], ["kwok"]),
    "jobset": ("sigs.k8s.io/jobset", JOBSET, ["sigs.k8s.io/jobset"], ["jobset"]),
    "kueue": ("sigs.k8s.io/kueue", KUEUE, ["sigs.k8s.io/kueue/cmd/kueue"], ["kueue"]),
}


# The real node (tests/devcluster/node.py), built only when a test asks for it. kubelet and
# kube-proxy come from the same wrapper module (and so the same Kubernetes version) as the
# control plane; the CoreDNS binary carries its version in its name, since the cache
# directory's tag names only the control plane's versions.
NODE_COMPONENTS: dict[str, tuple[str, str, list[str], list[str]]] = {
    "node": (
        "k8s.io/kubernetes",
        KUBERNETES,
        ["k8s.io/kubernetes/cmd/kubelet", "k8s.io/kubernetes/cmd/kube-proxy"],
        ["kubelet", "kube-proxy"],
    ),
    "coredns": ("github.com/coredns/coredns", COREDNS, ["."], [f"coredns-{COREDNS}"]),
}

# Go wrapper module directory (under go/) of components that share another's module.
MODULE_DIRS: dict[str, str] = {"node": "kubernetes"}


def all_components() -> dict[str, tuple[str, str, list[str], list[str]]]:
    return {**COMPONENTS, **NODE_COMPONENTS}


def module_dir(component: str) -> str:
    """The go/<dir> wrapper module a component is built from."""
    return MODULE_DIRS.get(component, component)


def version_tag() -> str:
    """Short tag naming the cache directory for this set of versions."""
    return f"k{KUBERNETES[1:]}-etcd{ETCD[1:]}-kwok{KWOK[1:]}-js{JOBSET[1:]}-kq{KUEUE[1:]}"
