"""What has run stays as it ran: no edits after a run, no duplicate configs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from render.errors import Finding
from render.propose.experiment import Experiment
from render.propose.rules.context import Context


def next_version(exp: Experiment, ctx: Context) -> str:
    base = re.sub(r"_v[0-9]+$", "", exp.name)
    taken = {p.stem for p in ctx.ws.siblings(exp.dataset, exp.model)}
    n = 2
    while f"{base}_v{n}" in taken:
        n += 1
    return f"{base}_v{n}"


def check_immutable(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    runs = ctx.past_runs(exp)
    if not runs:
        return
    current = exp.config_hash
    if any(run.config_hash == current for run in runs):
        return
    newest = runs[-1]
    yield exp.finding((), f"{exp.name} has already run (run {newest.run_id}, "
                      f"{newest.status}) with a different config; a run's config is never "
                      "edited", f"revert this change and copy it to "
                      f"{next_version(exp, ctx)}.yaml instead", "history")


def check_duplicates(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    """Same resolved config as another experiment (only a sibling can be: the folders
    pin the dataset and the model). A declared reproduction of a run may repeat it."""
    mine = exp.config_hash
    reproduces = exp.metadata.get("reproduces")
    if isinstance(reproduces, str) and reproduces:
        if reproduces not in ctx.run_ids(exp.dataset, exp.model):
            yield exp.finding(("metadata", "reproduces"),
                              f"run {reproduces!r} is not in outputs-index/{exp.dataset}/"
                              f"{exp.model}/", "name a run of this dataset and model "
                              "(ftops import run:<run_id> writes it)", "history")
        return
    for other in ctx.ws.siblings(exp.dataset, exp.model):
        if other.stem == exp.name:
            continue
        if ctx.config_hash_of(other) == mine and not _reproduction(ctx, other):
            yield exp.finding((), f"same resolved config as {ctx.ws.rel(other)}",
                              "change a parameter or delete one of the two", "duplicates")


def _reproduction(ctx: Context, path: Path) -> bool:
    """Whether the experiment at `path` declares the run it reproduces."""
    other, _ = ctx.ws.load(path)
    return other is not None and bool(other.metadata.get("reproduces"))
