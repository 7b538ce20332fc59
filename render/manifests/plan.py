"""`ftops plan`: what will run, where, on how many GPUs, for roughly how long, how it
differs from the nearest earlier experiment of the same dataset and model, and what
that experiment's latest run achieved. Markdown for a PR comment and a job summary
(`templates/plan.md.j2`), deterministic for the same inputs. Earlier runs are read from
`outputs-index/` through `render.record.index`, their results through
`render.record.results`.

With a base commit (`BaseView`, `ftops plan --base`): an experiment whose launch
identity already has a run in the base's index is "no new run: metadata only"; edits
of index entries are flagged (only the bot writes them); and the manifest diff of a
k8s-base/ change is shown for every experiment."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render.manifests.runspec import RunSpec
from render.markdown import Markdown, code, environment, esc
from render.propose.experiment import Experiment, Workspace, dataset_names
from render.record.index import INDEX_DIR, model_runs
from render.record.indexref import IndexAt
from render.record.results import (
    EVAL_METRIC_LABELS,
    TRAINING_METRICS,
    fmt,
    gpu_hours,
    metric_label,
    metric_value,
)
from render.record.runrecord import RunRecord
from render.yamldump import dump_yaml

MARKER = "<!-- ftops-plan -->"  # the sticky PR comment is found by this line
# The utilisation we assume of a GPU type's peak (the profile's peak_tflops) when no run
# measured a throughput.
ASSUMED_MFU = 0.35
CPU_SAMPLES_PER_S = 20.0


@dataclass(frozen=True)
class BaseView:
    """The commit a pull request is planned against."""

    ref: str
    index: IndexAt  # its outputs-index/ entries
    edits: list[tuple[str, str]]  # (what, path) under outputs-index/ since it
    # (experiment, diff lines) of a k8s-base/ change; None when k8s-base/ is unchanged
    manifest_diffs: list[tuple[str, list[str]]] | None = None


@dataclass(frozen=True)
class Estimate:
    gpu_hours: float | None
    wall_hours: float | None
    how: str


def _samples(exp: Experiment) -> int | None:
    t = exp.train
    if isinstance(t.get("max_samples"), int):
        return int(t["max_samples"])
    info = exp.registration.get("dataset_info") or {}
    total = 0
    for name in dataset_names(t.get("dataset")):
        entry = info.get(name) if isinstance(info, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("num_samples"), int):
            return None
        total += entry["num_samples"]
    return total or None


def _params_billion(model: str) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", model.rsplit("/", 1)[-1])
    return float(m.group(1)) if m else None


def measured_throughput(root: Path, exp: Experiment) -> tuple[float, str] | None:
    """Samples per second per GPU of the latest succeeded run on the same dataset,
    model and GPU type in outputs-index/ (`root` is the repository root), and which run
    measured it (escaped Markdown)."""
    best: tuple[str, float, str] | None = None
    for rec in model_runs(root / INDEX_DIR, exp.dataset, exp.model):
        sps = rec.metrics.train_samples_per_second
        if rec.status != "succeeded" or rec.gpu_type != exp.launch.gpu_type:
            continue
        if not isinstance(sps, int | float) or not 0 < sps < float("inf"):
            continue
        try:
            gpus = max(int(rec.nodes) * int(rec.gpus_per_node), 1)
        except (TypeError, ValueError):
            continue
        stamp = str(rec.finished_at or "")
        if best is None or stamp >= best[0]:
            best = (stamp, float(sps) / gpus, f"{esc(rec.experiment)} run {esc(rec.run_id)}")
    return (best[1], best[2]) if best else None


def estimate(root: Path, exp: Experiment) -> Estimate:
    launch, t = exp.launch, exp.train
    samples = _samples(exp)
    epochs = float(t.get("num_train_epochs", 3.0))
    gpus = max(launch.total_gpus, 1)
    if samples is None:
        return Estimate(None, None, "unknown: set max_samples or num_samples in dataset.yaml")
    work = samples * epochs
    measured = measured_throughput(root, exp)
    if measured is not None:
        per_gpu, source = measured
        wall = work / (per_gpu * gpus) / 3600
        return Estimate(wall * launch.total_gpus, wall,
                        f"measured: {per_gpu:.2f} samples/s per GPU in {source}")
    if launch.gpus_per_node == 0:
        wall = work / CPU_SAMPLES_PER_S / 3600
        return Estimate(0.0, wall, f"formula: CPU at ~{CPU_SAMPLES_PER_S:g} samples/s")
    params = _params_billion(str(t.get("model_name_or_path", "")))
    gpu = exp.profile.gpu_types.get(launch.gpu_type)
    peak = gpu.peak_tflops if gpu is not None else None
    if params is None or peak is None:
        return Estimate(None, None, "unknown: no earlier run and no model size in its name")
    tokens = work * int(t.get("cutoff_len", 1024))
    # 6·N·tokens for full training; LoRA skips most weight gradients (~4·N·tokens).
    factor = 6.0 if t.get("finetuning_type", "lora") == "full" else 4.0
    flops = factor * params * 1e9 * tokens
    wall = flops / (peak * 1e12 * ASSUMED_MFU * gpus) / 3600
    return Estimate(wall * gpus, wall,
                    f"formula: {factor:g}·N·tokens at {ASSUMED_MFU:.0%} of {peak:g} TFLOP/s, "
                    "tokens = samples × epochs × cutoff_len (an upper bound)")


def _diff_view(exp: Experiment) -> dict[str, Any]:
    view = {"launch": exp.resolved()["launch"], "train": exp.train}
    if exp.evaluate:
        view["evaluate"] = exp.evaluate
    return view


def nearest(ws: Workspace, exp: Experiment) -> Experiment | None:
    """The sibling whose resolved config differs in the fewest keys."""
    best: tuple[int, str, Experiment] | None = None
    mine = _flatten(_diff_view(exp))
    for path in ws.siblings(exp.dataset, exp.model):
        if path.stem == exp.name:
            continue
        other, findings = ws.load(path)
        if other is None or findings:
            continue
        theirs = _flatten(_diff_view(other))
        distance = sum(1 for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
        if best is None or (distance, path.stem) < (best[0], best[1]):
            best = (distance, path.stem, other)
    return best[2] if best else None


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _fmt_hours(h: float | None) -> str:
    if h is None:
        return "unknown"
    return f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"


def existing_run(ws: Workspace, spec: RunSpec, base: BaseView | None) -> RunRecord | None:
    """The run this spec names, when the index (the base's, else the checkout's) holds
    it: its launch identity has run, so merging launches nothing."""
    e = spec.exp
    runs = (base.index.runs_of(e.dataset, e.model, e.name) if base is not None
            else model_runs(ws.root / INDEX_DIR, e.dataset, e.model))
    return next((r for r in runs if r.run_id == spec.run_id), None)


def plan_one(ws: Workspace, spec: RunSpec, base: BaseView | None = None) -> dict[str, Any]:
    """What the template shows for one run: its rows (Markdown cells), and the nearest
    earlier experiment with the diff against it; or, when its launch identity has run,
    why nothing launches."""
    exp, launch = spec.exp, spec.exp.launch
    ran = existing_run(ws, spec, base)
    if ran is not None:
        return {"path": exp.path, "rows": [], "nearest": None, "diff": [], "skip": Markdown(
            f"**no new run: metadata only.** Run {code(ran.run_id)} ({esc(ran.status)}) "
            "already has this launch identity (the resolved training config, data, "
            "image, layout, storage and secrets), so merging launches nothing. A queue or "
            "priority change is made on that run only while Kueue has not admitted it.")}
    est = estimate(ws.root, exp)
    gpu_hours = "unknown" if est.gpu_hours is None else f"{est.gpu_hours:.1f}"
    rows = [
        ("run id", code(spec.run_id)),
        ("JobSet", code(spec.jobset)),
        ("layout", Markdown(f"{launch.nodes} node(s) × {launch.gpus_per_node} GPU(s) = "
                            f"{launch.total_gpus} GPU(s)")),
        ("flavor", code(launch.gpu_type)),
        ("image", code(launch.image)),
        ("queue / priority", Markdown(f"{code(launch.queue)} / {code(launch.priority)}")),
        ("estimate", Markdown(f"{_fmt_hours(est.wall_hours)} wall, {gpu_hours} GPU-hours"
                              f" ({est.how})")),
        ("time limit", Markdown(f"{esc(launch.time_limit)} per attempt, "
                                f"{launch.max_restarts} restart(s)")),
        ("storage", Markdown(f"{code(launch.storage)} → {code(spec.artifacts_uri + '/')}")),
        ("config hash", code(exp.config_hash[:16])),
    ]
    other = nearest(ws, exp)
    diff: list[Markdown] = []
    if other is not None:
        a = dump_yaml(_diff_view(other)).splitlines()
        b = dump_yaml(_diff_view(exp)).splitlines()
        # inside a fenced block only a fence can break out
        diff = [Markdown(d.replace("```", "'''"))
                for d in difflib.unified_diff(a, b, other.path, exp.path, lineterm="", n=1)]
        diff = diff or [Markdown("(same config)")]
    last = latest_run(ws.root, other) if other is not None else None
    return {"path": exp.path, "rows": rows, "nearest": other.path if other else None,
            "diff": diff, "skip": None, "last": last, "results": results(last) if last else []}


def latest_run(root: Path, exp: Experiment) -> RunRecord | None:
    """The most recently started run of `exp` in outputs-index/ (`root`: the repository
    root), None when it has not run."""
    runs = [r for r in model_runs(root / INDEX_DIR, exp.dataset, exp.model)
            if r.experiment == exp.name]
    return max(runs, key=lambda r: (r.started_at or "", r.run_id)) if runs else None


def results(r: RunRecord) -> list[tuple[str, Markdown]]:
    """What a run achieved, as (label, Markdown cell) rows: status, losses, evaluation
    scores, duration and GPU-hours (rows without a value are left out)."""
    status = esc(r.status)
    if r.status == "failed" and isinstance(r.exit_code, int):
        status += f" (exit {r.exit_code})"
    rows = [("status", Markdown(status))]
    metrics = list(TRAINING_METRICS) + sorted(
        f"{name}/{key}" for name, ev in r.evaluations.items() for key in ev.metrics
        if key in EVAL_METRIC_LABELS)
    for metric in metrics:
        value = metric_value(r, metric)
        if value is not None:
            rows.append((esc(metric_label(metric)), Markdown(fmt(value))))
    if isinstance(r.duration_s, int | float):
        rows.append(("duration", Markdown(_fmt_hours(r.duration_s / 3600))))
    hours = gpu_hours(r)
    if hours is not None and hours > 0:
        rows.append(("GPU-hours", Markdown(f"{hours:.1f}")))
    return rows


def plan(ws: Workspace, specs: Sequence[RunSpec], base: BaseView | None = None) -> str:
    template = environment("render.manifests").get_template("plan.md.j2")
    runs = [plan_one(ws, s, base) for s in specs]
    launching = [s for s, r in zip(specs, runs, strict=True) if r["skip"] is None]
    diffs = base.manifest_diffs if base is not None else None
    return str(template.render(
        marker=Markdown(MARKER), runs=runs, launching=len(launching),
        total_gpus=sum(s.exp.launch.total_gpus for s in launching),
        base=code(base.ref[:12]) if base is not None else None,
        edits=[Markdown(f"{esc(what)} {code(path)}") for what, path in base.edits]
        if base is not None else [],
        manifest_diffs=None if diffs is None else [
            (path, [Markdown(line.replace("```", "'''")) for line in lines])
            for path, lines in diffs]))
