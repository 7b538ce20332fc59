"""The JobSet for one run, built as data (a dict dumped by a YAML library), so a user's
string is only ever a YAML string: never structure, never shell (the container runs an
argv, no shell).

One replicatedJob `node` of one Job with N indexed pods (parallelism = completions =
nodes); the node rank is the pod's completion index; pod 0 is the torchrun master,
reached through the JobSet's headless Service. Kueue holds it suspended until admitted.
Torchrun is forced only where it runs more than one process, or DeepSpeed
(`uses_torchrun`); one process trains without a process group.
"""

from __future__ import annotations

import json
from typing import Any

from render.manifests.runspec import (
    CONFIG_ERROR_EXIT,
    CONFIG_MOUNT,
    DATA_MOUNT,
    MASTER_PORT,
    RunSpec,
)
from render.propose import naming
from render.propose.experiment import uses_torchrun
from render.record.destination import INDEX_BRANCH_ENV, INDEX_REMOTE_ENV
from render.record.gitcmd import TOKEN_ENV
from render.record.identity import (
    MAX_RESTARTS_ENV,
    MLFLOW_UI_ENV,
    PRIORITY_LABEL,
    QUEUE_LABEL,
    RESTART_ATTEMPT_ENV,
    RESTART_ATTEMPT_LABEL,
    RUN_ID_LABEL,
    SPEC_JSON,
)

API_VERSION = "jobset.x-k8s.io/v1alpha2"
CONTAINER = "trainer"
TTL_AFTER_FINISHED = 7 * 24 * 3600


def tracker_env(spec: RunSpec, report_to: str) -> list[dict[str, Any]]:
    if "mlflow" not in report_to:
        return []
    p = spec.exp.profile
    return [
        {"name": "MLFLOW_TRACKING_URI", "value": p.mlflow_tracking_uri},
        {"name": "MLFLOW_EXPERIMENT_NAME", "value": f"{spec.exp.dataset}/{spec.exp.model}"},
        {"name": "MLFLOW_TAGS", "value": json.dumps(spec.mlflow_tags(), sort_keys=True)},
        {"name": MLFLOW_UI_ENV, "value": p.mlflow_ui},
    ]


def cpu_env(threads: int) -> list[dict[str, Any]]:
    """What a CPU-only run needs (`ftops launch --local` uses it too)."""
    return [
        # torch sizes its thread pool by the machine's cores, not the pod's CPU limit:
        # on a CPU node that oversubscribes the limit many times over
        {"name": "OMP_NUM_THREADS", "value": str(threads)},
        # accelerate names the device of a multi-process CPU run `cpu:<rank>`, and
        # transformers resumes the optimizer with map_location=<that device>, which
        # torch.load cannot restore ("don't know how to restore data location ...
        # tagged with cpu:0"): a 2-pod CPU run could never resume. Plain `cpu` can.
        {"name": "ACCELERATE_TORCH_DEVICE", "value": "cpu"},
    ]


def index_env(spec: RunSpec) -> list[dict[str, Any]]:
    """Where rank 0's post-run hook publishes the run's record (the profile's `index`):
    the remote, and its token from a Secret, never a literal. The Secret is optional:
    without it the run still trains and its run.json waits for `ftops index reconcile`."""
    p = spec.exp.profile
    if not p.index_remote:
        return []
    env: list[dict[str, Any]] = [
        {"name": INDEX_REMOTE_ENV, "value": p.index_remote},
        {"name": INDEX_BRANCH_ENV, "value": p.index_branch},
    ]
    if p.index_token_secret:
        secret, key = p.index_token_secret.split("/", 1)
        env.append({"name": TOKEN_ENV, "valueFrom": {"secretKeyRef": {
            "name": secret, "key": key, "optional": True}}})
    return env


def build(spec: RunSpec, report_to: str) -> dict[str, Any]:
    e, launch, profile = spec.exp, spec.exp.launch, spec.exp.profile
    gpu = profile.gpu_types[launch.gpu_type]
    nodes = launch.nodes
    master = f"{naming.pod_hostname(spec.jobset, 0)}.{spec.jobset}"
    torchrun = uses_torchrun(launch.processes, e.deepspeed_config is not None)
    env: list[dict[str, Any]] = [
        *([{"name": "FORCE_TORCHRUN", "value": "1"}] if torchrun else []),
        {"name": "NNODES", "value": str(nodes)},
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}},
        {"name": "NPROC_PER_NODE", "value": str(max(launch.gpus_per_node, 1))},
        {"name": "MASTER_ADDR", "value": master},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "OUTPUT_DIR", "value": spec.pod_output_dir},
        {"name": "FTOPS_RUN_ID", "value": spec.run_id},
        # which attempt this is (JobSet counts group restarts in this pod label) and how
        # many restarts JobSet allows: the hook records restarts, and knows whether a
        # failure is final or JobSet will restart the group
        {"name": RESTART_ATTEMPT_ENV, "valueFrom": {"fieldRef": {
            "fieldPath": f"metadata.labels['{RESTART_ATTEMPT_LABEL}']"}}},
        {"name": MAX_RESTARTS_ENV, "value": str(launch.max_restarts)},
        {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "1"},
        *tracker_env(spec, report_to),
        *index_env(spec),
    ]
    for name, ref in sorted(launch.env_from_secrets.items()):
        secret, key = ref.split("/", 1)
        env.append({"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}})

    resources: dict[str, Any] = dict(gpu.pod_requests(launch.gpus_per_node))
    if not launch.gpus_per_node:
        env += cpu_env(int(resources["cpu"]))
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{spec.jobset}-config"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory",
                                      "sizeLimit": "64Gi" if launch.gpus_per_node else "2Gi"}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},  # noqa: S108 - NCCL's shared memory
    ]
    pod_annotations = {RUN_ID_LABEL: spec.run_id}
    source = str(e.registration.get("source", {}).get("uri", ""))
    if source.startswith("gs://"):
        bucket = source[len("gs://"):].split("/", 1)[0]
        pod_annotations["gke-gcsfuse/volumes"] = "true"
        volumes.append({"name": "data", "csi": {
            "driver": "gcsfuse.csi.storage.gke.io", "readOnly": True,
            "volumeAttributes": {"bucketName": bucket, "mountOptions": "implicit-dirs"}}})
        mounts.append({"name": "data", "mountPath": f"{DATA_MOUNT}/{bucket}", "readOnly": True})

    tolerations = []
    if launch.gpus_per_node:
        tolerations.append({"key": "nvidia.com/gpu", "operator": "Exists",
                            "effect": "NoSchedule"})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": profile.service_account,
        "terminationGracePeriodSeconds": 120,
        "containers": [{
            "name": CONTAINER,
            "image": launch.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["ftops", "node-run", "--spec", f"{CONFIG_MOUNT}/{SPEC_JSON}"],
            "env": env,
            "ports": [{"name": "rdzv", "containerPort": MASTER_PORT}],
            "resources": {"requests": resources, "limits": dict(resources)},
            "volumeMounts": mounts,
        }],
        "volumes": volumes,
    }
    if gpu.node_labels:
        pod_spec["nodeSelector"] = dict(gpu.node_labels)
    if tolerations:
        pod_spec["tolerations"] = tolerations

    identity = spec.identity()
    meta_labels = identity.labels()
    job_spec: dict[str, Any] = {
        "parallelism": nodes,
        "completions": nodes,
        "completionMode": "Indexed",
        "backoffLimit": 0,
        "activeDeadlineSeconds": launch.time_limit_seconds,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {
                "containerName": CONTAINER, "operator": "In", "values": [CONFIG_ERROR_EXIT]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]},
        "template": {
            "metadata": {"labels": dict(meta_labels), "annotations": pod_annotations},
            "spec": pod_spec,
        },
    }
    return {
        "apiVersion": API_VERSION,
        "kind": "JobSet",
        "metadata": {
            "name": spec.jobset,
            "labels": {
                **meta_labels,
                QUEUE_LABEL: launch.queue,
                PRIORITY_LABEL: launch.priority,
            },
            "annotations": identity.annotations(),
        },
        "spec": {
            "suspend": True,
            "ttlSecondsAfterFinished": TTL_AFTER_FINISHED,
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True,
                        "subdomain": spec.jobset},
            "successPolicy": {"operator": "All", "targetReplicatedJobs": [naming.REPLICATED_JOB]},
            "failurePolicy": {
                "maxRestarts": launch.max_restarts,
                # A configuration error will fail the same way again: do not restart.
                "rules": [{"name": "ConfigErrorNoRestart", "action": "FailJobSet",
                           "onJobFailureReasons": ["PodFailurePolicy"]}],
            },
            "replicatedJobs": [{
                "name": naming.REPLICATED_JOB,
                "replicas": 1,
                "template": {"metadata": {"labels": dict(meta_labels)}, "spec": job_spec},
            }],
        },
    }
