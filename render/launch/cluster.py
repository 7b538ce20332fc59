"""Runs on a cluster: apply (server-side apply under our own field manager), status and
cancel, through the connection in `render.launch.kube`. Everything else in ftops is pure;
these two modules are the only ones that talk to a cluster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from render.errors import FatalError
from render.launch.kube import (
    FIELD_MANAGER,
    JOBSET_API,
    LOCALQUEUE_API,
    WORKLOAD_API,
    Cluster,
    api_error,
    condition,
    is_true,
)
from render.propose.naming import RUN_ID_LEN, is_run_id
from render.record.identity import (
    CONFIG_HASH_ANNOTATION,
    EXPERIMENT_LABEL,
    EXPERIMENT_PATH_ANNOTATION,
    PRIORITY_LABEL,
    QUEUE_LABEL,
    RUN_ID_LABEL,
)


@dataclass(frozen=True)
class ApplyResult:
    run_id: str
    jobset: str
    experiment_path: str
    action: str  # created | unchanged | skipped | dry-run
    note: str = ""  # why nothing was created, what changed on the existing run


NO_NEW_RUN = "no new run: metadata only"


def apply(cluster: Cluster, runs: Sequence[tuple[str, str, list[dict[str, Any]]]], *,
          dry_run: bool = False, indexed: Mapping[str, str] | None = None
          ) -> list[ApplyResult]:
    """Apply each run's objects. `runs` holds (run_id, experiment_path, manifests);
    `indexed` maps the run ids outputs-index/ holds to their status.

    A run launches once. The run id names the experiment path and its launch identity,
    so an experiment whose identity already has a run is skipped ("no new run:
    metadata only"): its JobSet exists (`unchanged`; a queue or priority change is
    made on it while Kueue has not admitted it) or the index holds it (`skipped`). A
    JobSet of the same experiment path with a different launch identity that the index
    does not hold yet (two changes to one experiment merged before the first launch
    recorded) is refused: nothing is created for that experiment.
    """
    from kubernetes.client.exceptions import ApiException

    indexed = indexed or {}
    jobsets = cluster.jobsets()
    existing = {js["metadata"]["labels"].get(RUN_ID_LABEL): js for js in jobsets}
    queues_checked: set[str] = set()
    results = []
    for run_id, path, docs in runs:
        jobset = next(d for d in docs if d["kind"] == "JobSet")
        name = jobset["metadata"]["name"]
        if run_id in existing:
            note = _reschedule(cluster, existing[run_id], jobset, dry_run)
            results.append(ApplyResult(run_id, existing[run_id]["metadata"]["name"], path,
                                       "unchanged", f"{NO_NEW_RUN}: its JobSet exists{note}"))
            continue
        if run_id in indexed:
            results.append(ApplyResult(run_id, name, path, "skipped",
                                       f"{NO_NEW_RUN}: run {run_id} is {indexed[run_id]} in "
                                       "outputs-index/"))
            continue
        _refuse_other_identity(jobsets, jobset, path, indexed)
        queue = jobset["metadata"]["labels"].get(QUEUE_LABEL, "")
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
                raise api_error(exc, f"applying {doc['kind']}/{doc['metadata']['name']} "
                                      f"for {path}") from None
        results.append(ApplyResult(run_id, name, path, "dry-run" if dry_run else "created"))
    return results


def _refuse_other_identity(jobsets: Sequence[dict[str, Any]], jobset: dict[str, Any],
                           path: str, indexed: Mapping[str, str]) -> None:
    """FatalError when the cluster holds a run of `path` with another launch identity
    that the index has no record of (the index's runs are lint's immutability rule)."""
    ann = jobset["metadata"].get("annotations") or {}
    mine = ann.get(CONFIG_HASH_ANNOTATION, "")
    for js in jobsets:
        meta = js["metadata"]
        theirs = meta.get("annotations") or {}
        other = (meta.get("labels") or {}).get(RUN_ID_LABEL, "")
        if (theirs.get(EXPERIMENT_PATH_ANNOTATION) == path and other not in indexed
                and theirs.get(CONFIG_HASH_ANNOTATION) != mine):
            raise FatalError(
                f"{path}: the cluster already has run {other} (JobSet {meta.get('name')}) of "
                "this experiment with a different launch identity, and outputs-index/ has "
                "no record of it yet: two changes to one experiment merged before the "
                "first launch was recorded. A run's config is never edited: revert this "
                "change and put it in a new _v<N> file")


def _reschedule(cluster: Cluster, current: dict[str, Any], wanted: dict[str, Any],
                dry_run: bool) -> str:
    """Move an existing run to the queue and priority the experiment now names, when
    Kueue allows it (the JobSet is still suspended: not admitted); a note either way
    ("" when nothing changed)."""
    from kubernetes.client.exceptions import ApiException

    have = current["metadata"].get("labels") or {}
    want = wanted["metadata"].get("labels") or {}
    change = {k: want[k] for k in (QUEUE_LABEL, PRIORITY_LABEL)
              if k in want and have.get(k) != want[k]}
    if not change:
        return ""
    what = ", ".join(f"{k.rsplit('/', 1)[1]} {have.get(k, '-')} -> {v}"
                     for k, v in sorted(change.items()))
    finished = is_true(current, "Completed") or is_true(current, "Failed")
    if finished or not (current.get("spec") or {}).get("suspend"):
        state = "finished" if finished else "admitted by Kueue"
        return f"; {what} not applied: the run is already {state}"
    name = current["metadata"]["name"]
    try:
        cluster.resource(*JOBSET_API).patch(
            name=name, namespace=cluster.namespace, body={"metadata": {"labels": change}},
            content_type="application/merge-patch+json", field_manager=FIELD_MANAGER,
            **({"dry_run": "All"} if dry_run else {}))
    except ApiException as exc:
        return f"; {what} not applied: {api_error(exc, f'updating JobSet {name}')}"
    return f"; {what} {'would be ' if dry_run else ''}applied to the queued run"


def _require_queue(cluster: Cluster, queue: str) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        cluster.resource(*LOCALQUEUE_API).get(name=queue, namespace=cluster.namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise FatalError(f"Kueue LocalQueue {queue!r} does not exist in namespace "
                             f"{cluster.namespace!r}: an admin applies k8s-base/cluster-admin, "
                             "or pick a queue from k8s-base/cluster-profile.yaml") from None
        raise api_error(exc, f"reading LocalQueue {queue}") from None


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


def status(cluster: Cluster, index_records: Sequence[Any] = ()) -> list[RunStatus]:
    """Where every run stands: from the cluster, joined with outputs-index/."""
    from kubernetes.client.exceptions import ApiException

    jobsets = cluster.jobsets()
    try:
        workloads = [w.to_dict() for w in cluster.resource(*WORKLOAD_API).get(
            namespace=cluster.namespace).items]
        pods = cluster.core.list_namespaced_pod(cluster.namespace,
                                                label_selector=RUN_ID_LABEL).items
    except ApiException as exc:
        raise api_error(exc, "reading workloads and pods") from None
    by_owner: dict[str, dict[str, Any]] = {}
    for w in workloads:
        for ref in w["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == "JobSet":
                by_owner[ref["name"]] = w
    pods_by_run: dict[str, list[Any]] = {}
    for pod in pods:
        pods_by_run.setdefault((pod.metadata.labels or {}).get(RUN_ID_LABEL, ""), []).append(pod)
    pending = sorted(
        (w for w in workloads if not is_true(w, "QuotaReserved") and not is_true(w, "Finished")),
        key=lambda w: (str(w["metadata"].get("creationTimestamp")), w["metadata"]["name"]))
    position = {w["metadata"]["name"]: i + 1 for i, w in enumerate(pending)}
    records = {r.run_id: r for r in index_records}
    out: list[RunStatus] = []
    for js in jobsets:
        labels = js["metadata"].get("labels") or {}
        run_id = labels.get(RUN_ID_LABEL, "")
        st = RunStatus(run_id, labels.get(EXPERIMENT_LABEL, ""),
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


def check_run_id(run_id: str) -> None:
    """FatalError unless `run_id` has a run id's shape (before anything connects)."""
    if not is_run_id(run_id):
        shown = run_id.encode("unicode_escape").decode("ascii")[:80]
        raise FatalError(f"{shown!r} is not a run id: {RUN_ID_LEN} characters of 0-9a-f "
                         "(see `ftops status`)")


def cancel(cluster: Cluster, run_id: str) -> dict[str, Any]:
    """Delete a run's JobSet (its Jobs and pods go with it); returns the deleted JobSet."""
    from kubernetes.client.exceptions import ApiException

    check_run_id(run_id)
    found = cluster.jobsets(f"{RUN_ID_LABEL}={run_id}")
    if not found:
        raise FatalError(f"no JobSet for run {run_id} in namespace {cluster.namespace} "
                         "(see `ftops status`)")
    js = found[0]
    try:
        cluster.resource(*JOBSET_API).delete(name=js["metadata"]["name"],
                                             namespace=cluster.namespace,
                                             body={"propagationPolicy": "Foreground"})
    except ApiException as exc:
        raise api_error(exc, f"deleting JobSet {js['metadata']['name']}") from None
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
