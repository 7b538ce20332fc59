"""Which metric ranks each dataset's runs: `leaderboard:` in
`experiments/<dataset>/dataset.yaml`, else the profile's (`k8s-base/cluster-profile.yaml`),
else eval loss, lower first (`render.record.results.DEFAULT_LEADERBOARD`).

The READMEs are generated from the entries and these few lines of the repository, so
`ftops index check` reads them too (and the publisher's sparse checkout holds them).
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
# what a publisher checks out besides outputs-index/ (git sparse-checkout, no cone)
SOURCES = ("/" + PROFILE_FILE, "/experiments/*/dataset.yaml")


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
    default = DEFAULT_LEADERBOARD
    profile = _read(repo / PROFILE_FILE, PROFILE_FILE)
    if isinstance(profile, dict) and "leaderboard" in profile:
        default = parse_leaderboard(profile["leaderboard"], PROFILE_FILE)
    by_dataset: dict[str, Leaderboard] = {}
    for path in sorted((repo / "experiments").glob("*/dataset.yaml")):
        shown = DATASET_FILE.format(dataset=path.parent.name)
        data = _read(path, shown)
        if isinstance(data, dict) and "leaderboard" in data:
            by_dataset[path.parent.name] = parse_leaderboard(data["leaderboard"], shown)
    return Boards(default, by_dataset)


def _read(path: Path, shown: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FatalError(f"{shown}: cannot read it: {exc.strerror or exc}") from None
    try:
        return yaml.load(text, Loader=yaml.CSafeLoader)
    except yaml.YAMLError as exc:
        raise FatalError(f"{shown}: not valid YAML ({exc}); `ftops lint` shows where") from None
