"""Objects and config files the devcluster generates: KWOK stages and fake GPU nodes,
JobSet/Kueue manager configs, and their CRDs and webhook configurations read from the Go
module cache (pinned versions) and rewritten to call the managers on 127.0.0.1."""

from __future__ import annotations

import base64
import copy
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from devcluster import versions
from render.manifests.validate import module_dir

FAIL_EXIT_CODE_ANNOTATION = "devcluster.ftops/fail-exit-code"
"""Pod annotation: the pod becomes Failed with this container exit code instead of
Succeeded."""
RUN_DURATION_ANNOTATION = "pod-complete.stage.kwok.x-k8s.io/delay"
"""KWOK's own annotation: how long a pod stays Running before it succeeds (e.g. "60s")."""
FAIL_DURATION_ANNOTATION = "devcluster.ftops/fail-delay"
"""How long a pod marked to fail stays Running first (Go duration, e.g. "2s")."""

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_TAINT = {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}

# name prefix -> (count, accelerator label, cpu, memory)
DEFAULT_NODES: dict[str, tuple[int, str, str, str]] = {
    "gpu-h100": (2, "nvidia-h100-80gb", "200", "1800Gi"),
    "gpu-a100": (2, "nvidia-a100-80gb", "90", "1300Gi"),
}


def jobset_dir() -> Path:
    return module_dir("sigs.k8s.io/jobset", versions.JOBSET)


def kueue_dir() -> Path:
    return module_dir("sigs.k8s.io/kueue", versions.KUEUE)


def kwok_dir() -> Path:
    return module_dir("sigs.k8s.io/kwok", versions.KWOK)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_docs(text: str) -> list[dict[str, Any]]:
    # libyaml: the Kueue CRDs are megabytes of YAML
    return [d for d in yaml.load_all(text, Loader=_Loader) if d]  # noqa: S506 (safe loader)


def kustomize(kubectl: str, path: Path) -> list[dict[str, Any]]:
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed:\n{out.stderr}")
    return load_docs(out.stdout)


# ---------------------------------------------------------------------------- nodes


def fake_nodes(spec: dict[str, tuple[int, str, str, str]] | None = None) -> list[dict[str, Any]]:
    nodes = []
    for prefix, (count, accel, cpu, mem) in (spec or DEFAULT_NODES).items():
        for i in range(count):
            name = f"{prefix}-{i}"
            res = {
                "cpu": cpu,
                "memory": mem,
                "nvidia.com/gpu": "8",
                "pods": "110",
                "ephemeral-storage": "1Ti",
            }
            nodes.append(
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {
                        "name": name,
                        "annotations": {
                            KWOK_NODE_ANNOTATION: "fake",
                            "node.alpha.kubernetes.io/ttl": "0",
                        },
                        "labels": {
                            "kubernetes.io/hostname": name,
                            "kubernetes.io/os": "linux",
                            "kubernetes.io/arch": "amd64",
                            "type": "kwok",
                            "cloud.google.com/gke-accelerator": accel,
                        },
                    },
                    "spec": {"taints": [dict(GPU_TAINT)]},
                    "status": {"capacity": res, "allocatable": dict(res)},
                }
            )
    return nodes


# ---------------------------------------------------------------------------- kwok


def _stage(path: Path) -> list[dict[str, Any]]:
    return load_docs(path.read_text())


def kwok_config(run_seconds: float = 3.0, fail_seconds: float = 2.0) -> list[dict[str, Any]]:
    """KWOK Stages: nodes become Ready; pods go Running, then Succeeded
    after ``run_seconds`` (or Failed with the exit code in FAIL_EXIT_CODE_ANNOTATION)."""
    base = kwok_dir() / "kustomize" / "stage"
    stages: list[dict[str, Any]] = []
    stages += _stage(base / "node" / "fast" / "node-initialize.yaml")
    stages += _stage(base / "node" / "heartbeat" / "node-heartbeat.yaml")
    for name in [
        "pod-create",
        "pod-init-container-running",
        "pod-init-container-completed",
        "pod-ready",
        "pod-complete",
        "pod-delete",
    ]:
        stages += _stage(base / "pod" / "general" / f"{name}.yaml")

    for st in stages:
        name = st["metadata"]["name"]
        delay = st["spec"].get("delay")
        if delay is None:
            continue
        if name.startswith("pod-"):
            # Deterministic and quick: no random jitter (keep jitterDurationFrom, which
            # pod-delete uses for the deletion grace period).
            delay.pop("jitterDurationMilliseconds", None)
            if name == "pod-complete":
                delay["durationMilliseconds"] = int(run_seconds * 1000)
            elif name != "pod-delete":
                delay["durationMilliseconds"] = 200
        elif name == "node-heartbeat":
            delay["durationMilliseconds"] = 10000
            delay["jitterDurationMilliseconds"] = 2000
        if name == "pod-complete":
            st["spec"]["selector"]["matchExpressions"].append(
                {
                    "key": f'.metadata.annotations["{FAIL_EXIT_CODE_ANNOTATION}"]',
                    "operator": "DoesNotExist",
                }
            )

    stages.append(_fail_stage(fail_seconds))
    stages.append(_terminate_stage())
    # No KwokConfiguration document: one in --config replaces kwok's defaults wholesale
    # (parallelism 0); the options are passed as flags instead.
    return stages


def _fail_stage(fail_seconds: float) -> dict[str, Any]:
    a = FAIL_EXIT_CODE_ANNOTATION
    template = f"""\
{{{{ $now := Now }}}}
{{{{ $annotations := or .metadata.annotations dict }}}}
{{{{ $exitCode := or ( index $annotations "{a}" ) 1 }}}}
conditions:
- lastProbeTime: null
  lastTransitionTime: {{{{ $now | Quote }}}}
  status: "True"
  reason: ""
  type: Initialized
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: "False"
  reason: PodFailed
  type: Ready
- lastTransitionTime: {{{{ $now | Quote }}}}
  status: "False"
  reason: PodFailed
  type: ContainersReady
containerStatuses:
{{{{ range $index, $item := .spec.containers }}}}
- image: {{{{ $item.image | Quote }}}}
  name: {{{{ $item.name | Quote }}}}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {{{{ $exitCode }}}}
      finishedAt: {{{{ $now | Quote }}}}
      reason: Error
      message: "devcluster: simulated failure"
      startedAt: {{{{ $now | Quote }}}}
{{{{ end }}}}
phase: Failed
"""
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "devcluster-pod-fail"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                    {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                    {"key": f'.metadata.annotations["{a}"]', "operator": "Exists"},
                ]
            },
            "weight": 1,
            "delay": {
                "durationMilliseconds": int(fail_seconds * 1000),
                "durationFrom": {
                    "expressionFrom": f'.metadata.annotations["{FAIL_DURATION_ANNOTATION}"]'
                },
            },
            "next": {
                "event": {
                    "type": "Warning",
                    "reason": "Failed",
                    "message": "devcluster: simulated container failure",
                },
                "statusTemplate": template,
            },
        },
    }


def _terminate_stage() -> dict[str, Any]:
    """What a kubelet does to a deleted pod: stop its containers (exit 137), phase Failed.
    Lets the Job controller drop its tracking finalizer so pod-delete can remove it."""
    template = """\
{{ $now := Now }}
containerStatuses:
{{ range $index, $item := .spec.containers }}
- image: {{ $item.image | Quote }}
  name: {{ $item.name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 137
      finishedAt: {{ $now | Quote }}
      reason: Error
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Failed
"""
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "devcluster-pod-terminate"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                    {"key": ".metadata.finalizers", "operator": "Exists"},
                    {"key": ".status.phase", "operator": "In", "values": ["Pending", "Running"]},
                ]
            },
            "weight": 1,
            "delay": {"durationMilliseconds": 200},
            "next": {"statusTemplate": template},
        },
    }


# ---------------------------------------------------------------------------- managers


def jobset_config(webhook_port: int, probe_port: int, cert_dir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "config.jobset.x-k8s.io/v1alpha1",
        "kind": "Configuration",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "metrics": {"bindAddress": "0"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{probe_port}"},
    }


def kueue_config(
    webhook_port: int, probe_port: int, cert_dir: Path, wait_for_pods_ready: bool = False
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "metrics": {"bindAddress": "0"},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{probe_port}"},
        "manageJobsWithoutQueueName": False,
        "integrations": {"frameworks": ["batch/job", "jobset.x-k8s.io/jobset"]},
        "featureGates": {"VisibilityOnDemand": False},
    }
    if wait_for_pods_ready:
        cfg["waitForPodsReady"] = {"timeout": "5m", "blockAdmission": False}
    return cfg


def _to_url(client_config: dict[str, Any], port: int, ca_bundle: str) -> None:
    svc = client_config.pop("service", None)
    if svc is None:
        return
    path = svc.get("path", "/")
    client_config["url"] = f"https://127.0.0.1:{port}{path}"
    client_config["caBundle"] = ca_bundle


def rewrite_webhooks(
    docs: Iterable[dict[str, Any]], prefix: str, port: int, ca_pem: bytes
) -> list[dict[str, Any]]:
    """Keep the webhook configurations (renamed with ``prefix``), pointing them at
    https://127.0.0.1:<port>; drop the Service."""
    ca = base64.b64encode(ca_pem).decode()
    out = []
    for d in docs:
        if d.get("kind") not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            continue
        d = copy.deepcopy(d)
        d["metadata"]["name"] = f"{prefix}-{d['metadata']['name']}"
        for wh in d.get("webhooks", []):
            _to_url(wh["clientConfig"], port, ca)
        out.append(d)
    return out


def rewrite_crds(docs: Iterable[dict[str, Any]], port: int, ca_pem: bytes) -> list[dict[str, Any]]:
    """CRDs with conversion webhooks pointed at https://127.0.0.1:<port>/convert."""
    ca = base64.b64encode(ca_pem).decode()
    out = []
    for d in docs:
        if d.get("kind") != "CustomResourceDefinition":
            continue
        d = copy.deepcopy(d)
        conv = d.get("spec", {}).get("conversion") or {}
        wh = conv.get("webhook")
        if conv.get("strategy") == "Webhook" and wh:
            _to_url(wh["clientConfig"], port, ca)
        d["metadata"].get("annotations", {}).pop("cert-manager.io/inject-ca-from", None)
        out.append(d)
    return out


def jobset_manifests(
    kubectl: str, port: int, ca_pem: bytes
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(CRDs, webhook configurations) for JobSet."""
    comp = jobset_dir() / "config" / "components"
    crds = rewrite_crds(kustomize(kubectl, comp / "crd"), port, ca_pem)
    whs = rewrite_webhooks(kustomize(kubectl, comp / "webhook"), "jobset", port, ca_pem)
    return crds, whs


def kueue_manifests(
    kubectl: str, port: int, ca_pem: bytes
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(CRDs, webhook configurations) for Kueue."""
    comp = kueue_dir() / "config" / "components"
    crds = rewrite_crds(kustomize(kubectl, comp / "crd"), port, ca_pem)
    whs = rewrite_webhooks(kustomize(kubectl, comp / "webhook"), "kueue", port, ca_pem)
    return crds, whs
