"""RunRecord: what happened to one run.

The same JSON document is written as `run.json` beside the artifacts (the durable
record), committed to `outputs-index/<dataset>/<model>/<experiment>__<run_id>.json`,
and read back by `status`, `plan` and `index reconcile`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from render.record.evaluation import Evaluation
from render.record.identity import RunIdentity

SCHEMA_VERSION = 1

# At most this many [step, loss] pairs in `RunRecord.loss_points` (the hook downsamples).
MAX_LOSS_POINTS = 64

# Status values, in lifecycle order. "launched" is written by the launch workflow,
# the others by the post-run hook or `cancel`.
STATUSES = ("launched", "running", "succeeded", "failed", "cancelled")

# The identity fields a record keeps (all of RunIdentity but the storage profile).
IDENTITY_FIELDS = ("run_id", "experiment", "experiment_path", "dataset", "model",
                   "config_hash", "git_sha", "image", "owner", "nodes", "gpus_per_node",
                   "gpu_type", "jobset", "artifacts_uri", "hyperparameters", "rerun", "sweep",
                   "needs")


def now() -> str:
    """The current time as records write it: RFC 3339, UTC, whole seconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Metrics:
    final_train_loss: float | None = None
    best_train_loss: float | None = None
    eval_loss: float | None = None
    train_runtime_s: float | None = None
    train_samples_per_second: float | None = None
    train_steps_per_second: float | None = None
    total_steps: int | None = None
    epochs: float | None = None
    total_flos: float | None = None


@dataclass
class RunRecord:
    # identity
    run_id: str
    experiment: str  # experiment name, e.g. "sft_lora_lr1e-4_v1"
    experiment_path: str  # e.g. "experiments/alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1.yaml"
    dataset: str
    model: str
    # lineage
    config_hash: str
    git_sha: str
    image: str = ""
    owner: str = ""
    # where and how
    mode: str = "local"  # "local" or "cluster"
    nodes: int = 1
    gpus_per_node: int = 0
    gpu_type: str = ""
    jobset: str = ""
    # outcome
    status: str = "launched"
    exit_code: int | None = None
    started_at: str | None = None  # RFC 3339, UTC
    finished_at: str | None = None
    duration_s: float | None = None
    metrics: Metrics = field(default_factory=Metrics)
    # evaluations after training (an experiment's `evaluate:` entries) by name: their
    # metrics and a link to their predictions. Omitted from the JSON when empty, so
    # records without any stay byte-identical.
    evaluations: dict[str, Evaluation] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # key train args
    resolved_config: dict[str, Any] = field(default_factory=dict)  # the full train config
    # links
    artifacts_uri: str = ""  # where the output dir lives (gs://..., file://...)
    artifacts_url: str = ""  # a browsable link
    loss_curve: str = ""  # URI of the loss-curve PNG
    # [step, loss] pairs, at most MAX_LOSS_POINTS, evenly downsampled from the trainer
    # log and rounded to 4 significant digits: the index draws its SVG sparkline from
    # these. Empty for runs that logged no loss and for records written before it
    # existed (omitted from the JSON when empty, so those entries stay byte-identical).
    loss_points: list[list[float]] = field(default_factory=list)
    tracker_url: str = ""
    message: str = ""  # why it failed / was cancelled
    schema_version: int = SCHEMA_VERSION
    # launch.rerun of the run (0 for the first run of a config: omitted from the JSON,
    # so the entries of first runs stay byte-identical to those written before it)
    rerun: int = 0
    # the sweep point this run is ({index, label, overrides}), and the runs a pipeline
    # stage started from ([{experiment, run_id, as, artifacts_uri}]); omitted from the
    # JSON when empty, so other entries stay byte-identical
    sweep: dict[str, Any] = field(default_factory=dict)
    needs: list[dict[str, Any]] = field(default_factory=list)
    # Group restarts before this record (JobSet's restart attempt of the pod that wrote
    # it). Omitted from the JSON when 0, so records without restarts keep their bytes.
    restarts: int = 0

    @property
    def index_key(self) -> str:
        """Path of this run's entry relative to outputs-index/."""
        return f"{self.dataset}/{self.model}/{self.experiment}__{self.run_id}.json"

    def to_json(self) -> str:
        """Indented JSON with sorted keys; `loss_points` on one line (64 pairs would
        take 256 lines indented); `loss_points` and `evaluations` left out when empty."""
        data = asdict(self)
        for key in ("rerun", "restarts", "sweep", "needs"):
            if not data[key]:
                del data[key]
        points = data.pop("loss_points")
        if not data["evaluations"]:
            del data["evaluations"]
        if not points:
            return json.dumps(data, indent=2, sort_keys=True) + "\n"
        data["loss_points"] = points
        # the same bytes json.dumps(data, indent=2, sort_keys=True) gives, but for
        # the one compact value (a string value never holds a raw newline)
        parts = []
        for key in sorted(data):
            if key == "loss_points":
                body = json.dumps(points)
            else:
                body = json.dumps(data[key], indent=2, sort_keys=True).replace("\n", "\n  ")
            parts.append(f"  {json.dumps(key)}: {body}")
        return "{\n" + ",\n".join(parts) + "\n}\n"

    @classmethod
    def of(cls, identity: RunIdentity, **outcome: Any) -> RunRecord:
        """A record of the run `identity` names, with the given outcome fields (which may
        also override an identity field, e.g. the artifacts URI as storage spells it)."""
        ident = {name: getattr(identity, name) for name in IDENTITY_FIELDS}
        ident["hyperparameters"] = dict(identity.hyperparameters)
        ident["sweep"] = dict(identity.sweep)
        ident["needs"] = [dict(n) for n in identity.needs]
        return cls(**{**ident, **outcome})

    @classmethod
    def launched(cls, identity: RunIdentity, *, started_at: str | None = None) -> RunRecord:
        """The record the launch workflow writes when it creates the run's JobSet."""
        return cls.of(identity, mode="cluster", status="launched",
                      started_at=started_at or now())

    @classmethod
    def from_jobset(cls, jobset: dict[str, Any]) -> RunRecord:
        """A record rebuilt from what a JobSet's labels and annotations say (for a run
        the index does not hold yet)."""
        return cls.of(RunIdentity.from_metadata(jobset.get("metadata") or {}), mode="cluster")

    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        """The record `data` holds; ValueError when it is not a record's shape (not an
        object, or metrics that are not an object). Field types are checked by
        `render.record.index.validate`."""
        if not isinstance(data, dict):
            raise ValueError(f"a run record is a JSON object, not {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        metrics = values.pop("metrics", None) or {}
        if not isinstance(metrics, dict):
            raise ValueError("'metrics' must be an object")
        mknown = {f.name for f in fields(Metrics)}
        values["metrics"] = Metrics(**{k: v for k, v in metrics.items() if k in mknown})
        if values.get("loss_points", ()) is None:
            values["loss_points"] = []
        if values.get("restarts", 0) is None:
            values["restarts"] = 0
        evaluations = values.pop("evaluations", None)
        if evaluations is None:
            evaluations = {}
        if not isinstance(evaluations, dict):
            raise ValueError("'evaluations' must be an object")
        values["evaluations"] = {str(name): Evaluation.from_dict(ev)
                                 for name, ev in evaluations.items()}
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        """ValueError (never another exception) for text that is not a record's JSON:
        deep nesting and numbers Python cannot hold included."""
        try:
            data = json.loads(text)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        return cls.from_dict(data)
