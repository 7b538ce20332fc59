"""Merge to launch, on the real local control plane: what `ftops apply`, `status` and
`cancel` do against a real API server with the JobSet and Kueue controllers and
webhooks, Kueue configured from k8s-base/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from devcluster.kube import wait_for

from render.cli import main
from render.launch.cluster import status
from render.launch.kube import Cluster
from render.manifests.runspec import RunSpec
from render.propose.experiment import Workspace
from render.record.identity import RUN_ID_LABEL

REPO = Path(__file__).resolve().parent.parent.parent
LORA = "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"
pytestmark = pytest.mark.cluster


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "k8s-base", root / "k8s-base")
    shutil.copytree(REPO / "experiments", root / "experiments")
    (root / "outputs-index").mkdir()
    shutil.copy(REPO / "outputs-index/README.md", root / "outputs-index/README.md")
    return root


def kube(devcluster: Any) -> list[str]:
    return ["--kubeconfig", str(devcluster.kubeconfig)]


def cluster_of(devcluster: Any) -> Cluster:
    return Cluster(devcluster.api_client(), "llm-experiments")


def run_id(root: Path, path: str, commit: str) -> str:
    exp, _ = Workspace(root).load(root / path)
    assert exp is not None
    return RunSpec(exp, commit).run_id


def state_of(devcluster: Any, root: Path, rid: str) -> Any:
    from render.record.index import load_index

    rows = {r.run_id: r for r in status(cluster_of(devcluster), load_index(
        root / "outputs-index"))}
    return rows.get(rid)


def test_every_shipped_experiment_passes_server_side_dry_run(ws: Path, devcluster: Any,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    """The API server's own dry run: CEL rules and the JobSet/Kueue webhooks included."""
    assert main(["--repo", str(ws), "apply", "--all", "--dry-run", "--commit", "d" * 40,
                 *kube(devcluster)]) == 0
    out = capsys.readouterr().out
    shipped = list((ws / "experiments").rglob("*_v*.yaml"))
    assert out.count("dry-run ") == len(shipped) >= 4
    ids = {run_id(ws, str(p.relative_to(ws)), "d" * 40) for p in shipped}
    existing = {js["metadata"]["labels"][RUN_ID_LABEL] for js in cluster_of(devcluster).jobsets()}
    assert not ids & existing


def test_apply_is_idempotent_records_launch_and_runs_to_completion(
        ws: Path, devcluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    commit = "a1" * 20
    rid = run_id(ws, LORA, commit)
    args = ["--repo", str(ws), "apply", LORA, "--commit", commit, "--record", *kube(devcluster)]
    assert main(args) == 0
    assert "created " in capsys.readouterr().out
    entry = next((ws / "outputs-index").rglob(f"*__{rid}.json"))
    assert json.loads(entry.read_text())["status"] == "launched"
    assert rid in (ws / "outputs-index/README.md").read_text()
    # a second apply (a re-run of the workflow) changes nothing and creates nothing
    assert main(args) == 0
    assert "unchanged " in capsys.readouterr().out
    assert len(cluster_of(devcluster).jobsets(f"{RUN_ID_LABEL}={rid}")) == 1
    seen = set()

    def finished() -> bool:
        row = state_of(devcluster, ws, rid)
        seen.add(row.state)
        return row.state == "succeeded"

    wait_for("the JobSet to complete", finished, timeout=120)
    assert "succeeded" in seen and seen <= {"queued", "admitted", "running", "succeeded"}
    assert main(["--repo", str(ws), "status", "--format", "json", *kube(devcluster)]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[rid]["state"] == "succeeded" and rows[rid]["index_status"] == "launched"
    # a run id that is in the cluster is never launched again
    assert main(["--repo", str(ws), "cancel", rid, *kube(devcluster)]) == 0


def test_queued_run_shows_kueue_reason_and_cancel_records_it(
        ws: Path, devcluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """Two 16-GPU runs against the 16-GPU h100 quota: one admitted, one queued with
    Kueue's reason; cancelling deletes the JobSet and records it in the index."""
    full = "experiments/alpaca_en/llama-3.1-8b/sft_full_ds3_lr1e-5_v1.yaml"
    ids = []
    for commit in ("b1" * 20, "b2" * 20):
        assert main(["--repo", str(ws), "apply", full, "--commit", commit, "--record",
                     *kube(devcluster)]) == 0
        ids.append(run_id(ws, full, commit))
    capsys.readouterr()

    def one_queued() -> list[Any] | None:
        rows = [state_of(devcluster, ws, r) for r in ids]
        states = sorted(r.state for r in rows)
        queued = [r for r in rows if r.state == "queued" and r.reason]
        return rows if queued and states[0] in ("admitted", "running", "succeeded") else None

    rows = wait_for("one run admitted, one queued", one_queued, timeout=180)
    queued = next(r for r in rows if r.state == "queued")
    assert "insufficient" in queued.reason and "nvidia.com/gpu" in queued.reason
    assert queued.position == 1
    for rid in ids:
        assert main(["--repo", str(ws), "cancel", rid, *kube(devcluster)]) == 0
    assert "deleted JobSet" in capsys.readouterr().out
    wait_for("JobSets gone", lambda: not any(
        cluster_of(devcluster).jobsets(f"{RUN_ID_LABEL}={r}") for r in ids), timeout=240)
    for rid in ids:
        entry = next((ws / "outputs-index").rglob(f"*__{rid}.json"))
        assert json.loads(entry.read_text())["status"] == "cancelled"
        assert state_of(devcluster, ws, rid).state == "cancelled"


def test_apply_refuses_a_run_already_in_the_index(ws: Path, devcluster: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    commit = "c1" * 20
    rid = run_id(ws, LORA, commit)
    exp, _ = Workspace(ws).load(ws / LORA)
    assert exp is not None
    entry = ws / "outputs-index/alpaca_en/llama-3.1-8b" / f"sft_lora_r8_lr1e-4_v1__{rid}.json"
    entry.parent.mkdir(parents=True)
    entry.write_text(json.dumps({
        "run_id": rid, "experiment": "sft_lora_r8_lr1e-4_v1", "experiment_path": LORA,
        "dataset": "alpaca_en", "model": "llama-3.1-8b", "config_hash": exp.config_hash,
        "git_sha": commit,
        "status": "succeeded"}))
    assert main(["--repo", str(ws), "apply", LORA, "--commit", commit,
                 *kube(devcluster)]) == 1
    err = capsys.readouterr().err
    assert f"run {rid}" in err and "already in outputs-index" in err
    assert not cluster_of(devcluster).jobsets(f"{RUN_ID_LABEL}={rid}")


def test_apply_explains_a_missing_queue(ws: Path, devcluster: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    profile = ws / "k8s-base/cluster-profile.yaml"
    profile.write_text(profile.read_text().replace("queues: [research, production]",
                                                   "queues: [research, production, nightly]"))
    # the repository declares the queue (lint reads Kueue's component), the cluster's
    # admins have not applied it yet: apply must say so
    queues = ws / "k8s-base/components/kueue/local-queues.yaml"
    queues.write_text(queues.read_text() + "---\napiVersion: kueue.x-k8s.io/v1beta1\n"
                      "kind: LocalQueue\nmetadata:\n  name: nightly\n"
                      "  namespace: llm-experiments\nspec:\n  clusterQueue: llm-gpus\n")
    exp = ws / LORA
    exp.write_text(exp.read_text().replace("  max_restarts: 2", "  max_restarts: 2\n"
                                           "  queue: nightly"))
    assert main(["--repo", str(ws), "apply", LORA, "--commit", "e1" * 20,
                 *kube(devcluster)]) == 1
    err = capsys.readouterr().err
    assert "LocalQueue 'nightly' does not exist" in err and "Traceback" not in err


def test_launcher_role_is_enough_and_no_more(ws: Path, devcluster: Any) -> None:
    """apply, status and cancel as the launcher identity bound by k8s-base's Role."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    from render.launch.cluster import apply

    api = devcluster.api_client()
    api.set_default_header("Impersonate-User", "ftops-launcher@my-project.iam.gserviceaccount.com")
    cluster = Cluster(api, "llm-experiments")
    from render.manifests.overlay import render

    exp, _ = Workspace(ws).load(ws / LORA)
    assert exp is not None
    spec = RunSpec(exp, "f1" * 20)
    (r,) = render([spec], ws / ".rendered", ws)
    (res,) = apply(cluster, [(spec.run_id, LORA, r.manifests)])
    assert res.action == "created"
    assert any(s.run_id == spec.run_id for s in status(cluster))
    from render.launch.cluster import cancel

    cancel(cluster, spec.run_id)
    with pytest.raises(ApiException) as denied:
        CoreV1Api(api).list_namespaced_secret("llm-experiments")
    assert denied.value.status == 403
