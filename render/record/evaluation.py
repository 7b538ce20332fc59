"""An evaluation after training: what LLaMA-Factory's predict step left in
`<run>/eval/<name>/`, as the run record keeps it (`Evaluation`).

The step is an experiment's `evaluate:` entry, run by the launcher after training in the
same job (`render.launch.evaluate`). It writes `predict_results.json` and
`all_results.json` (BLEU-4, ROUGE-1/2/L scores x 100, runtimes: LLaMA-Factory's
`train/sft/workflow.py`) and `generated_predictions.jsonl` (one prompt, prediction and
label per line). The record keeps the numbers and a link to the predictions, never
their content.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EVAL_DIR = "eval"  # <run>/eval/<name>/
PREDICTIONS = "generated_predictions.jsonl"
PREDICT_RESULTS = "predict_results.json"
ALL_RESULTS = "all_results.json"
EVAL_STATUSES = ("succeeded", "failed")
# `predict_bleu-4` -> `bleu-4`; `eval_*` keys (a step that also evaluated) keep theirs
_PREFIX = "predict_"


@dataclass(frozen=True)
class EvalRun:
    """What the launcher knows about one evaluation it ran: its name, the LLaMA-Factory
    config it ran with, and the exit code (the output folder says the rest)."""

    name: str
    config: dict[str, Any]
    exit_code: int


@dataclass
class Evaluation:
    status: str  # "succeeded" | "failed"
    exit_code: int | None = None
    dataset: str = ""  # the eval_dataset, or "validation split (val_size 0.1)"
    samples: int | None = None  # predictions written
    # LLaMA-Factory's metric keys without "predict_": bleu-4, rouge-1, rouge-2, rouge-l,
    # runtime, samples_per_second, ... (numbers only)
    metrics: dict[str, float] = field(default_factory=dict)
    predictions: str = ""  # URI of generated_predictions.jsonl: a link, not the content
    message: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> Evaluation:
        """An evaluation as stored in a record; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("an evaluation must be an object")
        known = {"status", "exit_code", "dataset", "samples", "metrics", "predictions",
                 "message"}
        values = {k: v for k, v in data.items() if k in known}
        if "status" not in values:
            raise ValueError("an evaluation needs a status")
        return cls(**values)

    def check(self, name: str) -> None:
        """ValueError unless every field has its type (index entries are checked)."""
        where = f"evaluations.{name}"
        if self.status not in EVAL_STATUSES:
            raise ValueError(f"{where}.status must be one of {', '.join(EVAL_STATUSES)}")
        for key in ("dataset", "predictions", "message"):
            if not isinstance(getattr(self, key), str):
                raise ValueError(f"{where}.{key} must be a string")
        for key in ("exit_code", "samples"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
                raise ValueError(f"{where}.{key} must be an integer or null")
        if not isinstance(self.metrics, dict):
            raise ValueError(f"{where}.metrics must be an object")
        for key, value in self.metrics.items():
            if (not isinstance(key, str) or not isinstance(value, int | float)
                    or isinstance(value, bool) or not math.isfinite(value)):
                raise ValueError(f"{where}.metrics.{key} must be a finite number")


def eval_dir(output_dir: Path, name: str) -> Path:
    return output_dir / EVAL_DIR / name


def dataset_label(config: dict[str, Any]) -> str:
    """What an evaluation ran on, from its LLaMA-Factory config."""
    if config.get("eval_dataset"):
        return str(config["eval_dataset"])
    return f"validation split of {config.get('dataset', '?')} (val_size {config.get('val_size')})"


def read_metrics(folder: Path) -> dict[str, float]:
    """The finite numbers of predict_results.json (all_results.json when it is missing),
    keys without the `predict_` prefix."""
    data: Any = None
    for name in (PREDICT_RESULTS, ALL_RESULTS):
        try:
            data = json.loads((folder / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            break
    if not isinstance(data, dict):
        return {}
    out: dict[str, float] = {}
    for key, value in data.items():
        if (isinstance(key, str) and isinstance(value, int | float)
                and not isinstance(value, bool) and math.isfinite(value)):
            out[key[len(_PREFIX):] if key.startswith(_PREFIX) else key] = float(value)
    return dict(sorted(out.items()))


def count_lines(path: Path) -> int | None:
    try:
        with open(path, "rb") as fh:
            return sum(1 for line in fh if line.strip())
    except OSError:
        return None


def collect(output_dir: Path, run: EvalRun, predictions_uri: str) -> Evaluation:
    """The record of one evaluation from its folder. `predictions_uri` is where
    generated_predictions.jsonl lives in the run's storage (used only when the file
    exists)."""
    folder = eval_dir(output_dir, run.name)
    metrics = read_metrics(folder)
    predictions = folder / PREDICTIONS
    ok = run.exit_code == 0 and bool(metrics)
    message = ""
    if run.exit_code != 0:
        message = f"llamafactory-cli exited with {run.exit_code}; see logs/eval-{run.name}.log"
    elif not metrics:
        message = f"no {PREDICT_RESULTS} was written"
    return Evaluation(
        status="succeeded" if ok else "failed",
        exit_code=run.exit_code,
        dataset=dataset_label(run.config),
        samples=count_lines(predictions),
        metrics=metrics,
        predictions=predictions_uri if predictions.is_file() else "",
        message=message,
    )
