"""What rules may look at besides the experiment: the workspace and the index."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from render.experiment import Experiment, Workspace

INDEX_DIR = "outputs-index"


@dataclass(frozen=True)
class PastRun:
    run_id: str
    config_hash: str
    status: str


@dataclass
class Context:
    ws: Workspace
    _runs: dict[str, list[PastRun]] = field(default_factory=dict)
    _hashes: dict[str, str | None] = field(default_factory=dict)

    def past_runs(self, exp: Experiment) -> list[PastRun]:
        """Runs recorded in outputs-index/ for this experiment (read on demand)."""
        if exp.path not in self._runs:
            folder = self.ws.root / INDEX_DIR / exp.dataset / exp.model
            runs = []
            for entry in sorted(folder.glob(f"{exp.name}__*.json")):
                try:
                    data = json.loads(entry.read_text(encoding="utf-8"))
                    runs.append(PastRun(str(data["run_id"]), str(data["config_hash"]),
                                        str(data.get("status", ""))))
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # `ftops index check` reports corrupt entries
            self._runs[exp.path] = runs
        return self._runs[exp.path]

    def config_hash_of(self, path: Path) -> str | None:
        """Config hash of another experiment file, None when it cannot be loaded."""
        key = str(path)
        if key not in self._hashes:
            exp, findings = self.ws.load(path)
            self._hashes[key] = exp.config_hash if exp is not None and not findings else None
        return self._hashes[key]
