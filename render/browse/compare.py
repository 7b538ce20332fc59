"""`ftops compare A B [...]`: runs side by side. What differs in their resolved configs,
their metrics (the best of each row in bold), and their loss curves overlaid in one SVG
(runs lettered A, B, ... in the tables and the chart).

`resolve` finds runs in `outputs-index/` by run id (or a unique prefix of one) or by
experiment path (its latest run). `compare` builds the comparison and `render_markdown`
writes it from `templates/compare.md.j2` (every value escaped, `render.markdown`), for a
terminal, a PR, or the top runs of a dataset README.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render.browse.svg import SERIES_LETTERS, SvgRenderer
from render.errors import FatalError
from render.markdown import Markdown, code, environment, esc, relative_link
from render.record.index import ENTRY_SEPARATOR, ENTRY_SUFFIX, entries_by_experiment, read_entry
from render.record.results import (
    EVAL_METRIC_LABELS,
    TRAINING_METRICS,
    fmt,
    gpu_hours,
    metric_label,
    metric_value,
)
from render.record.runrecord import RunRecord

MAX_RUNS = 6  # one column each: a wider table does not fit a PR or a README
# keys of the resolved config that differ between any two runs by construction
_PER_RUN_KEYS = frozenset({"output_dir", "dataset_dir", "run_name", "overwrite_output_dir"})
_TOKEN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
_EXPERIMENT = re.compile(r"experiments/([^/]+)/([^/]+)/([^/]+)\.yaml")


@dataclass
class Comparison:
    runs: list[RunRecord]
    letters: list[str]
    who: list[tuple[str, list[Markdown]]]  # the runs: experiment, run id, status, ...
    metrics: list[tuple[str, list[Markdown]]]
    config: list[tuple[str, list[Markdown]]]  # the keys whose values differ
    same: int  # config keys with the same value in every run
    unrecorded: list[str]  # letters of runs with no resolved config (not finished)
    svg: str | None


def compare(runs: Sequence[RunRecord], *, link_prefix: str | None = None,
            svg: SvgRenderer | None = None) -> Comparison:
    """Compare 2..MAX_RUNS runs. `link_prefix` (from the page to the repository root)
    links each experiment file; None names it as code (a terminal, a PR)."""
    runs = list(runs)
    if not 2 <= len(runs) <= MAX_RUNS:
        raise FatalError(f"compare takes 2 to {MAX_RUNS} different runs; these name "
                         f"{len(runs)}")
    letters = list(SERIES_LETTERS[: len(runs)])

    def experiment(r: RunRecord) -> Markdown:
        if link_prefix is None:
            return code(r.experiment_path or r.experiment)
        return relative_link(r.experiment, r.experiment_path, link_prefix)

    who = [
        ("experiment", [experiment(r) for r in runs]),
        ("run", [code(r.run_id) for r in runs]),
        ("dataset / model", [Markdown(f"{esc(r.dataset)} / {esc(r.model)}") for r in runs]),
        ("status", [Markdown(esc(r.status)) for r in runs]),
        ("owner", [Markdown(esc(r.owner)) for r in runs]),
        ("started", [Markdown(esc(r.started_at or "")) for r in runs]),
        ("commit", [code(r.git_sha[:12]) if r.git_sha else Markdown("") for r in runs]),
    ]
    who = [(label, cells) for label, cells in who if any(cells)]
    configs = [_flat_config(r) for r in runs]
    recorded = [c for c in configs if c is not None]
    keys = sorted({k for c in recorded for k in c})
    config: list[tuple[str, list[Markdown]]] = []
    same = 0
    for key in keys:
        values = [c.get(key, _MISSING) if c is not None else _MISSING for c in configs]
        shown = [_value(v) for v in values]
        if len(recorded) > 1 and len({_value(c.get(key, _MISSING)) for c in recorded}) == 1:
            same += 1
            continue
        config.append((key, [Markdown(s) for s in shown]))
    renderer = svg or SvgRenderer()
    return Comparison(
        runs=runs, letters=letters, who=who, metrics=_metrics(runs), config=config,
        same=same, unrecorded=[letters[i] for i, c in enumerate(configs) if c is None],
        svg=renderer.overlay([r.loss_points for r in runs]),
    )


def render_markdown(c: Comparison, *, svg_path: str | None, heading: str = "##",
                    title: bool = True) -> str:
    """The comparison as Markdown; the chart is linked as `svg_path` (None: no chart)."""
    template = environment("render.browse").get_template("compare.md.j2")
    return str(template.render(c=c, svg_path=svg_path, h=Markdown(heading), title=title,
                               max_runs=MAX_RUNS))


_MISSING = object()


def _value(v: Any) -> str:
    if v is _MISSING:
        return "\u2014"
    if isinstance(v, bool):
        text = "true" if v else "false"
    elif isinstance(v, float):
        text = format(v, "g")
    elif isinstance(v, int | str):
        text = str(v)
    else:
        text = json.dumps(v, sort_keys=True, separators=(",", ":"), default=str)
    return esc(text if len(text) <= 60 else text[:59] + "\u2026")


def _flat_config(r: RunRecord) -> dict[str, Any] | None:
    """What decided the run: its resolved train config (less the per-run paths) and
    its layout; None when the record holds no config (a run not finished)."""
    cfg = r.resolved_config if isinstance(r.resolved_config, dict) else {}
    if not cfg:
        return None
    out = {str(k): v for k, v in cfg.items() if k not in _PER_RUN_KEYS}
    out.update({"(layout) nodes": r.nodes, "(layout) gpus_per_node": r.gpus_per_node,
                "(layout) gpu_type": r.gpu_type, "(layout) image": r.image})
    return out


def _metrics(runs: list[RunRecord]) -> list[tuple[str, list[Markdown]]]:
    ids: list[str] = list(TRAINING_METRICS)
    scores = sorted({f"{name}/{key}" for r in runs for name, ev in r.evaluations.items()
                     for key in ev.metrics if key in EVAL_METRIC_LABELS},
                    key=lambda m: (m.split("/")[0], list(EVAL_METRIC_LABELS).index(
                        m.split("/")[1])))
    ids += scores
    rows: list[tuple[str, list[Markdown]]] = []
    for metric in ids:
        values = [metric_value(r, metric) for r in runs]
        present = [v for v in values if v is not None]
        if not present:
            continue
        best = (max if "/" in metric else min)(present) if len(present) > 1 else None
        rows.append((metric_label(metric), [
            Markdown("" if v is None else f"**{fmt(v)}**" if v == best else fmt(v))
            for v in values]))
    extra: list[tuple[str, list[Any]]] = [
        ("duration (h)", [None if r.duration_s is None else r.duration_s / 3600 for r in runs]),
        ("GPU-hours", [gpu_hours(r) for r in runs]),
        ("train samples/s", [r.metrics.train_samples_per_second for r in runs]),
        ("steps", [r.metrics.total_steps for r in runs]),
    ]
    for label, values in extra:
        if any(isinstance(v, int | float) for v in values):
            rows.append((label, [Markdown(fmt(v) if isinstance(v, int | float)
                                          and not isinstance(v, bool) else "")
                                 for v in values]))
    return rows


# -- finding the runs -------------------------------------------------------------------


def resolve(index_root: Path, tokens: Sequence[str]) -> list[RunRecord]:
    """The runs that `tokens` name, in order, each once: a run id or a unique prefix of
    one, or an experiment file `experiments/<dataset>/<model>/<name>.yaml` (its latest
    run). FatalError naming the token that finds nothing or more than one run."""
    out: dict[str, RunRecord] = {}
    for token in tokens:
        record = (_latest_of(index_root, token) if token.endswith(".yaml")
                  else _by_run_id(index_root, token))
        out.setdefault(record.index_key, record)
    return list(out.values())


def _latest_of(root: Path, token: str) -> RunRecord:
    path = token.replace("\\", "/")
    cut = path.find("experiments/")
    match = _EXPERIMENT.fullmatch(path[cut:]) if cut >= 0 else None
    if match is None:
        raise FatalError(f"{token}: not an experiment path "
                         "(experiments/<dataset>/<model>/<name>.yaml)")
    dataset, model, name = match.groups()
    entries = entries_by_experiment(root, dataset, model).get(name, [])
    if not entries:
        raise FatalError(f"{path[cut:]}: no run of it in outputs-index/ yet (`ftops plan "
                         f"{path[cut:]}` compares its config with the nearest experiment)")
    runs = [read_entry(p, root) for p in entries]
    return max(runs, key=lambda r: (r.started_at or "", r.run_id))


def _by_run_id(root: Path, token: str) -> RunRecord:
    if not _TOKEN.fullmatch(token):
        raise FatalError(f"{token!r} is neither a run id nor an experiment file")
    # the token holds no glob character (checked above); the run id is what follows
    # the last separator, so a match inside an experiment name is dropped
    found = [p for p in sorted(root.glob(f"*/*/*{ENTRY_SEPARATOR}{token}*{ENTRY_SUFFIX}"))
             if p.stem.rsplit(ENTRY_SEPARATOR, 1)[1].startswith(token)]
    exact = [p for p in found if p.stem.rsplit(ENTRY_SEPARATOR, 1)[1] == token]
    found = exact or found
    if not found:
        raise FatalError(f"no run {token!r} in outputs-index/ (give a run id, or an "
                         "experiment file for its latest run)")
    if len(found) > 1:
        names = ", ".join(p.stem.rsplit(ENTRY_SEPARATOR, 1)[1] for p in found[:6])
        raise FatalError(f"{token!r} names {len(found)} runs ({names}"
                         f"{', ...' if len(found) > 6 else ''}): give more of the run id")
    return read_entry(found[0], root)
