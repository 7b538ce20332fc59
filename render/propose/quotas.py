"""What Kueue can ever admit, read from the ClusterQueues and LocalQueues that
`k8s-base/components/kueue/` applies.

A run is one workload: all of its pods must fit in the quota of its ClusterQueue (the
one its LocalQueue points at) at once. The most a ClusterQueue can ever admit of a
resource in a flavor is its nominalQuota plus what it may borrow from its cohort: its
borrowingLimit, or without one the nominal quota the cohort's other ClusterQueues hold
of that flavor. A layout above that waits in the queue forever; lint refuses it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from render.errors import FatalError

KUEUE_DIR = Path("k8s-base") / "components" / "kueue"
GPU = "nvidia.com/gpu"  # reported first: the resource people size a run by

_SUFFIX: dict[str, int | Fraction] = {
    "": 1, "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
_QUANTITY = re.compile(r"([+-]?[0-9]+(?:\.[0-9]*)?|[+-]?\.[0-9]+)(?:[eE]([+-]?[0-9]+)|([a-zA-Z]*))")


def quantity(value: object) -> Fraction:
    """A Kubernetes quantity (400, 500m, 3600Gi, 1e3) as an exact number."""
    match = _QUANTITY.fullmatch(str(value).strip())
    if not match or (match.group(3) or "") not in _SUFFIX:
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    number = Fraction(match.group(1))
    if match.group(2):
        return number * Fraction(10) ** int(match.group(2))
    return number * Fraction(_SUFFIX[match.group(3) or ""])


@dataclass(frozen=True)
class ClusterQueue:
    name: str
    cohort: str
    # flavor -> resource -> nominal quota / borrowing limit (None: no limit)
    nominal: dict[str, dict[str, Fraction]]
    borrowing: dict[str, dict[str, Fraction | None]]
    # resource -> the flavors of the resource group that covers it
    covered: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class Quotas:
    local_queues: dict[str, str] = field(default_factory=dict)  # LocalQueue -> ClusterQueue
    cluster_queues: dict[str, ClusterQueue] = field(default_factory=dict)

    def most(self, cq: ClusterQueue, flavor: str, resource: str) -> Fraction:
        """The most of `resource` that `cq` can ever admit in `flavor`."""
        nominal = cq.nominal.get(flavor, {}).get(resource, Fraction(0))
        if not cq.cohort:
            return nominal
        limit = cq.borrowing.get(flavor, {}).get(resource)
        if limit is not None:
            return nominal + limit
        others = sum((q.nominal.get(flavor, {}).get(resource, Fraction(0))
                      for q in self.cluster_queues.values()
                      if q.cohort == cq.cohort and q.name != cq.name), Fraction(0))
        return nominal + others

    def problem(self, queue: str, flavor: str, pod: dict[str, str], pods: int) -> str | None:
        """Why `pods` pods requesting `pod` each can never be admitted through LocalQueue
        `queue` in `flavor`; None when they fit."""
        cq_name = self.local_queues.get(queue)
        if cq_name is None:
            return f"no LocalQueue {queue!r} in {KUEUE_DIR}"
        cq = self.cluster_queues.get(cq_name)
        if cq is None:
            return (f"LocalQueue {queue!r} points at ClusterQueue {cq_name!r}, which "
                    f"{KUEUE_DIR} does not define")
        for resource, amount in sorted(pod.items(), key=lambda kv: kv[0] != GPU):
            flavors = cq.covered.get(resource)
            if flavors is None:
                return f"ClusterQueue {cq.name} has no quota for {resource}"
            if flavor not in flavors:
                # another resource group: any of its flavors may serve this resource
                most = max((self.most(cq, f, resource) for f in flavors), default=Fraction(0))
            else:
                most = self.most(cq, flavor, resource)
            need = quantity(amount) * pods
            if need > most:
                per_pod = quantity(amount)
                fit = int(most // per_pod) if per_pod else 0
                return (f"{pods} pod(s) × {amount} {resource} = {_show(need, amount)} is more "
                        f"than ClusterQueue {cq.name} can ever admit in flavor {flavor} "
                        f"({_show(most, amount)}); the run would wait forever"
                        + (f" (at most {fit} node(s) fit)" if fit else ""))
        return None


def _show(value: Fraction, like: str) -> str:
    if like.endswith("Gi"):
        return f"{value / 2**30:g}Gi"
    return f"{float(value):g}"


def load_quotas(repo_root: Path) -> Quotas:
    """The queues and quotas of every YAML document in k8s-base/components/kueue/."""
    folder = repo_root / KUEUE_DIR
    local: dict[str, str] = {}
    queues: dict[str, ClusterQueue] = {}
    for path in sorted(folder.glob("*.yaml")):
        try:
            docs = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader))
        except (OSError, yaml.YAMLError) as exc:
            raise FatalError(f"{KUEUE_DIR / path.name}: cannot read: {exc}") from None
        for doc in docs:
            if not isinstance(doc, dict):
                continue
            try:
                if doc.get("kind") == "LocalQueue":
                    local[str(doc["metadata"]["name"])] = str(doc["spec"]["clusterQueue"])
                elif doc.get("kind") == "ClusterQueue":
                    cq = _cluster_queue(doc)
                    queues[cq.name] = cq
            except (KeyError, TypeError, ValueError) as exc:
                raise FatalError(f"{KUEUE_DIR / path.name}: malformed {doc.get('kind')}: "
                                 f"{exc}") from None
    return Quotas(local, queues)


def _cluster_queue(doc: dict[str, Any]) -> ClusterQueue:
    spec = doc["spec"]
    nominal: dict[str, dict[str, Fraction]] = {}
    borrowing: dict[str, dict[str, Fraction | None]] = {}
    covered: dict[str, tuple[str, ...]] = {}
    for group in spec.get("resourceGroups") or []:
        flavors = tuple(str(f["name"]) for f in group["flavors"])
        for resource in group["coveredResources"]:
            covered[str(resource)] = flavors
        for flavor in group["flavors"]:
            for res in flavor["resources"]:
                name = str(res["name"])
                nominal.setdefault(str(flavor["name"]), {})[name] = quantity(res["nominalQuota"])
                limit = res.get("borrowingLimit")
                borrowing.setdefault(str(flavor["name"]), {})[name] = (
                    None if limit is None else quantity(limit))
    return ClusterQueue(str(doc["metadata"]["name"]), str(spec.get("cohort") or ""), nominal,
                        borrowing, covered)
