"""Merge to index entry on the real node: a repository, a remote and storage that pods
reach, shared by the real-node tests and scripts/bench_realnode.py.

- The repository is a git work tree (k8s-base, experiments, outputs-index) whose origin
  is a bare repository; experiments are proposed on a branch and merged into main.
- The bare repository is also served over smart HTTP on the node's bridge (10.88.0.1)
  with a token (tests/gitserver.py): it is the profile's `index.remote`, so rank 0's hook
  in the pod publishes there with the token from the Secret the profile names, exactly as
  a pod publishes to GitHub.
- Storage is the `pvc` profile: a PersistentVolume on a host folder (hostPath), claimed
  as the profile's `pvc_claim`, mounted at /mnt/storage in every pod. The tiny model and
  data (render.demo) are written there, so the experiment names them by their pod path.
- The cluster profile is the shipped one with what this cluster is: the training image
  by digest from the node's registry (its repository allowed), the CPU flavor's size (2
  pods on a 2-core node), storage root = that host folder, the index remote and token
  Secret.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path
from typing import Any

import yaml
from gitserver import GitHttpServer
from local_repo import git

from devcluster.kube import wait_for
from devcluster.node import GATEWAY, RealNode
from render.cli import main

REPO = Path(__file__).resolve().parents[2]
NS = "llm-experiments"
DATASET = "tinyset"
MODEL = "tiny-llama"
TOKEN_SECRET = "ftops-index-token"
POD_STORAGE = "/mnt/storage"
STORAGE_UID = 1000  # the image's user (k8s-base/components/jobset-common: runAsUser)

DATASET_YAML = f"""\
# yaml-language-server: $schema=../../schemas/dataset.schema.json
description: The demo's tiny alpaca data, on the cluster's storage (the real node's tests).
source:
  uri: file://{POD_STORAGE}/assets/data
  revision: generated-seed0
dataset_info:
  {DATASET}:
    file_name: demo.json
    formatting: alpaca
"""


def experiment_yaml(*, nodes: int = 2, max_restarts: int = 0, epochs: float = 2.0,
                    save_steps: int = 8, extra_train: dict[str, Any] | None = None) -> str:
    doc = {
        "metadata": {"owner": "ci", "description": "Two CPU pods train the tiny Llama over "
                     "gloo on the real node.", "tags": ["test", "cpu"]},
        "launch": {"nodes": nodes, "gpus_per_node": 0, "gpu_type": "cpu", "storage": "pvc",
                   "max_restarts": max_restarts, "time_limit": "15m"},
        "train": {
            "model_name_or_path": f"{POD_STORAGE}/assets/{MODEL}",
            "stage": "sft", "do_train": True, "finetuning_type": "lora", "lora_rank": 8,
            "lora_target": "all", "dataset": DATASET, "template": "default",
            "cutoff_len": 128, "per_device_train_batch_size": 4,
            "gradient_accumulation_steps": 1, "learning_rate": 1.0e-3,
            "num_train_epochs": epochs, "logging_steps": 1, "save_steps": save_steps,
            "plot_loss": True, "report_to": "none", "overwrite_cache": True,
            "preprocessing_num_workers": 1, "dataloader_num_workers": 0,
            **(extra_train or {}),
        },
    }
    return ("# yaml-language-server: $schema=../../../schemas/experiment.schema.json\n"
            + yaml.safe_dump(doc, sort_keys=False))


@dataclass
class Merge:
    path: str  # experiments/<dataset>/<model>/<name>.yaml
    before: str
    after: str
    merged_at: float  # time.monotonic() right after the push


@dataclass
class Loop:
    root: Path
    repo: Path
    bare: Path
    storage: Path
    git_server: GitHttpServer
    cluster: Any
    node: RealNode
    token: str
    log: list[str] = field(default_factory=list)

    @property
    def index_remote(self) -> str:
        return f"{self.git_server.url}/index.git"

    @property
    def kubeconfig(self) -> str:
        return str(self.cluster.kubeconfig)

    def env(self) -> dict[str, str]:
        """What the launch workflow's step sets: the index remote and its token."""
        return {"FTOPS_INDEX_REMOTE": self.index_remote, "FTOPS_INDEX_TOKEN": self.token,
                "NO_PROXY": f"{GATEWAY},127.0.0.1,localhost", "no_proxy": f"{GATEWAY},127.0.0.1"}

    def ftops(self, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
        """`ftops --repo <repo> ...` in this process, as the workflow runs it."""
        out, err = StringIO(), StringIO()
        with _environ(env or {}), redirect_stdout(out), redirect_stderr(err):
            try:
                code = main(["--repo", str(self.repo), *argv])
            except SystemExit as exc:
                code = int(exc.code or 0)
        self.log.append(f"$ ftops {' '.join(argv)} -> {code}\n{out.getvalue()}{err.getvalue()}")
        return code, out.getvalue(), err.getvalue()

    # --------------------------------------------------------------- propose, merge

    def merge(self, name: str, text: str) -> Merge:
        """A PR adding experiments/tinyset/tiny-llama/<name>.yaml, merged into main."""
        rel = f"experiments/{DATASET}/{MODEL}/{name}.yaml"
        git(self.repo, "pull", "-q", "--ff-only", "origin", "main")
        before = git(self.repo, "rev-parse", "HEAD").strip()
        git(self.repo, "checkout", "-q", "-b", f"propose/{name}")
        (self.repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (self.repo / rel).write_text(text)
        git(self.repo, "add", rel)
        git(self.repo, "commit", "-qm", f"Propose {name}")
        git(self.repo, "checkout", "-q", "main")
        git(self.repo, "merge", "-q", "--no-ff", "-m", f"Merge {name}", f"propose/{name}")
        for _ in range(5):  # a pod's hook may push index commits at the same moment
            try:
                git(self.repo, "push", "-q", "origin", "main")
                break
            except subprocess.CalledProcessError:
                git(self.repo, "pull", "-q", "--no-rebase", "--no-edit", "origin", "main")
        else:
            raise AssertionError("could not push the merge")
        after = git(self.repo, "rev-parse", "HEAD").strip()
        return Merge(rel, before, after, time.monotonic())

    def launch(self, m: Merge) -> tuple[str, list[str]]:
        """The launch workflow's commands: `ftops changes`, then `ftops apply --record`
        on what it selected (the run id of the one experiment, and the changed list)."""
        code, out, err = self.ftops("changes", "--base", m.before, "--head", m.after)
        assert code == 0, err
        changed = [line for line in out.splitlines() if line.strip()]
        assert changed == [m.path], (changed, err)
        code, out, err = self.ftops("apply", *changed, "--record", "--kubeconfig",
                                    self.kubeconfig, env=self.env())
        assert code == 0, err
        assert "created " in out, out
        return run_id_from(out), changed

    # --------------------------------------------------------------- observe

    def status(self, run_id: str) -> dict[str, Any] | None:
        git(self.repo, "pull", "-q", "--ff-only", "origin", "main")
        code, out, err = self.ftops("status", "--format", "json", "--kubeconfig",
                                    self.kubeconfig)
        assert code == 0, err
        rows = {r["run_id"]: r for r in json.loads(out)}
        return rows.get(run_id)

    def remote_text(self, rel: str) -> str | None:
        try:
            return git(self.bare, "show", f"main:{rel}")
        except Exception:  # noqa: BLE001 (not there yet)
            return None

    def remote_entry(self, name: str, run_id: str) -> dict[str, Any] | None:
        text = self.remote_text(f"outputs-index/{DATASET}/{MODEL}/{name}__{run_id}.json")
        return json.loads(text) if text else None

    def wait_entry(self, name: str, run_id: str, statuses: set[str], timeout: float
                   ) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            e = self.remote_entry(name, run_id)
            return e if e and e["status"] in statuses else None

        return wait_for(f"run {run_id} in the remote index with status in {statuses}", ready,
                        timeout=timeout, interval=1.0, describe=lambda: self.describe(run_id))

    def run_dir(self, name: str, run_id: str) -> Path:
        return self.storage / "experiments" / DATASET / MODEL / name / run_id

    def pods(self, run_id: str) -> list[Any]:
        from kubernetes import client

        v1 = client.CoreV1Api(self.cluster.api_client())
        pods: list[Any] = v1.list_namespaced_pod(
            NS, label_selector=f"ftops.dev/run-id={run_id}").items
        return pods

    def describe(self, run_id: str) -> str:
        """Everything that helps when a wait times out."""
        from kubernetes import client

        lines = []
        try:
            v1 = client.CoreV1Api(self.cluster.api_client())
            for pod in self.pods(run_id):
                st = pod.status
                states = [c.state.to_dict() if c.state else None
                          for c in st.container_statuses or []]
                lines.append(f"pod {pod.metadata.name}: {st.phase} {states}")
                try:
                    log = v1.read_namespaced_pod_log(pod.metadata.name, NS, tail_lines=25,
                                                     _preload_content=False).data.decode()
                    lines.append(log)
                except Exception as exc:  # noqa: BLE001
                    lines.append(f"(no log: {exc})")
            events = v1.list_namespaced_event(NS).items[-15:]
            lines += [f"event {e.involved_object.name}: {e.reason} {e.message}" for e in events]
        except Exception as exc:  # noqa: BLE001
            lines.append(f"(describe failed: {exc})")
        lines += self.log[-4:]
        return "\n".join(lines)


def run_id_from(apply_out: str) -> str:
    for line in apply_out.splitlines():
        if line.startswith("created"):
            return line.rsplit("run ", 1)[1].rstrip(")")
    raise AssertionError(f"no run created in:\n{apply_out}")


@contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _chown_tree(path: Path, uid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, uid)


def profile_for(node: RealNode, storage: Path, index_remote: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        doc = yaml.safe_load(text)
        doc["default_image"] = node.image_ref
        doc["limits"]["allowed_images"].append(node.image_ref.split("@", 1)[0]
                                               .rsplit("/", 1)[0])
        doc["storage"]["root"] = storage.as_uri()
        doc["storage"]["default_profile"] = "pvc"
        doc["trackers"]["report_to"] = "none"
        doc["gpu_types"]["cpu"].update(cpu_per_node=1, memory_per_node_gib=6)
        doc["index"] = {"remote": index_remote, "branch": "main",
                        "token_secret": f"{TOKEN_SECRET}/token"}
        return "# The real node's cluster (tests/devcluster/realloop.py)\n" + yaml.safe_dump(
            doc, sort_keys=False)

    return edit


def _apply(cluster: Any, docs: list[dict[str, Any]]) -> None:
    cluster.apply(docs, retries=5)


@contextmanager
def loop(root: Path, cluster: Any, node: RealNode) -> Iterator[Loop]:
    """Set everything up under `root`; stop the git server and release the volume after."""
    from render.launch.demo import make_demo_assets

    storage = root / "storage"
    make_demo_assets(storage / "assets")
    _chown_tree(storage, STORAGE_UID)
    token = secrets.token_urlsafe(24)
    served = root / "served"
    bare = served / "index.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(bare))
    with GitHttpServer(served, token, host=GATEWAY) as server:
        repo = root / "repo"
        shutil.copytree(REPO / "k8s-base", repo / "k8s-base")
        shutil.copytree(REPO / "experiments", repo / "experiments")
        shutil.copytree(REPO / "schemas", repo / "schemas")
        (repo / "outputs-index").mkdir()
        shutil.copy(REPO / "outputs-index" / "README.md", repo / "outputs-index" / "README.md")
        (repo / ".gitignore").write_text("/.rendered/\n")
        prof = repo / "k8s-base" / "cluster-profile.yaml"
        prof.write_text(profile_for(node, storage, f"{server.url}/index.git")(prof.read_text()))
        (repo / "experiments" / DATASET).mkdir()
        (repo / "experiments" / DATASET / "dataset.yaml").write_text(DATASET_YAML)
        git(root, "init", "-q", "-b", "main", str(repo))
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "seed")
        git(repo, "remote", "add", "origin", str(bare))
        git(repo, "push", "-q", "origin", "main")
        pv_name = f"ftops-storage-{secrets.token_hex(4)}"
        _apply(cluster, [
            {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv_name},
             "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"],
                      "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                      "hostPath": {"path": str(storage), "type": "Directory"},
                      "claimRef": {"namespace": NS, "name": "llm-shared-nfs"}}},
            {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
             "metadata": {"name": "llm-shared-nfs", "namespace": NS},
             "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                      "volumeName": pv_name, "resources": {"requests": {"storage": "10Gi"}}}},
            {"apiVersion": "v1", "kind": "Secret",
             "metadata": {"name": TOKEN_SECRET, "namespace": NS},
             "stringData": {"token": token}},
        ])
        lp = Loop(root, repo, bare, storage, server, cluster, node, token)
        try:
            yield lp
        finally:
            cluster.kubectl("delete", "-n", NS, "jobsets.jobset.x-k8s.io", "--all",
                            "--wait=true", "--timeout=120s", check=False)
            cluster.kubectl("delete", "-n", NS, "pvc/llm-shared-nfs", f"secret/{TOKEN_SECRET}",
                            "--wait=true", "--timeout=60s", check=False)
            cluster.kubectl("delete", f"pv/{pv_name}", "--wait=false", check=False)
