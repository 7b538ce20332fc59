"""`index reconcile --cluster` finishing the records of runs whose post-run hook never
ran: what the run left in storage (run.json `running`, the trainer log) plus how its
JobSet ended. The JobSets are plain objects as the API server returns them; the cluster
path itself runs for real in tests/devcluster/test_realnode.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from run_records import make_record

from render.launch.orphans import finish_orphans
from render.record.hook import stored_records
from render.record.runrecord import RunRecord
from render.record.storage import open_storage

RUN = "experiments/demo/tiny-llama/sft_lora_v1"


def _stored(root: Path, run_id: str, status: str) -> RunRecord:
    folder = root / RUN / run_id
    folder.mkdir(parents=True)
    rec = make_record(run_id, "sft_lora_v1",
                      experiment_path="experiments/demo/tiny-llama/sft_lora_v1.yaml",
                      dataset="demo", model="tiny-llama", mode="cluster", nodes=2,
                      status=status, started_at="2026-11-26T10:00:00Z",
                      artifacts_uri=folder.as_uri(), jobset=f"sft-lora-v1-{run_id}")
    (folder / "run.json").write_text(rec.to_json())
    (folder / "trainer_log.jsonl").write_text("".join(
        json.dumps({"current_steps": s, "total_steps": 40, "loss": 3.0 - s / 10}) + "\n"
        for s in range(1, 6)) + '{"current_steps": 6, "lo')  # cut off mid-line by the kill
    return rec


def _jobset(run_id: str, cond: str | None, restarts: int = 0) -> dict[str, Any]:
    conditions = [] if cond is None else [{
        "type": cond, "status": "True", "reason": "FailedJobs" if cond == "Failed" else "",
        "message": "jobset failed due to reaching max number of restarts",
        "lastTransitionTime": "2026-11-26T10:05:00Z"}]
    return {"metadata": {"name": f"sft-lora-v1-{run_id}",
                         "labels": {"ftops.dev/run-id": run_id}},
            "status": {"conditions": conditions, "restarts": restarts}}


def test_unfinished_runs_of_ended_jobsets_get_their_final_record(tmp_path: Path) -> None:
    for rid, status in (("aaa111", "running"), ("bbb222", "running"), ("ccc333", "running"),
                        ("ddd444", "succeeded"), ("eee555", "launched")):
        _stored(tmp_path, rid, status)
    warnings: list[str] = []
    stored = stored_records(open_storage(str(tmp_path)), warn=warnings.append)
    assert len(stored) == 5 and not warnings
    found_at = {item.record.run_id: item.uri for item in stored}
    healed_items = finish_orphans(stored, [
        _jobset("aaa111", "Failed", restarts=1),
        _jobset("bbb222", None),  # still running: left alone
        _jobset("ddd444", "Completed"),  # its hook did finish: left alone
        _jobset("eee555", "Completed"),
        # ccc333 has no JobSet any more: nothing to go by
    ])
    # each healed record is the one read at that place: the run's own run.json
    assert all(item.uri == found_at[item.record.run_id] for item in healed_items)
    healed = {item.record.run_id: item.record for item in healed_items}
    assert set(healed) == {"aaa111", "eee555"}
    failed = healed["aaa111"]
    assert failed.status == "failed" and failed.restarts == 1 and failed.exit_code is None
    assert "post-run hook did not finish" in failed.message
    assert "reaching max number of restarts" in failed.message
    assert failed.loss_points == [[1, 2.9], [2, 2.8], [3, 2.7], [4, 2.6], [5, 2.5]]
    assert failed.metrics.final_train_loss == pytest.approx(2.5)
    assert failed.finished_at == "2026-11-26T10:05:00Z" and failed.duration_s == 300
    assert failed.started_at == "2026-11-26T10:00:00Z"
    assert failed.loss_curve == ""  # reconcile draws nothing beside the artifacts
    assert healed["eee555"].status == "succeeded"
    # the identity is the launched one: the index's verifier compares it field by field
    original = next(i.record for i in stored if i.record.run_id == "aaa111")
    for name in ("run_id", "experiment_path", "config_hash", "git_sha", "artifacts_uri",
                 "jobset", "nodes", "mode"):
        assert getattr(failed, name) == getattr(original, name), name
