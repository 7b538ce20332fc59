"""What has run stays as it ran: no edits after a run, no duplicate configs.

Both compare launch identities (`Experiment.config_hash`: the training config as
LLaMA-Factory reads it, data, DeepSpeed content, image, layout, storage and secrets), so
`num_train_epochs: 3` -> `3.0` or a description typo is no edit, while a new image is.
`launch.rerun` is not compared: a deliberate re-run of a config that ran is allowed.
"""

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
    """An experiment that ran keeps its launch identity. A sweep point is its own launch
    identity, so a sweep is immutable per point: a point that ran is that point, a
    changed value is a new point (and the old one is no longer part of the sweep: a plan
    note), and adding points launches only them."""
    if exp.point is not None:
        return
    runs = ctx.past_runs(exp)
    if exp.inputs:
        # a pipeline stage: a new input (a newer succeeded run of the stage it needs) is
        # a new run; only runs on the same inputs must have the same identity
        mine = [(i.experiment, i.run_id) for i in exp.inputs]
        runs = [r for r in runs if [(n.get("experiment"), n.get("run_id"))
                                    for n in r.needs] == mine]
    if not runs:
        return
    current = exp.config_hash
    if any(run.config_hash == current for run in runs):
        return
    newest = runs[-1]
    hint = f"revert this change and copy it to {next_version(exp, ctx)}.yaml instead"
    raw = exp.merged.get("launch")
    pinned = isinstance(raw, dict) and "image" in raw
    if newest.mode == "cluster" and newest.image and newest.image != exp.launch.image:
        where = ("its launch.image" if pinned else
                 "the cluster profile's default image")
        hint = (f"{where} changed since it ran ({newest.image} -> {exp.launch.image}): "
                f"pin `launch.image: {newest.image}` in this experiment to keep it as it "
                f"ran, or {hint}")
    yield exp.finding((), f"{exp.name} has already run (run {newest.run_id}, "
                      f"{newest.status}) with a different launch identity (training config, "
                      "data, image, layout, storage or secrets); a run is never edited",
                      hint, "history")


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
    for other in ctx.same_config(exp.dataset, exp.model, mine):
        if other.stem == exp.name:
            continue
        if not _reproduction(ctx, other):
            yield exp.finding((), f"same resolved config as {ctx.ws.rel(other)}",
                              "change a parameter or delete one of the two", "duplicates")


def _reproduction(ctx: Context, path: Path) -> bool:
    """Whether the experiment at `path` declares the run it reproduces."""
    other, _ = ctx.ws.load(path)
    return other is not None and bool(other.metadata.get("reproduces"))
