"""JobSet + Kueue behaviour on the real local control plane (KWOK fake GPU nodes)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiException

from devcluster.kube import condition, create_from_yaml, is_true, wait_for
from devcluster.manifests import (
    FAIL_EXIT_CODE_ANNOTATION,
    RUN_DURATION_ANNOTATION,
)

pytestmark = pytest.mark.cluster

NS = "llm-experiments"
JS = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
WL = ("kueue.x-k8s.io", "v1beta1", "workloads")


def jobset_manifest(
    name: str,
    nodes: int = 1,
    *,
    max_restarts: int = 0,
    queue: str = "research",
    priority: str = "normal",
    accelerator: str = "nvidia-h100-80gb",
    pod_annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One replicatedJob ``node`` of ``nodes`` indexed pods with 8 GPUs each (the layout
    the renderer emits: node rank = completion index)."""
    return {
        "apiVersion": "jobset.x-k8s.io/v1alpha2",
        "kind": "JobSet",
        "metadata": {
            "name": name,
            "namespace": NS,
            "labels": {
                "kueue.x-k8s.io/queue-name": queue,
                "kueue.x-k8s.io/priority-class": priority,
            },
        },
        "spec": {
            "suspend": True,
            "failurePolicy": {
                "maxRestarts": max_restarts,
                # configuration errors (podFailurePolicy -> FailJob) end the JobSet at once
                "rules": [
                    {
                        "name": "ConfigError",
                        "action": "FailJobSet",
                        "onJobFailureReasons": ["PodFailurePolicy"],
                    }
                ],
            },
            "network": {"enableDNSHostnames": True, "subdomain": name},
            "replicatedJobs": [
                {
                    "name": "node",
                    "replicas": 1,
                    "template": {
                        "spec": {
                            "parallelism": nodes,
                            "completions": nodes,
                            "completionMode": "Indexed",
                            "backoffLimit": 0,
                            "podFailurePolicy": {
                                "rules": [
                                    {
                                        "action": "FailJob",
                                        "onExitCodes": {"operator": "In", "values": [2]},
                                    },
                                    {
                                        "action": "Ignore",
                                        "onPodConditions": [{"type": "DisruptionTarget"}],
                                    },
                                ]
                            },
                            "template": {
                                "metadata": {"annotations": dict(pod_annotations or {})},
                                "spec": {
                                    "restartPolicy": "Never",
                                    "nodeSelector": {
                                        "cloud.google.com/gke-accelerator": accelerator
                                    },
                                    "tolerations": [
                                        {
                                            "key": "nvidia.com/gpu",
                                            "operator": "Exists",
                                            "effect": "NoSchedule",
                                        }
                                    ],
                                    "containers": [
                                        {
                                            "name": "trainer",
                                            "image": "registry.invalid/llamafactory:test",
                                            "command": [
                                                "llamafactory-cli",
                                                "train",
                                                "/config/train.yaml",
                                            ],
                                            "resources": {
                                                "requests": {
                                                    "cpu": "8",
                                                    "memory": "64Gi",
                                                    "nvidia.com/gpu": "8",
                                                },
                                                "limits": {"nvidia.com/gpu": "8"},
                                            },
                                        }
                                    ],
                                },
                            },
                        }
                    },
                }
            ],
        },
    }


def uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def api(devcluster: Any) -> Any:
    return devcluster.api_client()


@pytest.fixture
def co(api: Any) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api)


@pytest.fixture
def core(api: Any) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(autouse=True)
def clean_namespace(co: client.CustomObjectsApi) -> Any:
    """Each test starts and ends with no JobSets or Workloads holding quota."""
    yield
    for js in co.list_namespaced_custom_object(*JS[:2], NS, JS[2])["items"]:
        co.delete_namespaced_custom_object(
            *JS[:2],
            NS,
            JS[2],
            js["metadata"]["name"],
            body=client.V1DeleteOptions(propagation_policy="Foreground"),
        )
    wait_for(
        "JobSets and Workloads to be gone",
        lambda: (
            not (
                co.list_namespaced_custom_object(*JS[:2], NS, JS[2])["items"]
                or co.list_namespaced_custom_object(*WL[:2], NS, WL[2])["items"]
            )
        ),
        timeout=60,
    )


def get_js(co: client.CustomObjectsApi, name: str) -> dict[str, Any]:
    return co.get_namespaced_custom_object(*JS[:2], NS, JS[2], name)


def workload_of(co: client.CustomObjectsApi, jobset: str) -> dict[str, Any] | None:
    for wl in co.list_namespaced_custom_object(*WL[:2], NS, WL[2])["items"]:
        for ref in wl["metadata"].get("ownerReferences", []):
            if ref["kind"] == "JobSet" and ref["name"] == jobset:
                return wl
    return None


def describe(co: client.CustomObjectsApi, core: client.CoreV1Api, names: list[str]) -> Any:
    def _d() -> str:
        out = []
        for n in names:
            try:
                js = get_js(co, n)
                out.append(f"JobSet {n}: {json.dumps(js.get('status'), default=str)}")
            except ApiException as e:
                out.append(f"JobSet {n}: {e.status}")
            wl = workload_of(co, n)
            out.append(f"  Workload: {json.dumps((wl or {}).get('status'), default=str)}")
        for p in core.list_namespaced_pod(NS).items:
            out.append(f"  pod {p.metadata.name} node={p.spec.node_name} phase={p.status.phase}")
        return "\n".join(out)

    return _d


def test_jobset_admitted_scheduled_and_completed(devcluster: Any, co: Any, core: Any) -> None:
    name = uniq("happy")
    create_from_yaml(devcluster, jobset_manifest(name, nodes=2))
    d = describe(co, core, [name])
    wl = wait_for(
        "Workload admitted",
        lambda: (w := workload_of(co, name)) and is_true(w, "Admitted") and w,
        timeout=60,
        describe=d,
    )
    assert wl["status"]["admission"]["clusterQueue"] == "llm-gpus"
    flavors = wl["status"]["admission"]["podSetAssignments"][0]["flavors"]
    assert flavors["nvidia.com/gpu"] == "h100-80gb"

    pods = wait_for(
        "2 pods bound to nodes",
        lambda: (
            (
                ps := [
                    p
                    for p in core.list_namespaced_pod(
                        NS, label_selector=f"jobset.sigs.k8s.io/jobset-name={name}"
                    ).items
                    if p.spec.node_name
                ]
            )
            and len(ps) == 2
            and ps
        ),
        timeout=60,
        describe=d,
    )
    nodes = {p.spec.node_name for p in pods}
    assert nodes == {"gpu-h100-0", "gpu-h100-1"}  # 8 GPUs each: one pod per node
    assert sorted(
        p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods
    ) == ["0", "1"]

    js = wait_for(
        "JobSet Completed",
        lambda: (j := get_js(co, name)) and is_true(j, "Completed") and j,
        timeout=90,
        describe=d,
    )
    assert js["status"].get("restarts", 0) == 0


def test_quota_two_admitted_third_pending(devcluster: Any, co: Any, core: Any) -> None:
    names = [uniq(f"quota{i}") for i in range(3)]
    long_run = {RUN_DURATION_ANNOTATION: "600s"}
    for n in names:
        create_from_yaml(devcluster, jobset_manifest(n, nodes=1, pod_annotations=long_run))
    d = describe(co, core, names)

    def state() -> tuple[list[str], list[dict[str, Any]]] | None:
        wls = {n: workload_of(co, n) for n in names}
        if not all(wls.values()):
            return None
        admitted = [n for n, w in wls.items() if is_true(w, "QuotaReserved")]
        pending = [
            w
            for n, w in wls.items()
            if (c := condition(w, "QuotaReserved")) and c["status"] == "False"
        ]
        if len(admitted) == 2 and len(pending) == 1:
            return admitted, pending
        return None

    admitted, pending = wait_for("2 admitted, 1 pending", state, timeout=60, describe=d)
    msg = condition(pending[0], "QuotaReserved")["message"]
    assert "insufficient unused quota" in msg and "nvidia.com/gpu" in msg, msg
    assert "h100-80gb" in msg, msg
    # the pending JobSet stays suspended and has no pods
    pending_js = next(n for n in names if n not in admitted)
    assert get_js(co, pending_js)["spec"]["suspend"] is True
    assert not core.list_namespaced_pod(
        NS, label_selector=f"jobset.sigs.k8s.io/jobset-name={pending_js}"
    ).items


def test_retryable_failure_restarts_then_fails(devcluster: Any, co: Any, core: Any) -> None:
    name = uniq("retry")
    create_from_yaml(
        devcluster,
        jobset_manifest(
            name, nodes=1, max_restarts=2, pod_annotations={FAIL_EXIT_CODE_ANNOTATION: "1"}
        ),
    )
    d = describe(co, core, [name])
    js = wait_for(
        "JobSet Failed after restarts",
        lambda: (j := get_js(co, name)) and is_true(j, "Failed") and j,
        timeout=150,
        describe=d,
    )
    assert js["status"]["restarts"] == 2
    assert condition(js, "Failed")["reason"] == "ReachedMaxRestarts"
    assert js["status"].get("terminalState") == "Failed"


def test_config_error_fails_without_restart(devcluster: Any, co: Any, core: Any) -> None:
    name = uniq("cfgerr")
    create_from_yaml(
        devcluster,
        jobset_manifest(
            name, nodes=2, max_restarts=3, pod_annotations={FAIL_EXIT_CODE_ANNOTATION: "2"}
        ),
    )
    d = describe(co, core, [name])
    js = wait_for(
        "JobSet Failed",
        lambda: (j := get_js(co, name)) and is_true(j, "Failed") and j,
        timeout=90,
        describe=d,
    )
    assert js["status"].get("restarts", 0) == 0
    assert condition(js, "Failed")["reason"] != "ReachedMaxRestarts"
    jobs = (
        client.BatchV1Api(devcluster.api_client())
        .list_namespaced_job(NS, label_selector=f"jobset.sigs.k8s.io/jobset-name={name}")
        .items
    )
    reasons = {c.reason for j in jobs for c in (j.status.conditions or []) if c.type == "Failed"}
    assert "PodFailurePolicy" in reasons, reasons


def test_dry_run_accepts_valid_and_rejects_invalid(devcluster: Any, co: Any) -> None:
    name = uniq("dry")
    out = create_from_yaml(devcluster, jobset_manifest(name, nodes=2), dry_run=True)
    assert out[0]["metadata"]["name"] == name
    with pytest.raises(ApiException) as exc:
        get_js(co, name)
    assert exc.value.status == 404  # nothing stored

    # generated pod names would exceed 63 characters: the JobSet webhook refuses it
    too_long = "x" * 60
    with pytest.raises(ApiException) as exc:
        create_from_yaml(devcluster, jobset_manifest(too_long), dry_run=True)
    assert exc.value.status in (400, 422), exc.value.body
    assert "63" in exc.value.body or "too long" in exc.value.body.lower(), exc.value.body

    # schema/CEL: an unknown failure-policy action
    bad = jobset_manifest(uniq("bad"))
    bad["spec"]["failurePolicy"]["rules"][0]["action"] = "Explode"
    with pytest.raises(ApiException) as exc:
        create_from_yaml(devcluster, bad, dry_run=True)
    assert exc.value.status in (400, 422)
    assert "Explode" in exc.value.body or "action" in exc.value.body, exc.value.body
