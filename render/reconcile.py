"""`ftops index reconcile`: the records that storage holds, and, with `--cluster`, the
records of runs whose post-run hook never finished.

Every run's rank 0 writes `run.json` (status `running`) beside its artifacts when it
starts, and the hook overwrites it with the outcome. A pod killed before its hook runs
(OOM, a lost node, SIGKILL) leaves the `running` one, plus the trainer's log and
results. With cluster access, reconcile finishes such a record once the run's JobSet
has ended: status from the JobSet (Completed: succeeded, Failed: failed), metrics and
loss points from what the trainer left, and a message saying the hook did not finish.
A run whose JobSet is still going, or gone (deleted, or expired after its TTL), is
left as it is.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from render import hook
from render.record import RunRecord
from render.storage import Storage, open_storage

# What the hook reads from a run folder (trainer.TRAINER_LOG and LLaMA-Factory's results).
_TRAINER_FILES = ("trainer_log.jsonl", "all_results.json", "train_results.json",
                  "trainer_state.json")
_UNFINISHED = ("launched", "running")


def stored_records(storage: Storage) -> list[RunRecord]:
    """Every readable run.json under `experiments/` in storage."""
    out = []
    for key in storage.list_keys("experiments/", f"/{hook.RUN_JSON}"):
        text = storage.read_text(key)
        try:
            out.append(RunRecord.from_json(text or ""))
        except (ValueError, TypeError):
            print(f"ftops index reconcile: skipping unreadable {storage.uri(key)}",
                  file=sys.stderr)
    return out


def finish_orphans(records: list[RunRecord], jobsets: list[dict[str, Any]]
                   ) -> list[RunRecord]:
    """Final records for unfinished cluster runs whose JobSet has ended."""
    from render.cluster import RUN_LABEL, condition, is_true

    by_run = {(js["metadata"].get("labels") or {}).get(RUN_LABEL): js for js in jobsets}
    out = []
    for rec in records:
        js = by_run.get(rec.run_id)
        if rec.mode != "cluster" or rec.status not in _UNFINISHED or js is None:
            continue
        if is_true(js, "Completed"):
            status, cond = "succeeded", condition(js, "Completed")
        elif is_true(js, "Failed"):
            status, cond = "failed", condition(js, "Failed")
        else:
            continue
        out.append(_finish(rec, status, cond or {},
                           int((js.get("status") or {}).get("restarts") or 0)))
    return out


def _finish(rec: RunRecord, status: str, cond: dict[str, Any], restarts: int) -> RunRecord:
    storage = open_storage(rec.artifacts_uri)
    identity = {k: getattr(rec, k) for k in (
        "run_id", "experiment", "experiment_path", "dataset", "model", "config_hash",
        "git_sha", "image", "owner", "nodes", "gpus_per_node", "gpu_type", "jobset",
        "artifacts_uri", "hyperparameters")}
    why = str(cond.get("message") or cond.get("reason") or "")
    finished = str(cond.get("lastTransitionTime") or "") or hook.now()
    with tempfile.TemporaryDirectory(prefix="ftops-reconcile-") as tmp:
        for name in _TRAINER_FILES:
            text = storage.read_text(name)
            if text is not None:
                (Path(tmp) / name).write_text(text, encoding="utf-8")
        record = hook.build_record(
            identity, Path(tmp), exit_code=None, status=status,
            started_at=rec.started_at or "", finished_at=finished, mode="cluster",
            resolved_config=rec.resolved_config, restarts=max(restarts, rec.restarts),
            draw=False,
            message=("recorded by `ftops index reconcile`: the post-run hook did not "
                     f"finish (was the pod killed?); JobSet {status}" + (f": {why}" if why
                                                                         else "")))
    record.started_at = rec.started_at
    record.duration_s = hook.seconds_between(rec.started_at or "", finished)
    return record
