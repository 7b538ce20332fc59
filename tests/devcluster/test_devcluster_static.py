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


def test_registry_serves_a_layout_as_a_pull_needs_it(tmp_path: Path) -> None:
    """What containerd asks for on a pull: /v2/, the manifest by tag and by digest
    (HEAD, then GET, with Docker-Content-Digest), then blobs; nothing else."""
    import hashlib
    import json
    import urllib.error
    import urllib.request

    from devcluster.registry import Registry

    blobs = tmp_path / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    config = b'{"rootfs": {"type": "layers", "diff_ids": []}}'
    cdigest = "sha256:" + hashlib.sha256(config).hexdigest()
    manifest = json.dumps({"schemaVersion": 2, "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json", "digest": cdigest,
        "size": len(config)}, "layers": []}).encode()
    mdigest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    for data, digest in ((config, cdigest), (manifest, mdigest)):
        (blobs / digest.split(":")[1]).write_bytes(data)
    (tmp_path / "index.json").write_text(json.dumps({"manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest,
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "t1"}}]}))
    reg = Registry(tmp_path, "ftops/llamafactory").start()
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def get(path: str, method: str = "GET") -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(f"http://{reg.address}{path}", method=method)
        try:
            with opener.open(req, timeout=5) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, b"", {}

    try:
        assert get("/v2/")[0] == 200
        for ref in ("t1", mdigest):
            status, body, headers = get(f"/v2/ftops/llamafactory/manifests/{ref}")
            assert (status, body) == (200, manifest)
            assert headers["Docker-Content-Digest"] == mdigest
            assert headers["Content-Type"] == "application/vnd.oci.image.manifest.v1+json"
        status, body, headers = get(f"/v2/ftops/llamafactory/manifests/{mdigest}", "HEAD")
        assert status == 200 and body == b"" and headers["Content-Length"] == str(len(manifest))
        assert get(f"/v2/ftops/llamafactory/blobs/{cdigest}")[1] == config
        assert get("/v2/ftops/llamafactory/blobs/sha256:" + "0" * 64)[0] == 404
        assert get("/v2/other/repo/manifests/t1")[0] == 404
        assert get("/v2/ftops/llamafactory/blobs/../../index.json")[0] == 404
        assert get("/v2/ftops/llamafactory/blobs/uploads/", "POST")[0] == 405
    finally:
        reg.stop()


def test_image_cache_key_follows_the_dockerfile_and_the_sources(tmp_path: Path) -> None:
    """The train image is rebuilt when what it is built from changes, and only then."""
    import shutil

    from devcluster import image

    for rel in image.TRAIN_INPUTS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(image.REPO_ROOT / rel, tmp_path / rel)
    shutil.copytree(image.REPO_ROOT / "render", tmp_path / "render",
                    ignore=shutil.ignore_patterns("__pycache__"))
    key = image.train_key(tmp_path)
    assert image.train_key(image.REPO_ROOT) == key
    (tmp_path / "render" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "render" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("# not in the image\n")
    assert image.train_key(tmp_path) == key
    noderun = tmp_path / "render" / "launch" / "noderun.py"
    noderun.write_text(noderun.read_text() + "# changed\n")
    assert image.train_key(tmp_path) != key
    noderun.write_text((image.REPO_ROOT / "render" / "launch" / "noderun.py").read_text())
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("USER 1000", "USER 1001"))
    assert image.train_key(tmp_path) != key
