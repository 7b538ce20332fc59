"""What a run achieved, in one vocabulary: metric ids, their labels, the value of a
metric for a run, GPU-hours, and the leaderboard rule (a primary metric and which way is
better). The READMEs, `ftops compare`, runs.csv and the plan all read results through
here.

Metric ids:

* a training metric of `RunRecord.metrics`: `eval_loss`, `final_train_loss`,
  `best_train_loss`;
* an evaluation's metric, `<evaluation>/<metric>`: the name of an experiment's
  `evaluate:` entry and a key of LLaMA-Factory's predict_results.json without
  `predict_` (`holdout/bleu-4`, `holdout/rouge-l`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from render.errors import FatalError
from render.record.runrecord import RunRecord

TRAINING_METRICS: dict[str, str] = {
    "eval_loss": "eval loss",
    "final_train_loss": "final train loss",
    "best_train_loss": "best train loss",
}
# Labels of LLaMA-Factory's generation metrics, in the order tables show them.
EVAL_METRIC_LABELS: dict[str, str] = {
    "bleu-4": "BLEU-4",
    "rouge-l": "ROUGE-L",
    "rouge-1": "ROUGE-1",
    "rouge-2": "ROUGE-2",
}
SCORE_METRICS = tuple(EVAL_METRIC_LABELS)  # what an evaluation scores (not its runtimes)
DIRECTIONS = ("higher", "lower")
EVAL_NAME = r"[a-z0-9][a-z0-9_-]{0,39}"
METRIC_ID = re.compile(rf"(?:{'|'.join(TRAINING_METRICS)}|{EVAL_NAME}/[a-z0-9][a-z0-9_.-]{{0,62}})")


def metric_value(r: RunRecord, metric: str) -> float | None:
    """The run's value of a metric id; None when it has none (or not a finite number)."""
    name, sep, key = metric.partition("/")
    if sep:
        ev = r.evaluations.get(name)
        if ev is None or ev.status != "succeeded":
            return None
        value: Any = ev.metrics.get(key)
    else:
        value = getattr(r.metrics, metric, None) if metric in TRAINING_METRICS else None
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def metric_label(metric: str) -> str:
    """`holdout/bleu-4` -> `BLEU-4 (holdout)`; `eval_loss` -> `eval loss`."""
    name, sep, key = metric.partition("/")
    if sep:
        return f"{EVAL_METRIC_LABELS.get(key, key)} ({name})"
    return TRAINING_METRICS.get(metric, metric)


def gpu_hours(r: RunRecord) -> float | None:
    """Wall time x GPUs (a CPU run counts as 0 GPU-hours); None without a duration."""
    d = r.duration_s
    if not isinstance(d, int | float) or isinstance(d, bool) or not math.isfinite(d) or d < 0:
        return None
    try:
        gpus = max(int(r.nodes), 0) * max(int(r.gpus_per_node), 0)
    except (TypeError, ValueError):
        return None
    return d / 3600 * gpus


def fmt(value: float | None) -> str:
    """A metric as tables show it: 4 significant digits; '' for none."""
    return "" if value is None else format(value, ".4g")


@dataclass(frozen=True)
class Leaderboard:
    """How a dataset's runs are ranked: a metric id and which way is better. `source`
    says who named it (a dataset.yaml, the profile, or '' for the built-in default)."""

    metric: str
    direction: str  # "higher" | "lower"
    source: str = ""

    @property
    def label(self) -> str:
        return metric_label(self.metric)

    @property
    def arrow(self) -> str:
        return "\u2191" if self.direction == "higher" else "\u2193"

    def value(self, r: RunRecord) -> float | None:
        return metric_value(r, self.metric)

    def rank(self, runs: list[RunRecord]) -> list[tuple[float, RunRecord]]:
        """Succeeded runs that have the metric, best first (ties: the smaller entry
        path first, so the order is deterministic)."""
        scored = []
        sign = -1.0 if self.direction == "higher" else 1.0
        for r in runs:
            if r.status != "succeeded":
                continue
            v = self.value(r)
            if v is not None:
                scored.append((sign * v, r.index_key, v, r))
        scored.sort(key=lambda t: (t[0], t[1]))
        return [(v, r) for _, _, v, r in scored]

    def best(self, runs: list[RunRecord]) -> RunRecord | None:
        ranked = self.rank(runs)
        return ranked[0][1] if ranked else None


DEFAULT_LEADERBOARD = Leaderboard("eval_loss", "lower")


def parse_leaderboard(data: Any, where: str) -> Leaderboard:
    """A `leaderboard:` mapping ({metric, direction}) as a Leaderboard; FatalError naming
    `where` and the field when it is not one."""
    if not isinstance(data, dict):
        raise FatalError(f"{where}: leaderboard must be a mapping with metric and direction")
    metric, direction = data.get("metric"), data.get("direction")
    if not isinstance(metric, str) or not METRIC_ID.fullmatch(metric):
        raise FatalError(
            f"{where}: leaderboard.metric {metric!r} is not a metric id: use one of "
            f"{', '.join(TRAINING_METRICS)}, or <evaluation>/<metric> such as holdout/bleu-4")
    if direction not in DIRECTIONS:
        raise FatalError(f"{where}: leaderboard.direction {direction!r} must be higher or "
                         "lower (which way is better)")
    extra = sorted(str(k) for k in data if k not in ("metric", "direction"))
    if extra:
        raise FatalError(f"{where}: leaderboard has unknown key(s) {', '.join(extra)}")
    return Leaderboard(metric, str(direction), where)
