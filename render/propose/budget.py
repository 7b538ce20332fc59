"""GPU-hour budgets as code: `k8s-base/budgets.yaml`.

    # GPU-hours per calendar month (UTC)
    datasets: {alpaca_en: 2000}
    teams: {alignment-team: 400}      # a team is an experiment's metadata.owner

A budget is spent by the runs recorded in outputs-index/ that started this month (their
duration x GPUs: `render.record.results.gpu_hours`) plus the estimate of every run the
change launches (`render.propose.estimate`; runs whose launch identity has a record
launch nothing and cost nothing). `check` is lint's rule: an experiment that would take
its dataset or team over budget is refused unless it says why in
`metadata.budget_override` (the plan highlights the reason); `usage` is what the plan
shows. No budgets file: no limit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from render.errors import FatalError, Finding
from render.propose.estimate import estimate
from render.propose.experiment import Experiment
from render.propose.naming import run_id
from render.record.results import gpu_hours
from render.record.runrecord import RunRecord

BUDGETS_PATH = Path("k8s-base/budgets.yaml")
KINDS = ("datasets", "teams")


@dataclass(frozen=True)
class Budgets:
    datasets: dict[str, float] = field(default_factory=dict)
    teams: dict[str, float] = field(default_factory=dict)

    def limits(self, exp: Experiment) -> list[tuple[str, str, float]]:
        """(kind, name, GPU-hours per month) of every budget `exp` spends."""
        out = []
        if exp.dataset in self.datasets:
            out.append(("dataset", exp.dataset, self.datasets[exp.dataset]))
        owner = team_of(exp)
        if owner in self.teams:
            out.append(("team", owner, self.teams[owner]))
        return out


def team_of(exp: Experiment) -> str:
    return str(exp.metadata.get("owner", ""))


def load_budgets(root: Path) -> Budgets:
    """The budgets file of the repository at `root` (none: no budgets); FatalError
    naming the file and field when it is malformed."""
    path = root / BUDGETS_PATH
    if path.is_symlink():
        raise FatalError(f"{BUDGETS_PATH}: is a symbolic link; use the file itself")
    if not path.is_file():
        return Budgets()
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise FatalError(f"{BUDGETS_PATH}: cannot be read: {exc}") from None
    raw = raw if raw is not None else {}
    if not isinstance(raw, dict) or set(raw) - set(KINDS):
        raise FatalError(f"{BUDGETS_PATH}: must be a mapping with only "
                         f"{' and '.join(KINDS)} (each: name -> GPU-hours per month)")
    parsed: dict[str, dict[str, float]] = {}
    for kind in KINDS:
        section = raw.get(kind) or {}
        if not isinstance(section, dict):
            raise FatalError(f"{BUDGETS_PATH}: {kind} must map names to GPU-hours per month")
        for name, hours in section.items():
            if isinstance(hours, bool) or not isinstance(hours, int | float) or hours < 0 \
                    or hours != hours or hours == float("inf"):
                raise FatalError(f"{BUDGETS_PATH}: {kind}.{name}: {hours!r} is not a number "
                                 "of GPU-hours (0 or more)")
        parsed[kind] = {str(k): float(v) for k, v in section.items()}
    return Budgets(parsed["datasets"], parsed["teams"])


def recorded_runs(root: Path) -> list[RunRecord]:
    """Every readable entry of the checkout's outputs-index/ (`root`: the repository);
    an unreadable one is `ftops index check`'s to report, not a budget's."""
    from render.record.index import INDEX_DIR, read_entry

    out = []
    for entry in sorted((root / INDEX_DIR).glob("*/*/*.json")):
        try:
            out.append(read_entry(entry))
        except FatalError:
            continue
    return out


def this_month() -> str:
    return datetime.now(UTC).strftime("%Y-%m")


@dataclass
class Usage:
    """One budget in one month: what recorded runs used, what this change adds."""

    kind: str  # dataset | team
    name: str
    limit: float
    used: float = 0.0
    estimate: float = 0.0
    unknown: int = 0  # launching runs without an estimate (counted as 0)
    experiments: list[Experiment] = field(default_factory=list)

    @property
    def total(self) -> float:
        return self.used + self.estimate

    @property
    def over(self) -> bool:
        return self.total > self.limit


def usage(root: Path, budgets: Budgets, experiments: Sequence[Experiment],
          records: Iterable[RunRecord], recorded: Callable[[Experiment], bool],
          month: str | None = None) -> list[Usage]:
    """The budgets `experiments` spend, with what `records` used in `month` (default:
    this month, UTC) and the estimate of each experiment that launches (`recorded`
    says which have run already)."""
    month = month or this_month()
    found: dict[tuple[str, str], Usage] = {}
    for exp in experiments:
        if recorded(exp):
            continue
        est = estimate(root, exp).gpu_hours
        for kind, name, limit in budgets.limits(exp):
            u = found.setdefault((kind, name), Usage(kind, name, limit))
            u.experiments.append(exp)
            if est is None:
                u.unknown += 1
            else:
                u.estimate += est
    if not found:
        return []
    for r in records:
        if not str(r.started_at or "").startswith(month):
            continue
        hours = gpu_hours(r)
        if hours is None:
            continue
        for key in (("dataset", r.dataset), ("team", r.owner)):
            if key in found:
                found[key].used += hours
    return [found[k] for k in sorted(found)]


def override(exp: Experiment) -> str | None:
    value = exp.metadata.get("budget_override")
    return value if isinstance(value, str) and value.strip() else None


def describe(u: Usage, month: str) -> str:
    unknown = f" (+ {u.unknown} run(s) without an estimate)" if u.unknown else ""
    return (f"the {u.kind} {u.name!r} budget is {u.limit:g} GPU-hours in {month}: used "
            f"{u.used:.1f} + this change {u.estimate:.1f}{unknown} = {u.total:.1f}")


def check(root: Path, experiments: Sequence[Experiment], records: Iterable[RunRecord],
          month: str | None = None) -> list[Finding]:
    """Lint's budget rule over the experiments one lint checks (a pull request's)."""
    budgets = load_budgets(root)
    if not budgets.datasets and not budgets.teams:
        return []
    month = month or this_month()
    records = list(records)
    ran = {(r.experiment_path, r.run_id) for r in records}

    def recorded(exp: Experiment) -> bool:
        return (exp.path, run_id(exp.path, exp.config_hash, exp.launch.rerun)) in ran

    out: list[Finding] = []
    for u in usage(root, budgets, experiments, records, recorded, month):
        if not u.over:
            continue
        for exp in u.experiments:
            if override(exp) is None:
                point: Any = exp.point
                where = f" (sweep point {point.index}: {point.label})" if point else ""
                out.append(exp.finding(("metadata",), f"over budget{where}: "
                                       f"{describe(u, month)}",
                                       f"say why in metadata.budget_override: <reason> (the "
                                       f"plan shows it to reviewers), or raise the budget in "
                                       f"{BUDGETS_PATH}", "budget"))
    return out
