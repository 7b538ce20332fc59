"""The post-run hook: one module, used by `launch --local` and as the last step of every
cluster job (rank 0), on success and on failure.

It turns what a run left in its output folder into a RunRecord (status, exit code,
timings, metrics, the evaluations after training with links to their predictions,
lineage, links), draws the loss curve, finds the run in MLflow (and adds the evaluation
scores to it), writes `run.json` beside the artifacts (the durable record), uploads the
folder when it is not already on central storage, and publishes the record to
outputs-index/ — a failed publish loses nothing: `ftops index reconcile` finds the
run.json later.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from render.errors import FatalError
from render.record.destination import Delivery, IndexDestination
from render.record.evaluation import EVAL_DIR, PREDICTIONS, EvalRun, Evaluation, collect
from render.record.identity import MLFLOW_UI_ENV, RunIdentity
from render.record.index import validate
from render.record.runrecord import MAX_LOSS_POINTS, Metrics, RunRecord
from render.record.storage import Storage, open_storage
from render.record.trainerlog import read_log
from render.record.trust import RUN_JSON, StorageVerifier, StoredRecord

LOSS_CURVE = "loss_curve.png"


def seconds_between(start: str, end: str) -> float | None:
    try:
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        return (datetime.strptime(end, fmt) - datetime.strptime(start, fmt)).total_seconds()
    except ValueError:
        return None


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _finite(value: Any) -> float | None:
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def collect_metrics(output_dir: Path) -> Metrics:
    log = read_log(output_dir)
    losses = [v for v in (_finite(e.get("loss")) for e in log) if v is not None]
    results = _read_json(output_dir / "all_results.json") or _read_json(
        output_dir / "train_results.json")
    state = _read_json(output_dir / "trainer_state.json")
    eval_losses = [v for v in (_finite(e.get("eval_loss")) for e in log) if v is not None]
    steps = state.get("global_step") or (log[-1].get("current_steps") if log else None)
    return Metrics(
        final_train_loss=losses[-1] if losses else None,
        best_train_loss=min(losses) if losses else None,
        eval_loss=_finite(results.get("eval_loss")) or (eval_losses[-1] if eval_losses else None),
        train_runtime_s=_finite(results.get("train_runtime")),
        train_samples_per_second=_finite(results.get("train_samples_per_second")),
        train_steps_per_second=_finite(results.get("train_steps_per_second")),
        total_steps=int(steps) if isinstance(steps, int | float) else None,
        epochs=_finite(results.get("epoch")) or _finite(state.get("epoch")),
        total_flos=_finite(results.get("total_flos")),
    )


def _series(log: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    out = []
    for entry in log:
        step, value = entry.get("current_steps"), _finite(entry.get(key))
        if isinstance(step, int) and value is not None:
            out.append((step, value))
    return out


def loss_points(output_dir: Path, limit: int = MAX_LOSS_POINTS) -> list[list[float]]:
    """The training loss per step for the index's sparkline: at most `limit` [step,
    loss] pairs, picked evenly from the trainer log (first and last always kept),
    losses rounded to 4 significant digits. Empty when no loss was logged."""
    points = _series(read_log(output_dir), "loss")
    n = len(points)
    if n > limit > 1:
        # evenly spaced indices 0 .. n-1, integer arithmetic: deterministic
        points = [points[(i * (n - 1) + (limit - 1) // 2) // (limit - 1)] for i in range(limit)]
    elif n > limit:
        points = points[-limit:]
    return [[step, float(f"{loss:.4g}")] for step, loss in points]


def draw_loss_curve(output_dir: Path, title: str) -> Path | None:
    """A small PNG of training (and eval) loss per step; None when nothing was logged."""
    log = read_log(output_dir)
    points = _series(log, "loss")
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.0, 2.5), dpi=80)
    ax.plot([p[0] for p in points], [p[1] for p in points], linewidth=1.2, label="train")
    evals = _series(log, "eval_loss")
    if evals:
        ax.plot([p[0] for p in evals], [p[1] for p in evals], "o-", markersize=3, label="eval")
        ax.legend(fontsize=7)
    ax.set_xlabel("step", fontsize=8)
    ax.set_ylabel("loss", fontsize=8)
    ax.set_title(title[:60], fontsize=8)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    path = output_dir / LOSS_CURVE
    fig.savefig(path)
    plt.close(fig)
    return path


def mlflow_ui_base(tracking_uri: str, profile_tracking_uri: str = "",
                   profile_ui: str = "", env: Mapping[str, str] | None = None) -> str:
    """Where people open MLflow runs: $FTOPS_MLFLOW_UI when set (the rendered JobSet sets
    it from the profile's `mlflow_ui`), the profile's `mlflow_ui` when the run tracks to
    the profile's server, else the tracking server itself (it serves its own UI), with
    any user:password@ taken out of the link."""
    environ = os.environ if env is None else env
    ui = environ.get(MLFLOW_UI_ENV, "")
    if ui:
        return ui.rstrip("/")
    if profile_ui and tracking_uri.rstrip("/") == profile_tracking_uri.rstrip("/"):
        return profile_ui.rstrip("/")
    if not tracking_uri.startswith(("http://", "https://")):
        return ""
    scheme, _, rest = tracking_uri.partition("://")
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.rpartition('@')[2]}{slash}{path}".rstrip("/")


def tracker_url(identity: RunIdentity, report_to: str, *, ui: str = "",
                evaluations: dict[str, Evaluation] | None = None) -> str:
    """Link to the MLflow run that carries our run id tag ('' when none); the
    evaluation scores are added to that run (`<evaluation>/<metric>`). `ui` is the
    MLflow UI's base URL (default: `mlflow_ui_base` of the tracking URI)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if "mlflow" not in report_to or not uri:
        return ""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        return ""
    try:
        client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "Default"
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            return ""
        runs = client.search_runs([experiment.experiment_id],
                                  f"tags.`ftops.run_id` = '{identity.run_id}'",
                                  max_results=1)
        if runs and evaluations:
            _log_evaluations(client, runs[0].info.run_id, evaluations)
    except Exception as exc:  # tracker trouble never fails the hook  # noqa: BLE001
        print(f"ftops hook: MLflow lookup failed: {exc}", file=sys.stderr)
        return ""
    if not runs:
        return ""
    base = (ui or mlflow_ui_base(uri)).rstrip("/")
    if not base:
        return ""
    return f"{base}/#/experiments/{experiment.experiment_id}/runs/{runs[0].info.run_id}"


def _log_evaluations(client: Any, run_id: str, evaluations: dict[str, Evaluation]) -> None:
    from mlflow.entities import Metric

    stamp = int(datetime.now().timestamp() * 1000)
    metrics = [Metric(f"{name}/{key}", value, stamp, 0)
               for name, ev in sorted(evaluations.items()) if ev.status == "succeeded"
               for key, value in sorted(ev.metrics.items())]
    if metrics:
        client.log_batch(run_id, metrics=metrics)


def collect_evaluations(output_dir: Path, runs: Sequence[EvalRun],
                        storage: Storage) -> dict[str, Evaluation]:
    """The record of every evaluation that ran, by name."""
    return {run.name: collect(output_dir, run,
                              storage.uri(f"{EVAL_DIR}/{run.name}/{PREDICTIONS}"))
            for run in runs}


def build_record(identity: RunIdentity, output_dir: Path, *, exit_code: int | None,
                 started_at: str, finished_at: str, mode: str, report_to: str = "",
                 resolved_config: dict[str, Any] | None = None,
                 status: str | None = None, message: str = "",
                 evaluations: Sequence[EvalRun] = (), mlflow_ui: str = "",
                 restarts: int = 0, draw: bool = True) -> RunRecord:
    """The record of a run from what it left in `output_dir`. `draw=False` links no loss
    curve (a reader that cannot write the PNG beside the artifacts)."""
    if status is None:
        status = "succeeded" if exit_code == 0 else "failed"
    storage = open_storage(identity.artifacts_uri)
    curve = draw_loss_curve(output_dir, f"{identity.experiment} {identity.run_id}") \
        if draw else None
    evals = collect_evaluations(output_dir, evaluations, storage)
    return RunRecord.of(
        identity, mode=mode, status=status, exit_code=exit_code, started_at=started_at,
        finished_at=finished_at, duration_s=seconds_between(started_at, finished_at),
        metrics=collect_metrics(output_dir), resolved_config=resolved_config or {},
        artifacts_uri=storage.uri(), artifacts_url=storage.browse_url(),
        loss_curve=storage.uri(LOSS_CURVE) if curve else "",
        loss_points=loss_points(output_dir),
        evaluations=evals,
        tracker_url=tracker_url(identity, report_to, ui=mlflow_ui, evaluations=evals),
        message=message,
        restarts=restarts,
    )


def finish(record: RunRecord, output_dir: Path, *, upload: bool,
           destination: IndexDestination) -> Delivery:
    """Write run.json, upload when the output is not on central storage yet, and deliver
    the record to the index. Never raises for a publish failure: the record stays in
    storage for `ftops index reconcile`."""
    (output_dir / RUN_JSON).write_text(record.to_json(), encoding="utf-8")
    if upload:
        storage = open_storage(record.artifacts_uri)
        report = storage.upload_dir(output_dir, "")
        print(f"ftops hook: uploaded {len(report.uploaded)} file(s) "
              f"({len(report.skipped)} already there) to {storage.uri()}", file=sys.stderr)
    # Verified against storage, other publishers' staged records land with ours.
    return destination.deliver([record], kept_at=f"{record.artifacts_uri}/{RUN_JSON}",
                               verify=StorageVerifier())


def stored_records(storage: Storage, warn: Callable[[str], None]) -> list[StoredRecord]:
    """Every run.json under `experiments/` in artifact storage (what reconcile may land),
    with where it was read. One that does not parse as a run record (not JSON, `[]`, a
    field of the wrong type, a number no reader can use) is named through `warn` and
    left out; the others are returned."""
    out = []
    for key in storage.list_keys("experiments/", f"/{RUN_JSON}"):
        uri = storage.uri(key)
        try:
            record = RunRecord.from_json(storage.read_text(key) or "")
            validate(record)
        except (ValueError, TypeError, FatalError) as exc:
            warn(f"ftops index reconcile: quarantined {uri}: not a valid run record "
                 f"({_one_line(str(exc))}); the file is left as it is")
            continue
        out.append(StoredRecord(record, uri))
    return out


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
