"""The cluster edge: apply (server-side apply under our own field manager), status and
cancel, with the kubernetes Python client. Everything else in ftops is pure; this module
is the only one that talks to a cluster.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from render import naming
from render.errors import FatalError
from render.jobset import LABEL_PREFIX

FIELD_MANAGER = "ftops"
RUN_LABEL = f"{LABEL_PREFIX}/run-id"
JOBSET_API = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
WORKLOAD_API = ("kueue.x-k8s.io", "v1beta1", "workloads")
LOCALQUEUE_API = ("kueue.x-k8s.io", "v1beta1", "localqueues")


def connect(kubeconfig: str | None = None) -> Any:
    """An ApiClient from --kubeconfig, $KUBECONFIG, ~/.kube/config or the pod's account."""
    from kubernetes import client, config

    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser(
        ).exists():
            cfg = client.Configuration()
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
            return client.ApiClient(cfg)
        config.load_incluster_config()
        return client.ApiClient()
    except Exception as exc:  # noqa: BLE001 - any config problem is the user's to fix
        raise FatalError(f"cannot load a Kubernetes config ({exc}); set KUBECONFIG or pass "
                         "--kubeconfig (CI: the auth step writes one)") from None


def _api_error(exc: Any, what: str) -> FatalError:
    status = getattr(exc, "status", None)
    try:
        detail = json.loads(getattr(exc, "body", "") or "{}").get("message", "")
    except ValueError:
        detail = str(getattr(exc, "body", ""))
    if status == 403:
        return FatalError(f"{what}: permission denied ({detail}). The launcher needs the Role "
                          "in k8s-base/components/runner-rbac (kubectl apply -k k8s-base/default)")
    if status == 404:
        return FatalError(f"{what}: not found ({detail}). Are the JobSet and Kueue CRDs "
                          "installed? (see k8s-base/cluster-admin)")
    if status == 409:
        return FatalError(f"{what}: conflict ({detail}). Another field manager owns these "
                          "fields; ftops never forces them")
    if status == 422:
        return FatalError(f"{what}: rejected by the API server: {detail}")
    return FatalError(f"{what}: API error {status}: {detail or exc}")


class Cluster:
    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import dynamic
        from kubernetes.client import CoreV1Api

        self.api_client = api_client
        self.namespace = namespace
        self.dyn = dynamic.DynamicClient(api_client)
        self.core = CoreV1Api(api_client)
        self._resources: dict[tuple[str, str, str], Any] = {}

    def resource(self, group: str, version: str, plural: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        key = (group, version, plural)
        if key not in self._resources:
            try:
                self._resources[key] = self.dyn.resources.get(
                    api_version=f"{group}/{version}", name=plural)
            except ResourceNotFoundError:
                raise FatalError(f"the cluster does not serve {plural}.{group}/{version}: "
                                 f"install the {group.split('.')[0]} CRDs "
                                 "(see k8s-base/cluster-admin)") from None
        return self._resources[key]

    def jobsets(self, selector: str = RUN_LABEL) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            items = self.resource(*JOBSET_API).get(namespace=self.namespace,
                                                   label_selector=selector).items
        except ApiException as exc:
            raise _api_error(exc, "listing JobSets") from None
        return [i.to_dict() for i in items]


@dataclass(frozen=True)
class ApplyResult:
    run_id: str
    jobset: str
    experiment_path: str
    action: str  # created | unchanged | dry-run


def apply(cluster: Cluster, runs: Sequence[tuple[str, str, list[dict[str, Any]]]], *,
          dry_run: bool = False, indexed_run_ids: set[str] | None = None) -> list[ApplyResult]:
    """Apply each run's objects. `runs` holds (run_id, experiment_path, manifests).

    Idempotent: a run whose JobSet already exists with the same run id is left as it is
    (a JobSet's pod template is immutable once created, so nothing is re-sent). A run id
    the index already holds (it ran or is running) is refused.
    """
    from kubernetes.client.exceptions import ApiException

    indexed = indexed_run_ids or set()
    existing = {js["metadata"]["labels"].get(RUN_LABEL): js for js in cluster.jobsets()}
    queues_checked: set[str] = set()
    results = []
    for run_id, path, docs in runs:
        jobset = next(d for d in docs if d["kind"] == "JobSet")
        name = jobset["metadata"]["name"]
        if run_id in existing:
            results.append(ApplyResult(run_id, name, path, "unchanged"))
            continue
        if run_id in indexed:
            raise FatalError(f"run {run_id} of {path} is already in outputs-index/: a run is "
                             "launched once. Copy the experiment to a new _v<N> to run again")
        queue = jobset["metadata"]["labels"].get("kueue.x-k8s.io/queue-name", "")
        if queue and queue not in queues_checked:
            _require_queue(cluster, queue)
            queues_checked.add(queue)
        for doc in sorted(docs, key=lambda d: d["kind"] != "ConfigMap"):  # ConfigMap first
            resource = (cluster.resource(*JOBSET_API) if doc["kind"] == "JobSet"
                        else cluster.dyn.resources.get(api_version=doc["apiVersion"],
                                                       kind=doc["kind"]))
            kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": False}
            if dry_run:
                kwargs["dry_run"] = "All"
            try:
                resource.server_side_apply(body=doc, name=doc["metadata"]["name"],
                                           namespace=cluster.namespace, **kwargs)
            except ApiException as exc:
                raise _api_error(exc, f"applying {doc['kind']}/{doc['metadata']['name']} "
                                      f"for {path}") from None
        results.append(ApplyResult(run_id, name, path, "dry-run" if dry_run else "created"))
    return results


def _require_queue(cluster: Cluster, queue: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.resource(*LOCALQUEUE_API).get(name=queue, namespace=cluster.namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise FatalError(f"Kueue LocalQueue {queue!r} does not exist in namespace "
                             f"{cluster.namespace!r}: an admin applies k8s-base/cluster-admin, "
                             "or pick a queue from k8s-base/cluster-profile.yaml") from None
        raise _api_error(exc, f"reading LocalQueue {queue}") from None


@dataclass
class RunStatus:
    run_id: str
    experiment: str
    jobset: str
    state: str  # queued | admitted | running | succeeded | failed | cancelled | launched
    reason: str = ""
    position: int | None = None
    ready_pods: int = 0
    pods: int = 0
    restarts: int = 0
    index_status: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of that type of a Kubernetes object (as a dict), if any."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def is_true(obj: dict[str, Any], kind: str) -> bool:
    cond = condition(obj, kind)
    return bool(cond and cond.get("status") == "True")


def status(cluster: Cluster, index_records: Sequence[Any] = ()) -> list[RunStatus]:
    """Where every run stands: from the cluster, joined with outputs-index/."""
    from kubernetes.client.exceptions import ApiException

    jobsets = cluster.jobsets()
    try:
        workloads = [w.to_dict() for w in cluster.resource(*WORKLOAD_API).get(
            namespace=cluster.namespace).items]
        pods = cluster.core.list_namespaced_pod(cluster.namespace,
                                                label_selector=RUN_LABEL).items
    except ApiException as exc:
        raise _api_error(exc, "reading workloads and pods") from None
    by_owner: dict[str, dict[str, Any]] = {}
    for w in workloads:
        for ref in w["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "JobSet":
                by_owner[ref["name"]] = w
    pods_by_run: dict[str, list[Any]] = {}
    for pod in pods:
        pods_by_run.setdefault((pod.metadata.labels or {}).get(RUN_LABEL, ""), []).append(pod)
    pending = sorted(
        (w for w in workloads if not is_true(w, "QuotaReserved") and not is_true(w, "Finished")),
        key=lambda w: (str(w["metadata"].get("creationTimestamp")), w["metadata"]["name"]))
    position = {w["metadata"]["name"]: i + 1 for i, w in enumerate(pending)}
    records = {r.run_id: r for r in index_records}
    out: list[RunStatus] = []
    for js in jobsets:
        labels = js["metadata"].get("labels") or {}
        run_id = labels.get(RUN_LABEL, "")
        st = RunStatus(run_id, labels.get(f"{LABEL_PREFIX}/experiment", ""),
                       js["metadata"]["name"], "queued",
                       restarts=int((js.get("status") or {}).get("restarts") or 0))
        rec = records.get(run_id)
        st.index_status = rec.status if rec else ""
        run_pods = pods_by_run.get(run_id, [])
        st.pods = len(run_pods)
        st.ready_pods = sum(1 for p in run_pods if any(
            c.type == "Ready" and c.status == "True" for c in (p.status.conditions or [])))
        wl = by_owner.get(js["metadata"]["name"])
        if is_true(js, "Completed"):
            st.state = "succeeded"
        elif is_true(js, "Failed"):
            st.state = "failed"
            st.reason = (condition(js, "Failed") or {}).get("message", "")
        elif wl is not None and (is_true(wl, "QuotaReserved") or is_true(wl, "Admitted")):
            nodes = sum(int(j["spec"].get("parallelism") or 1) * int(r.get("replicas") or 1)
                        for r in js["spec"]["replicatedJobs"] for j in [r["template"]])
            st.state = "running" if st.ready_pods and st.ready_pods >= nodes else "admitted"
        else:
            cond = condition(wl, "QuotaReserved") if wl else None
            st.reason = (cond or {}).get("message", "") or (
                "waiting for Kueue to create the workload" if wl is None else "")
            st.position = position.get(wl["metadata"]["name"]) if wl else None
        out.append(st)
    seen = {s.run_id for s in out}
    for run_id, rec in sorted(records.items()):
        if run_id not in seen:
            out.append(RunStatus(run_id, rec.experiment, rec.jobset, rec.status,
                                 index_status=rec.status))
    return sorted(out, key=lambda s: (s.experiment, s.run_id))


def cancel(cluster: Cluster, run_id: str) -> dict[str, Any]:
    """Delete a run's JobSet (its Jobs and pods go with it); returns the deleted JobSet."""
    from kubernetes.client.exceptions import ApiException

    if not naming.DNS_LABEL.match(run_id):
        raise FatalError(f"{run_id!r} is not a run id (see `ftops status`)")
    found = cluster.jobsets(f"{RUN_LABEL}={run_id}")
    if not found:
        raise FatalError(f"no JobSet for run {run_id} in namespace {cluster.namespace} "
                         "(see `ftops status`)")
    js = found[0]
    try:
        cluster.resource(*JOBSET_API).delete(name=js["metadata"]["name"],
                                             namespace=cluster.namespace,
                                             body={"propagationPolicy": "Foreground"})
    except ApiException as exc:
        raise _api_error(exc, f"deleting JobSet {js['metadata']['name']}") from None
    return js


def format_table(rows: Sequence[RunStatus]) -> str:
    headers = ("RUN", "EXPERIMENT", "STATE", "PODS", "RESTARTS", "QUEUE POS", "INDEX", "REASON")
    data = [(r.run_id, r.experiment, r.state, f"{r.ready_pods}/{r.pods}", str(r.restarts),
             "" if r.position is None else str(r.position), r.index_status,
             r.reason.replace("\n", " ")[:80]) for r in rows]
    widths = [max(len(h), *(len(d[i]) for d in data)) if data else len(h)
              for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(d, widths, strict=True)) for d in data]
    return "\n".join(line.rstrip() for line in lines)
