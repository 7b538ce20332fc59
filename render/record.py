"""RunRecord: what happened to one run.

The same JSON document is written as `run.json` beside the artifacts (the durable
record), committed to `outputs-index/<dataset>/<model>/<experiment>__<run_id>.json`,
and read back by `status`, `plan` and `index reconcile`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

SCHEMA_VERSION = 1

# Status values, in lifecycle order. "launched" is written by the launch workflow,
# the others by the post-run hook or `cancel`.
STATUSES = ("launched", "running", "succeeded", "failed", "cancelled")


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
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # key train args
    resolved_config: dict[str, Any] = field(default_factory=dict)  # the full train config
    # links
    artifacts_uri: str = ""  # where the output dir lives (gs://..., file://...)
    artifacts_url: str = ""  # a browsable link
    loss_curve: str = ""  # URI of the loss-curve PNG
    tracker_url: str = ""
    message: str = ""  # why it failed / was cancelled
    schema_version: int = SCHEMA_VERSION

    @property
    def index_key(self) -> str:
        """Path of this run's entry relative to outputs-index/."""
        return f"{self.dataset}/{self.model}/{self.experiment}__{self.run_id}.json"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        metrics = values.pop("metrics", None) or {}
        mknown = {f.name for f in fields(Metrics)}
        values["metrics"] = Metrics(**{k: v for k, v in metrics.items() if k in mknown})
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> RunRecord:
        return cls.from_dict(json.loads(text))
