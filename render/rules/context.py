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
    _listing: dict[tuple[str, str], dict[str, list[Path]]] = field(default_factory=dict)

    def _index_files(self, dataset: str, model: str) -> dict[str, list[Path]]:
        """outputs-index/<dataset>/<model>/ entries by experiment name (listed once)."""
        key = (dataset, model)
        if key not in self._listing:
            by_name: dict[str, list[Path]] = {}
            folder = self.ws.root / INDEX_DIR / dataset / model
            if folder.is_dir():
                for entry in sorted(folder.glob("*__*.json")):
                    by_name.setdefault(entry.name.rsplit("__", 1)[0], []).append(entry)
            self._listing[key] = by_name
        return self._listing[key]

    def run_ids(self, dataset: str, model: str) -> set[str]:
        """Run ids recorded in outputs-index/<dataset>/<model>/ (from the entry names)."""
        return {entry.stem.rsplit("__", 1)[1]
                for entries in self._index_files(dataset, model).values() for entry in entries}

    def past_runs(self, exp: Experiment) -> list[PastRun]:
        """Runs recorded in outputs-index/ for this experiment (read on demand)."""
        if exp.path not in self._runs:
            runs = []
            for entry in self._index_files(exp.dataset, exp.model).get(exp.name, []):
                try:
                    data = json.loads(entry.read_text(encoding="utf-8"))
                    runs.append(PastRun(str(data["run_id"]), str(data["config_hash"]),
                                        str(data.get("status", ""))))
                except (OSError, ValueError, KeyError, TypeError):
                    continue  # `ftops index check` reports corrupt entries
            self._runs[exp.path] = runs
        return self._runs[exp.path]

    def config_hash_of(self, path: Path) -> str | None:
        """Config hash of another experiment file, None when it cannot be loaded (both the
        load and the hash are cached by the Workspace and the Experiment)."""
        exp, findings = self.ws.load(path)
        return exp.config_hash if exp is not None and not findings else None
