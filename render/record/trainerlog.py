"""LLaMA-Factory's `trainer_log.jsonl`: one JSON line per logging step, written by every
run (CLI or Board) on the saving rank. The hook reads metrics and the loss curve from it;
the local launcher reads progress from it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRAINER_LOG = "trainer_log.jsonl"


def read_log(output_dir: Path) -> list[dict[str, Any]]:
    """trainer_log.jsonl, one entry per step. A resumed run appends to the file and
    repeats the steps after its last checkpoint: the last entry for a step wins."""
    path = output_dir / TRAINER_LOG
    if not path.exists():
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written right now
        if isinstance(entry, dict) and isinstance(entry.get("current_steps"), int):
            by_step[entry["current_steps"]] = {**by_step.get(entry["current_steps"], {}),
                                               **entry}
    return [by_step[k] for k in sorted(by_step)]
