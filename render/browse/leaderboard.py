"""Which metric ranks each dataset's runs: `leaderboard:` in
`experiments/<dataset>/dataset.yaml`, else the profile's (`k8s-base/cluster-profile.yaml`),
else eval loss, lower first (`render.record.results.DEFAULT_LEADERBOARD`).

The READMEs are generated from the entries and these few lines of the repository, so
`ftops index check` reads them too (and the publisher reads them from git: `parse_boards`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from render.errors import FatalError
from render.record.results import DEFAULT_LEADERBOARD, Leaderboard, parse_leaderboard

PROFILE_FILE = "k8s-base/cluster-profile.yaml"
DATASET_FILE = "experiments/{dataset}/dataset.yaml"
EXPERIMENTS_DIR = "experiments"


@dataclass(frozen=True)
class Boards:
    """The leaderboard of every dataset that names one, and the default."""

    default: Leaderboard = DEFAULT_LEADERBOARD
    by_dataset: dict[str, Leaderboard] = field(default_factory=dict)

    def of(self, dataset: str) -> Leaderboard:
        return self.by_dataset.get(dataset, self.default)


def load_boards(repo: Path) -> Boards:
    """The leaderboards named under the repository root `repo` (missing files: the
    defaults). FatalError naming the file for one that is not valid YAML or names no
    valid leaderboard (`ftops lint` reports the same in dataset.yaml)."""
    texts = {PROFILE_FILE: _read(repo / PROFILE_FILE, PROFILE_FILE)}
    for path in sorted((repo / EXPERIMENTS_DIR).glob("*/dataset.yaml")):
        shown = DATASET_FILE.format(dataset=path.parent.name)
        texts[shown] = _read(path, shown)
    return parse_boards(texts)


def parse_boards(texts: dict[str, str | None]) -> Boards:
    """The leaderboards these files name: {PROFILE_FILE or experiments/<dataset>/
    dataset.yaml: its text, None if absent}. FatalError as `load_boards`."""
    default = DEFAULT_LEADERBOARD
    profile = _yaml(texts.get(PROFILE_FILE), PROFILE_FILE)
    if isinstance(profile, dict) and "leaderboard" in profile:
        default = parse_leaderboard(profile["leaderboard"], PROFILE_FILE)
    by_dataset: dict[str, Leaderboard] = {}
    for shown, text in sorted(texts.items()):
        parts = shown.split("/")
        if len(parts) != 3 or parts[0] != EXPERIMENTS_DIR or parts[2] != "dataset.yaml":
            continue
        data = _yaml(text, shown)
        if isinstance(data, dict) and "leaderboard" in data:
            by_dataset[parts[1]] = parse_leaderboard(data["leaderboard"], shown)
    return Boards(default, by_dataset)


def _read(path: Path, shown: str) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FatalError(f"{shown}: cannot read it: {exc.strerror or exc}") from None


def _yaml(text: str | None, shown: str) -> Any:
    if text is None:
        return None
    try:
        return yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        raise FatalError(f"{shown}: not valid YAML ({exc}); `ftops lint` shows where") from None
