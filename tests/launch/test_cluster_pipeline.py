"""A two-stage pipeline (SFT -> DPO, `needs:`) on the real local control plane (API
server, JobSet and Kueue controllers; KWOK nodes, so no container runs): stage B is
not created while stage A's record is anything but succeeded, and `ftops apply
--waiting` (the launch workflow after an index push) creates it once it is, with A's
output folder as B's adapter_name_or_path.

KWOK runs no container, so no post-run hook writes A's `succeeded` record: the test
writes it from A's JobSet as the cluster holds it (its labels and annotations, what
`index reconcile` would land from A's run.json). Issue 11's real kubelet node is not on
this branch; with it, A's hook would write the record and B would train on A's adapter.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from devcluster.kube import wait_for
from test_cluster_launch import cluster_of, kube, own, run_id, state_of, ws  # noqa: F401

from render.cli import main
from render.manifests.runspec import STORAGE_MOUNT
from render.record.identity import EXPERIMENT_PATH_ANNOTATION, RUN_ID_LABEL
from render.record.index import write_entry
from render.record.runrecord import RunRecord, now

SFT = "experiments/ultrafeedback_sft/llama-3.1-8b-instruct/sft_lora_v1.yaml"
DPO = "experiments/ultrafeedback/llama-3.1-8b-instruct/dpo_on_sft_v1.yaml"
pytestmark = pytest.mark.cluster


def jobsets_of(devcluster: Any, path: str) -> list[dict[str, Any]]:
    return [js for js in cluster_of(devcluster).jobsets()
            if js["metadata"]["annotations"].get(EXPERIMENT_PATH_ANNOTATION) == path]


def test_stage_b_is_created_only_after_stage_a_succeeded(
        ws: Path, devcluster: Any, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    sft, dpo = own(ws, SFT, "pipe"), own(ws, DPO, "pipe")
    (ws / dpo).write_text((ws / dpo).read_text().replace(SFT, sft))
    commit = "d7" * 20
    # the merge that adds both stages: A is created, B waits
    assert main(["--repo", str(ws), "apply", sft, dpo, "--commit", commit, "--record",
                 *kube(devcluster)]) == 0
    out, err = capsys.readouterr()
    rid_a = run_id(ws, sft, commit)
    assert f"created   sft-lora-pipe-v1-{rid_a}" in out
    assert f"waiting  {dpo}: waits for {sft}: it has no run yet" in err
    assert not jobsets_of(devcluster, dpo)
    assert main(["--repo", str(ws), "status", "--format", "json", *kube(devcluster)]) == 0
    rows = json.loads(capsys.readouterr().out)
    (row,) = [r for r in rows if r["experiment"] == dpo]
    assert row["state"] == "waiting" and row["run_id"] == "-"
    assert row["reason"] == f"waits for {sft}: run {rid_a} is launched"

    # A's JobSet completes; its record still says launched: B still waits
    wait_for("stage A to complete", lambda: state_of(devcluster, ws, rid_a).state ==
             "succeeded", timeout=180)
    assert main(["--repo", str(ws), "apply", "--waiting", "--record", "--commit", commit,
                 *kube(devcluster)]) == 0
    assert "no waiting pipeline stage is ready" in capsys.readouterr().err
    assert not jobsets_of(devcluster, dpo)

    # A's record says failed: B waits, and says why
    (js_a,) = cluster_of(devcluster).jobsets(f"{RUN_ID_LABEL}={rid_a}")
    rec_a = RunRecord.from_jobset(js_a)
    write_entry(ws / "outputs-index", replace(rec_a, status="failed", exit_code=1,
                                              finished_at=now()))
    assert main(["--repo", str(ws), "apply", "--waiting", "--list"]) == 0
    out, err = capsys.readouterr()
    assert "ready" not in out and f"its latest run {rid_a} failed" in err

    # the index lands A's `succeeded` record (a re-run of A succeeded): B is created
    sft_ok = RunRecord.from_jobset(js_a)
    rid_ok = "e" * 10
    uri = rec_a.artifacts_uri.rsplit("/", 1)[0] + f"/{rid_ok}"
    write_entry(ws / "outputs-index", replace(sft_ok, run_id=rid_ok, status="succeeded",
                                              exit_code=0, artifacts_uri=uri,
                                              started_at=now(), finished_at=now(),
                                              duration_s=3600.0))
    assert main(["--repo", str(ws), "apply", "--waiting", "--record", "--commit", commit,
                 *kube(devcluster)]) == 0
    out = capsys.readouterr().out
    assert "created " in out and dpo in out
    (js_b,) = jobsets_of(devcluster, dpo)
    rid_b = js_b["metadata"]["labels"][RUN_ID_LABEL]
    from kubernetes.client import CoreV1Api

    cm = CoreV1Api(devcluster.api_client()).read_namespaced_config_map(
        f"{js_b['metadata']['name']}-config", "llm-experiments")
    train = yaml.safe_load(cm.data["train.yaml"])
    assert train["adapter_name_or_path"] == f"{STORAGE_MOUNT}/{uri.split('/', 3)[3]}"
    assert train["create_new_adapter"] is True
    entry = json.loads(next((ws / "outputs-index").rglob(f"*__{rid_b}.json")).read_text())
    assert entry["status"] == "launched"
    assert entry["needs"][0]["run_id"] == rid_ok
    # applied once: a second --waiting creates nothing
    assert main(["--repo", str(ws), "apply", "--waiting", "--list"]) == 0
    assert "ready" not in capsys.readouterr().out
    for rid in (rid_a, rid_b):
        if cluster_of(devcluster).jobsets(f"{RUN_ID_LABEL}={rid}"):
            assert main(["--repo", str(ws), "cancel", rid, "--no-record",
                         *kube(devcluster)]) == 0
