"""A referenced DeepSpeed config exists, is JSON, and lives in experiments/_deepspeed/."""

from __future__ import annotations

import json
from collections.abc import Iterator

from render.errors import Finding
from render.propose.experiment import DEEPSPEED_DIR, EXPERIMENTS_DIR, Experiment
from render.propose.rules.context import Context

PREFIX = f"{EXPERIMENTS_DIR}/{DEEPSPEED_DIR}/"


def check(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    ds = exp.train.get("deepspeed")
    if ds is None:
        return
    where = ("train", "deepspeed")
    if not isinstance(ds, str) or not ds.startswith(PREFIX) or ".." in ds:
        yield exp.finding(where, f"deepspeed must name a file under {PREFIX}",
                          f"e.g. deepspeed: {PREFIX}ds_z3.json", "deepspeed")
        return
    path = ctx.ws.root / ds
    if not path.is_file():
        shipped = sorted(p.name for p in path.parent.glob("*.json"))
        yield exp.finding(where, f"DeepSpeed config {ds!r} does not exist",
                          "available: " + ", ".join(shipped) if shipped else "add the file",
                          "deepspeed")
        return
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        yield exp.finding(where, f"{ds} is not valid JSON: {exc}", "fix the JSON", "deepspeed")
