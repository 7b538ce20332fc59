"""`ftops index reconcile --cluster`: the records of runs whose post-run hook never ran.

Every cluster run's rank 0 writes `run.json` (status `running`) beside its artifacts when
it starts, and the hook overwrites it with the outcome. A pod killed before its hook
runs (OOM, a lost node, SIGKILL) leaves the `running` one, plus the trainer's log and
results. With cluster access, reconcile finishes such a record once the run's JobSet
has ended: status from the JobSet (Completed: succeeded, Failed: failed), restarts from
its status, metrics and loss points from what the trainer left, and a message saying the
hook did not finish. The record is written back as the run's `run.json` (where the
index's verifier reads it, `render.record.trust`) and then lands like any stored record.
A run whose JobSet is still going, or gone (deleted, or expired after its TTL), is left
as it is.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from render.launch.kube import condition, is_true
from render.record import hook
from render.record.identity import RUN_ID_LABEL, RunIdentity
from render.record.runrecord import IDENTITY_FIELDS, RunRecord, now
from render.record.storage import open_storage
from render.record.trainerlog import TRAINER_LOG
from render.record.trust import StoredRecord

# What the hook reads from a run folder: the trainer's log and LLaMA-Factory's results.
_TRAINER_FILES = (TRAINER_LOG, "all_results.json", "train_results.json",
                  "trainer_state.json")
_UNFINISHED = ("launched", "running")


def finish_orphans(stored: Sequence[StoredRecord], jobsets: Sequence[dict[str, Any]]
                   ) -> list[StoredRecord]:
    """Final records for the unfinished cluster runs in `stored` whose JobSet has ended
    (each with where its run.json was read)."""
    by_run = {(js.get("metadata", {}).get("labels") or {}).get(RUN_ID_LABEL): js
              for js in jobsets}
    out = []
    for item in stored:
        rec = item.record
        js = by_run.get(rec.run_id)
        if rec.mode != "cluster" or rec.status not in _UNFINISHED or js is None:
            continue
        if is_true(js, "Completed"):
            status, cond = "succeeded", condition(js, "Completed")
        elif is_true(js, "Failed"):
            status, cond = "failed", condition(js, "Failed")
        else:
            continue
        restarts = (js.get("status") or {}).get("restarts")
        out.append(StoredRecord(_finish(rec, status, cond or {},
                                        restarts if isinstance(restarts, int) else 0),
                                item.uri))
    return out


def _finish(rec: RunRecord, status: str, cond: dict[str, Any], restarts: int) -> RunRecord:
    storage = open_storage(rec.artifacts_uri)
    identity = RunIdentity(**{name: getattr(rec, name) for name in IDENTITY_FIELDS})
    why = str(cond.get("message") or cond.get("reason") or "")
    finished = str(cond.get("lastTransitionTime") or "") or now()
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
                     f"finish (was the pod killed?); JobSet {status}"
                     + (f": {why}" if why else "")))
    record.artifacts_uri = rec.artifacts_uri
    record.started_at = rec.started_at
    record.duration_s = hook.seconds_between(rec.started_at or "", finished)
    return record
