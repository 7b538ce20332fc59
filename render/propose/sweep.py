"""Sweeps: many runs from one experiment file.

An experiment may carry

    sweep:
      grid:     {train.learning_rate: [1.0e-4, 2.0e-4], train.lora_rank: [8, 16]}
      points:   [{train.learning_rate: 5.0e-5, train.lora_rank: 64}]
      max_runs: 8

`expand(exp)` turns it into its points: the cartesian product of `grid` (keys in file
order) followed by `points`, each an `Experiment` whose merged document has the
overrides applied (and no `sweep:`). Points whose launch identity is equal (after the
normalization the identity applies: `1.0e-4` and `0.0001`, `8` and `8.0`) are one
point: the first is kept. Each point has its own config hash, hence its own run id,
output folder, JobSet and index entry; its label (`learning_rate=0.0001,lora_rank=8`,
Hydra's override_dirname style) goes into an annotation and the run record, never
into a name (Kubernetes name limits leave no room for it).

Lint refuses (`problems`): a key that is not a dotted path to a flat `train` argument
LLaMA-Factory has or a `launch` setting, an empty expansion, more points than
`max_runs`, and more than the cluster profile's `limits.max_sweep_runs`. Every point is
then checked as a full experiment by the ordinary rules (`render.propose.lint`), each
finding naming its point.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass, replace
from typing import Any

from render.errors import Finding
from render.propose.experiment import Experiment

SWEEP_KEY = "sweep"
ROOTS = ("train", "launch")
# launch settings a sweep may vary (what a point could differ in without another file)
LAUNCH_KEYS = frozenset({"nodes", "gpus_per_node", "gpu_type", "image", "storage"})


@dataclass(frozen=True)
class SweepPoint:
    """One point of a sweep: its position in the expansion, and what it overrides."""

    index: int  # 0-based, in expansion order (grid product, then points)
    overrides: tuple[tuple[str, Any], ...]  # (dotted path, value), in key order
    total: int  # points in the sweep

    @property
    def label(self) -> str:
        """`learning_rate=0.0001,lora_rank=8`: `train.` dropped, `launch.` kept."""
        return ",".join(f"{short_key(k)}={format_value(v)}" for k, v in self.overrides)

    def as_dict(self) -> dict[str, Any]:
        """What a run record and spec.json keep of it."""
        return {"index": self.index, "label": self.label,
                "overrides": {k: v for k, v in self.overrides}}


def short_key(key: str) -> str:
    return key[len("train."):] if key.startswith("train.") else key


def format_value(value: Any) -> str:
    """A value as a label shows it: floats in the shortest form Python round-trips."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _spec(exp: Experiment) -> dict[str, Any] | None:
    raw = exp.merged.get(SWEEP_KEY)
    return raw if isinstance(raw, dict) else None


def is_sweep(exp: Experiment) -> bool:
    return SWEEP_KEY in exp.merged


def _key_problem(key: str) -> str | None:
    from render.propose.schema import did_you_mean, lf_keys

    root, _, leaf = key.partition(".")
    if root not in ROOTS or not leaf or "." in leaf:
        return "a sweep key is a dotted path into train or launch, e.g. train.learning_rate"
    if root == "train" and leaf not in lf_keys():
        hint = did_you_mean(leaf, lf_keys())
        return f"train.{leaf} is not a LLaMA-Factory argument" + (f" ({hint})" if hint else "")
    if root == "launch" and leaf not in LAUNCH_KEYS:
        return (f"launch.{leaf} cannot be swept; a sweep may vary "
                + ", ".join(f"launch.{k}" for k in sorted(LAUNCH_KEYS)))
    return None


def _overrides(spec: dict[str, Any]) -> list[tuple[str, Any, tuple[Any, ...]]]:
    """(override mapping as ordered pairs, path to where it is written) for every raw
    point: the grid product first, then the explicit points."""
    out: list[tuple[str, Any, tuple[Any, ...]]] = []
    grid = spec.get("grid")
    if isinstance(grid, dict) and grid and all(isinstance(v, list) for v in grid.values()):
        keys = list(grid)
        for combo in itertools.product(*(grid[k] for k in keys)):
            out.append(("grid", tuple(zip(keys, combo, strict=True)), (SWEEP_KEY, "grid")))
    points = spec.get("points")
    if isinstance(points, list):
        for i, point in enumerate(points):
            if isinstance(point, dict):
                out.append(("point", tuple(point.items()), (SWEEP_KEY, "points", i)))
    return out


def _apply(merged: dict[str, Any], overrides: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    out = {k: v for k, v in merged.items() if k != SWEEP_KEY}
    for key, value in overrides:
        root, _, leaf = key.partition(".")
        section = dict(out.get(root) or {})
        section[leaf] = value
        out[root] = section
    return out


def problems(exp: Experiment) -> list[Finding]:
    """What is wrong with the `sweep:` block itself (the schema checks its shape)."""
    spec = _spec(exp)
    if spec is None:
        return []
    out: list[Finding] = []
    keys: dict[str, tuple[Any, ...]] = {}
    grid = spec.get("grid")
    if isinstance(grid, dict):
        keys.update({k: (SWEEP_KEY, "grid", k) for k in grid})
    for i, point in enumerate(spec.get("points") or []):
        if isinstance(point, dict):
            for k in point:
                keys.setdefault(k, (SWEEP_KEY, "points", i, k))
    for key, where in keys.items():
        problem = _key_problem(str(key))
        if problem is not None:
            out.append(exp.finding(where, f"unknown sweep path {key!r}: {problem}",
                                   "sweep keys are train.<LLaMA-Factory argument> or "
                                   "launch.<setting>", "sweep"))
    for _, pairs, where in _overrides(spec):
        for key, value in pairs:
            if isinstance(value, float) and not math.isfinite(value):
                out.append(exp.finding(where, f"{key}: {value} is not a finite number",
                                       "use a finite value", "sweep"))
    if out:
        return out
    points, _ = _points(exp)
    n = len(points)
    if n == 0:
        out.append(exp.finding((SWEEP_KEY,), "the sweep expands to no run",
                               "give grid values or points", "sweep"))
    max_runs = spec.get("max_runs")
    if isinstance(max_runs, int) and not isinstance(max_runs, bool) and n > max_runs:
        out.append(exp.finding((SWEEP_KEY, "max_runs"),
                               f"the sweep expands to {n} runs, more than max_runs: {max_runs}",
                               "remove values or points, or raise max_runs deliberately",
                               "sweep"))
    cap = exp.profile.max_sweep_runs
    if n > cap:
        out.append(exp.finding((SWEEP_KEY,), f"the sweep expands to {n} runs, more than the "
                               f"cluster profile allows in one sweep ({cap})",
                               "split it into several experiments, or raise "
                               "limits.max_sweep_runs in k8s-base/cluster-profile.yaml",
                               "sweep"))
    return out


def _points(exp: Experiment) -> tuple[list[Experiment], list[tuple[int, tuple[Any, ...]]]]:
    """The de-duplicated points, and (expansion position, where written) of each."""
    spec = _spec(exp)
    if spec is None:
        return [exp], []
    raw = _overrides(spec)
    seen: set[str] = set()
    kept: list[tuple[tuple[tuple[str, Any], ...], Experiment, tuple[Any, ...]]] = []
    for _, pairs, where in raw:
        ordered = tuple(sorted(pairs, key=lambda kv: str(kv[0])))
        point = replace(exp, merged=_apply(exp.merged, ordered), point=None)
        if point.config_hash in seen:
            continue
        seen.add(point.config_hash)
        kept.append((ordered, point, where))
    out = []
    wheres = []
    for i, (ordered, point, where) in enumerate(kept):
        out.append(replace(point, point=SweepPoint(i, ordered, len(kept))))
        wheres.append((i, where))
    return out, wheres


def expand(exp: Experiment) -> list[Experiment]:
    """The runs of `exp`: itself when it is no sweep, else its de-duplicated points."""
    if not is_sweep(exp):
        return [exp]
    return _points(exp)[0]


def where_written(exp: Experiment, point: SweepPoint) -> tuple[Any, ...]:
    """The path of the sweep entry that made `point` (for findings about it)."""
    spec = _spec(exp) or {}
    for _, pairs, where in _overrides(spec):
        if tuple(sorted(pairs, key=lambda kv: str(kv[0]))) == point.overrides:
            return where
    return (SWEEP_KEY,)


def relocate(base: Experiment, point: SweepPoint, finding: Finding) -> Finding:
    """A finding about one point, said of that point: at the sweep entry when it concerns
    a swept key, else where it is; its message names the point."""
    swept = {f"$.{k}" for k, _ in point.overrides}
    message = f"sweep point {point.index} ({point.label}): {finding.message}"
    if finding.path in swept:
        at = base.finding(where_written(base, point), message, finding.hint, finding.rule)
        return Finding(at.file, at.line, at.col, finding.path, message, finding.hint,
                       finding.rule)
    return Finding(finding.file, finding.line, finding.col, finding.path, message,
                   finding.hint, finding.rule)
