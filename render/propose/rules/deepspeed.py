"""A referenced DeepSpeed config is a regular file in experiments/_deepspeed/, valid JSON
within the input bounds (it is shipped to the cluster in the run's ConfigMap)."""

from __future__ import annotations

from collections.abc import Iterator

from render.errors import Finding
from render.propose.experiment import (
    DEEPSPEED_DIR,
    EXPERIMENTS_DIR,
    Experiment,
    deepspeed_path_problem,
    read_deepspeed,
)
from render.propose.rules.context import Context

PREFIX = f"{EXPERIMENTS_DIR}/{DEEPSPEED_DIR}/"


def check(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    ds = exp.train.get("deepspeed")
    if ds is None:
        return
    where = ("train", "deepspeed")
    problem = deepspeed_path_problem(ds)
    if problem is not None or not isinstance(ds, str):
        yield exp.finding(where, problem or "deepspeed must be a path",
                          f"e.g. deepspeed: {PREFIX}ds_z3.json", "deepspeed")
        return
    path = ctx.ws.root / ds
    if not path.is_file() and not path.is_symlink():
        shipped = sorted(p.name for p in path.parent.glob("*.json"))
        yield exp.finding(where, f"DeepSpeed config {ds!r} does not exist",
                          "available: " + ", ".join(shipped) if shipped else "add the file",
                          "deepspeed")
        return
    try:
        read_deepspeed(ctx.ws.root, ds)
    except ValueError as exc:
        yield exp.finding(where, f"{ds} {exc}", "fix the file", "deepspeed")
