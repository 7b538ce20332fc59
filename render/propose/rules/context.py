"""What rules may look at besides the experiment: the workspace and the index."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from render.errors import FatalError
from render.propose.experiment import Experiment, Workspace
from render.propose.quotas import Quotas, load_quotas
from render.record.index import ENTRY_SEPARATOR, INDEX_DIR, entries_by_experiment, read_entry
from render.record.indexref import IndexAt
from render.record.runrecord import RunRecord


@dataclass
class Context:
    ws: Workspace
    # The runs as of a commit (`lint --index-ref`: the base branch), instead of the
    # checkout's outputs-index/ (which a pull request can edit).
    index_at: IndexAt | None = None
    _runs: dict[str, list[RunRecord]] = field(default_factory=dict)
    _listing: dict[tuple[str, str], dict[str, list[Path]]] = field(default_factory=dict)
    _admission: dict[tuple[object, ...], str | None] = field(default_factory=dict)
    _by_hash: dict[tuple[str, str], dict[str, list[Path]]] = field(default_factory=dict)

    @cached_property
    def quotas(self) -> Quotas:
        """The Kueue queues and quotas of k8s-base/components/kueue/ (read once)."""
        return load_quotas(self.ws.root)

    def admission_problem(self, queue: str, flavor: str, pod: dict[str, str], pods: int
                          ) -> str | None:
        """`Quotas.problem`, remembered per layout (many experiments share one)."""
        key = (queue, flavor, tuple(sorted(pod.items())), pods)
        if key not in self._admission:
            self._admission[key] = self.quotas.problem(queue, flavor, pod, pods)
        return self._admission[key]

    def past_runs(self, exp: Experiment) -> list[RunRecord]:
        """Runs recorded for this experiment: in `index_at` when given, else in the
        checkout's outputs-index/ (the folder is listed once, entries are read on
        demand; an unreadable entry is `ftops index check`'s to report)."""
        if exp.path not in self._runs and self.index_at is not None:
            self._runs[exp.path] = sorted(self.index_at.runs_of(exp.dataset, exp.model,
                                                                exp.name),
                                          key=lambda r: r.index_key)
        if exp.path not in self._runs:
            key = (exp.dataset, exp.model)
            if key not in self._listing:
                self._listing[key] = entries_by_experiment(self.ws.root / INDEX_DIR, *key)
            runs = []
            for entry in self._listing[key].get(exp.name, []):
                try:
                    runs.append(read_entry(entry))
                except FatalError:
                    continue
            self._runs[exp.path] = runs
        return self._runs[exp.path]

    def runs_of(self, dataset: str, model: str, name: str) -> list[RunRecord]:
        """Runs recorded for the experiment <dataset>/<model>/<name> (see `past_runs`)."""
        if self.index_at is not None:
            return self.index_at.runs_of(dataset, model, name)
        key = (dataset, model)
        if key not in self._listing:
            self._listing[key] = entries_by_experiment(self.ws.root / INDEX_DIR, *key)
        runs = []
        for entry in self._listing[key].get(name, []):
            try:
                runs.append(read_entry(entry))
            except FatalError:
                continue
        return runs

    def run_ids(self, dataset: str, model: str) -> set[str]:
        """Run ids recorded in outputs-index/<dataset>/<model>/ (from the entry names)."""
        key = (dataset, model)
        if key not in self._listing:
            self._listing[key] = entries_by_experiment(self.ws.root / INDEX_DIR, *key)
        return {entry.stem.rsplit(ENTRY_SEPARATOR, 1)[1]
                for entries in self._listing[key].values() for entry in entries}

    def same_config(self, dataset: str, model: str, config_hash: str) -> list[Path]:
        """The experiment files of one <dataset>/<model> folder whose config hash is
        `config_hash` (the folder is grouped by hash once: no pairwise comparison)."""
        key = (dataset, model)
        if key not in self._by_hash:
            groups: dict[str, list[Path]] = {}
            for path in self.ws.siblings(dataset, model):
                for found in self.config_hashes_of(path):  # a sweep: each point's
                    groups.setdefault(found, []).append(path)
            self._by_hash[key] = groups
        return self._by_hash[key].get(config_hash, [])

    @cached_property
    def all_runs(self) -> list[RunRecord]:
        """Every run recorded: in `index_at` when given, else in the checkout's
        outputs-index/ (an unreadable entry is `ftops index check`'s to report)."""
        from render.propose.budget import recorded_runs

        if self.index_at is not None:
            return list(self.index_at.records)
        return recorded_runs(self.ws.root)

    def config_hashes_of(self, path: Path) -> set[str]:
        """Config hashes of another experiment file's runs: one, or each point of a sweep
        (empty when it cannot be loaded or its sweep is malformed)."""
        from render.propose import sweep

        exp, findings = self.ws.load(path)
        if exp is None or findings:
            return set()
        if sweep.is_sweep(exp):
            return set() if sweep.problems(exp) else {p.config_hash for p in sweep.expand(exp)}
        return {exp.config_hash}
