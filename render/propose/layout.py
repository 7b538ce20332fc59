"""File layout under experiments/: only the files the format defines, and only regular
files (a symlink could point anywhere: a DeepSpeed config linked to a credentials file
would ship it to the cluster)."""

from __future__ import annotations

from pathlib import PurePosixPath

from render.errors import Finding
from render.propose.experiment import (
    DATASET_NAME,
    DEEPSPEED_DIR,
    DEFAULTS_NAME,
    EXPERIMENTS_DIR,
    symlink_finding,
)

LAYOUT_HINT = (f"experiments hold <dataset>/<model>/<name>_v<N>.yaml, "
               f"<dataset>/{DATASET_NAME}, {DEFAULTS_NAME} at the dataset and model levels, "
               f"and DeepSpeed configs in {DEEPSPEED_DIR}/*.json")


def classify(rel: str) -> str:
    """'experiment', 'defaults', 'dataset', 'deepspeed', 'doc', 'other' or 'invalid'."""
    parts = PurePosixPath(rel).parts
    if not parts or parts[0] != EXPERIMENTS_DIR:
        return "other"
    inner = parts[1:]
    name = inner[-1] if inner else ""
    if name.endswith(".md"):
        return "doc"
    if len(inner) == 2 and inner[0] == DEEPSPEED_DIR and name.endswith(".json"):
        return "deepspeed"
    if inner and inner[0].startswith("_"):
        return "invalid"
    if len(inner) == 2 and name == DATASET_NAME:
        return "dataset"
    if len(inner) in (2, 3) and name == DEFAULTS_NAME:
        return "defaults"
    if len(inner) == 3 and name.endswith(".yaml"):
        return "experiment"
    return "invalid"


__all__ = ["LAYOUT_HINT", "check", "classify", "symlink_finding"]


def check(rel: str) -> list[Finding]:
    kind = classify(rel)
    if kind != "invalid":
        return []
    hint = LAYOUT_HINT
    if rel.endswith(".yml"):
        hint = "use the .yaml extension; " + hint
    return [Finding(rel, 1, 1, "$", "file is not part of the experiment layout", hint,
                    "layout")]

