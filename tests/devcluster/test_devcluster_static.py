"""Checks of the devcluster harness that need no running cluster."""

from __future__ import annotations

import base64
import re
from pathlib import Path

from devcluster import manifests, versions

GO_DIR = Path(manifests.__file__).parent / "go"


def test_go_wrappers_pin_the_versions_in_versions_py() -> None:
    for comp, (module, version, _pkgs, _names) in versions.all_components().items():
        gomod = (GO_DIR / versions.module_dir(comp) / "go.mod").read_text()
        assert re.search(
            rf"^\s*(require\s+)?{re.escape(module)} {re.escape(version)}\b", gomod, re.M
        ), (comp, module, version)


def test_kubernetes_staging_modules_follow_the_kubernetes_version() -> None:
    gomod = (GO_DIR / "kubernetes" / "go.mod").read_text()
    staging = "v0." + versions.KUBERNETES.split(".", 1)[1]
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => (k8s\.io/\S+) (v\S+)$", gomod, re.M)
    assert len(replaced) > 20
    for old, new, ver in replaced:
        assert old == new and ver == staging, (old, new, ver)


def test_webhooks_rewritten_to_loopback_urls() -> None:
    docs = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "webhook-service"}},
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": "validating-webhook-configuration"},
            "webhooks": [
                {
                    "name": "v.kb.io",
                    "clientConfig": {
                        "service": {
                            "name": "webhook-service",
                            "namespace": "system",
                            "path": "/validate-x",
                        }
                    },
                }
            ],
        },
    ]
    out = manifests.rewrite_webhooks(docs, "jobset", 9443, b"PEM")
    assert [d["metadata"]["name"] for d in out] == ["jobset-validating-webhook-configuration"]
    cc = out[0]["webhooks"][0]["clientConfig"]
    assert cc == {
        "url": "https://127.0.0.1:9443/validate-x",
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert "service" in docs[1]["webhooks"][0]["clientConfig"]  # input untouched


def test_fake_nodes_advertise_gpus_and_are_tainted() -> None:
    nodes = manifests.fake_nodes()
    accels = sorted(n["metadata"]["labels"]["cloud.google.com/gke-accelerator"] for n in nodes)
    assert accels == ["nvidia-a100-80gb"] * 2 + ["nvidia-h100-80gb"] * 2
    for n in nodes:
        assert n["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert n["spec"]["taints"] == [manifests.GPU_TAINT]
        assert n["metadata"]["annotations"][manifests.KWOK_NODE_ANNOTATION] == "fake"
