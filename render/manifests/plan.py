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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render.manifests.runspec import RunSpec
from render.markdown import Markdown, code, environment, esc
from render.propose.estimate import Estimate, estimate, measured_throughput
from render.propose.experiment import Experiment, Workspace
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

__all__ = ["MARKER", "BaseView", "Estimate", "estimate", "measured_throughput", "plan"]


@dataclass(frozen=True)
class BaseView:
    """The commit a pull request is planned against."""

    ref: str
    index: IndexAt  # its outputs-index/ entries
    edits: list[tuple[str, str]]  # (what, path) under outputs-index/ since it
    # (experiment, diff lines) of a k8s-base/ change; None when k8s-base/ is unchanged
    manifest_diffs: list[tuple[str, list[str]]] | None = None


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
        if other is None or findings or "sweep" in other.merged:
            continue  # a sweep file's base config is none of its runs
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
    if exp.waiting:
        return {"path": exp.path, "rows": [], "nearest": None, "diff": [], "skip": None,
                "waiting": Markdown(
                    f"**This stage {esc(exp.waiting)}.** Merging creates nothing yet; the launch "
                    "workflow creates this stage when its input's record says succeeded "
                    "(`ftops apply --waiting`), and `ftops status` lists it meanwhile.")}
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
    paths = spec.input_paths("cluster")
    for need in exp.inputs:
        rows.append(("starts from", Markdown(
            f"run {code(need.run_id)} of {code(need.experiment)} ({esc(need.run)}): "
            f"{code(need.as_)} = {code(paths.get(need.as_, need.artifacts_uri))}")))
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


def plan_sweep(ws: Workspace, specs: Sequence[RunSpec], base: BaseView | None = None
               ) -> dict[str, Any]:
    """What the template shows for the points of one sweep: one row per point (label,
    run id, GPU-hours, whether it has run), the total GPU-hours of the points that
    launch, what all points share, and a note for each recorded run whose point is no
    longer in the sweep."""
    exp = specs[0].exp
    rows: list[tuple[Markdown, ...]] = []
    total, unknown, launching = 0.0, 0, []
    for s in specs:
        assert s.exp.point is not None
        ran = existing_run(ws, s, base)
        est = estimate(ws.root, s.exp)
        hours = "unknown" if est.gpu_hours is None else f"{est.gpu_hours:.1f}"
        if ran is None:
            launching.append(s)
            if est.gpu_hours is None:
                unknown += 1
            else:
                total += est.gpu_hours
            state = Markdown("launches")
        else:
            state = Markdown(f"ran: {esc(ran.status)}, no new run")
            hours = "–"
        rows.append((Markdown(str(s.exp.point.index)), Markdown(esc(s.exp.point.label)),
                     code(s.run_id), Markdown(hours), state))
    launch = exp.launch
    common = [
        ("layout", Markdown(f"{launch.nodes} node(s) × {launch.gpus_per_node} GPU(s) = "
                            f"{launch.total_gpus} GPU(s) per point")),
        ("flavor", code(launch.gpu_type)),
        ("queue / priority", Markdown(f"{code(launch.queue)} / {code(launch.priority)}")),
        ("time limit", Markdown(f"{esc(launch.time_limit)} per attempt, "
                                f"{launch.max_restarts} restart(s)")),
        ("estimate", Markdown(esc(estimate(ws.root, exp).how))),
    ]
    hashes = {s.exp.config_hash for s in specs}
    recorded = (base.index.runs_of(exp.dataset, exp.model, exp.name) if base is not None
                else [r for r in model_runs(ws.root / INDEX_DIR, exp.dataset, exp.model)
                      if r.experiment == exp.name])
    removed = [Markdown(f"run {code(r.run_id)} ({esc(r.status)}"
                        + (f", {esc(r.sweep.get('label'))}" if isinstance(r.sweep, dict)
                           and r.sweep.get("label") else "")
                        + ") is no longer in the sweep: it stays recorded, nothing is "
                          "cancelled or launched for it")
               for r in sorted(recorded, key=lambda r: r.run_id)
               if r.config_hash not in hashes]
    return {"path": exp.path, "sweep": True, "rows": rows, "common": common,
            "launching": len(launching), "total": Markdown(
                f"{total:.1f}" + (f" (+ {unknown} point(s) unknown)" if unknown else "")),
            "removed": removed, "skip": None, "points": len(specs)}


def budget_rows(ws: Workspace, launching: Sequence[RunSpec], base: BaseView | None
                ) -> tuple[list[tuple[Markdown, ...]], list[Markdown], str]:
    """The budgets (k8s-base/budgets.yaml) the launching runs spend: per budget, GPU-hours
    used this month by recorded runs, this change's estimate, the total against the
    limit; and every `metadata.budget_override` reason, to be seen by reviewers."""
    from render.propose import budget

    budgets = budget.load_budgets(ws.root)
    month = budget.this_month()
    if not budgets.datasets and not budgets.teams:
        return [], [], month
    records = base.index.records if base is not None else budget.recorded_runs(ws.root)
    exps = [s.exp for s in launching]
    rows: list[tuple[Markdown, ...]] = []
    for u in budget.usage(ws.root, budgets, exps, records, lambda e: False, month):
        state = "**over budget**" if u.over else "within budget"
        rows.append((Markdown(f"{esc(u.kind)} {code(u.name)}"), Markdown(f"{u.used:.1f}"),
                     Markdown(f"{u.estimate:.1f}" + (f" (+ {u.unknown} unknown)"
                                                     if u.unknown else "")),
                     Markdown(f"{u.total:.1f} / {u.limit:g}"), Markdown(state)))
    overrides = []
    seen: set[str] = set()
    for e in exps:
        reason = budget.override(e)
        if reason is not None and e.path not in seen:
            seen.add(e.path)
            overrides.append(Markdown(f"{code(e.path)}: {esc(' '.join(reason.split()))}"))
    return rows, overrides, month


def plan(ws: Workspace, specs: Sequence[RunSpec], base: BaseView | None = None) -> str:
    template = environment("render.manifests").get_template("plan.md.j2")
    runs: list[dict[str, Any]] = []
    launching: list[RunSpec] = []
    groups: dict[str, list[RunSpec]] = {}
    for s in specs:
        groups.setdefault(s.exp.path if s.exp.point is not None else f"\0{id(s)}", []).append(s)
    for group in groups.values():
        if group[0].exp.point is not None:
            entry = plan_sweep(ws, group, base)
            launching += [s for s in group if existing_run(ws, s, base) is None]
        else:
            entry = plan_one(ws, group[0], base)
            if entry["skip"] is None and not entry.get("waiting"):
                launching.append(group[0])
        runs.append(entry)
    hours = [estimate(ws.root, s.exp).gpu_hours for s in launching]
    budgets = budget_rows(ws, launching, base)
    diffs = base.manifest_diffs if base is not None else None
    return str(template.render(
        marker=Markdown(MARKER), runs=runs, launching=len(launching),
        changed=sum(1 for r in runs if r["skip"] is not None),
        waiting=sum(1 for r in runs if r.get("waiting")),
        gpu_hours=Markdown(f"{sum(h for h in hours if h is not None):.1f}"
                           + (" + unknown" if None in hours else "")),
        total_gpus=sum(s.exp.launch.total_gpus for s in launching),
        budgets=budgets[0], overrides=budgets[1], month=budgets[2],
        base=code(base.ref[:12]) if base is not None else None,
        edits=[Markdown(f"{esc(what)} {code(path)}") for what, path in base.edits]
        if base is not None else [],
        manifest_diffs=None if diffs is None else [
            (path, [Markdown(line.replace("```", "'''")) for line in lines])
            for path, lines in diffs]))
