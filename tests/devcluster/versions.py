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


def version_tag() -> str:
    """Short tag naming the cache directory for this set of versions."""
    return f"k{KUBERNETES[1:]}-etcd{ETCD[1:]}-kwok{KWOK[1:]}-js{JOBSET[1:]}-kq{KUEUE[1:]}"
