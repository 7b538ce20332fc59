"""`outputs-index/<dataset>/runs.csv`: each dataset's run log for tools, one row per run
(ids, status, owner, dataset, model, key hyperparameters, metrics, every evaluation's
numbers, duration, GPU-hours, links), for pandas or a spreadsheet. Regenerated with the
READMEs by `ftops index readme` (`ftops index check` fails when one is stale).

One file per dataset, not one for the whole index: a publish rewrites the file of the
dataset it touches, so its cost does not grow with the index (one file of every run was
62 MB at 100,000 runs, read, rewritten and pushed by every publish). All runs in one
table: `pandas.concat(map(pandas.read_csv, glob("outputs-index/*/runs.csv")))`.

Columns are fixed, then one per evaluation number seen in any run of the dataset
(`<evaluation>/<key>`, sorted), then the lineage and links. RFC 4180 quoting (what
Python's csv module and pandas read). No cell can become a spreadsheet formula: a text
cell that starts with = + - @ (or a tab, a carriage return, or their full-width forms),
even after spaces, gets a leading apostrophe. Numbers are written as numbers (Python's
repr).

Rows are written as text directly, with the fields that repeat across runs (names,
paths, hyperparameter sets) memoised: 100k runs make 30 MB of rows in about a second.
Rows are in README order, so each dataset/model folder's rows are one block of its
dataset's file; a publish keeps the blocks of the folders it does not touch as they are
(their sizes are in the summary, `render.browse.summary`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from render.record.identity import KEY_HYPERPARAMETERS
from render.record.results import gpu_hours
from render.record.runrecord import RunRecord

RUNS_CSV = "runs.csv"

_FIRST = ("run_id", "status", "dataset", "model", "experiment", "owner", "started_at",
          "finished_at", "duration_s", "gpu_hours", "nodes", "gpus_per_node", "gpu_type",
          "mode", "exit_code")  # fmt: skip
_METRICS = ("final_train_loss", "best_train_loss", "eval_loss", "train_samples_per_second",
            "total_steps", "epochs")  # fmt: skip
_LAST = ("experiment_path", "config_hash", "git_sha", "image", "jobset", "artifacts_uri",
         "artifacts_url", "loss_curve", "tracker_url", "entry", "message")  # fmt: skip
_FORMULA = frozenset("=+-@\t\r\uff1d\uff0b\uff0d\uff20")
_NEEDS_QUOTES = re.compile('[,"\r\n]').search


def field(text: str) -> str:
    """One text cell as runs.csv writes it: never a formula, quoted when it must be."""
    if text and (text[0] in _FORMULA or (text[0] == " " and text.lstrip(" ")[:1] in _FORMULA)):
        text = "'" + text
    if _NEEDS_QUOTES(text):
        text = '"' + text.replace('"', '""') + '"'
    return text


class _Fields(dict[str, str]):
    """`field` of each distinct text (most cells repeat across runs)."""

    def __missing__(self, text: str) -> str:
        # entries are checked, but a record made elsewhere may hold anything
        out = self[text] = field(text if isinstance(text, str) else str(text))
        return out


def _unique(text: Any) -> str:
    if text is None:
        return ""
    return field(text if isinstance(text, str) else str(text))


def _number(value: Any) -> str:
    if value is None or value.__class__ is bool:
        return ""
    if value.__class__ is float or value.__class__ is int:
        return repr(value)
    if isinstance(value, int | float):  # a subclass: as the number it is
        return repr(float(value)) if isinstance(value, float) else str(int(value))
    return ""  # not a number (entries are checked): an empty cell, never the text


class RunLog:
    """Rows collected one dataset at a time; `text()` writes the CSV once all are in
    (the evaluation columns are known only then)."""

    def __init__(self) -> None:
        self._fields = _Fields()
        self._hp: dict[Any, str] = {}
        # (dataset, model) -> rows (each: text before the evaluation columns, after,
        # and the evaluation cells by column)
        self._folders: dict[tuple[str, str], list[tuple[str, str, dict[str, str] | None]]] = {}
        # (dataset, model) -> the evaluation columns its runs fill
        self._folder_columns: dict[tuple[str, str], set[str]] = {}

    def add(self, runs: Iterable[RunRecord]) -> None:
        """Add runs, in the order they are to be written (a dataset's runs in their
        README order)."""
        f = self._fields.__getitem__  # text that repeats across runs
        u = _unique  # text of one run alone (not worth keeping)
        num = _number
        for r in runs:
            m = r.metrics
            head = ",".join((
                u(r.run_id), f(r.status), f(r.dataset), f(r.model), f(r.experiment),
                f(r.owner), u(r.started_at), u(r.finished_at), num(r.duration_s),
                num(gpu_hours(r)), num(r.nodes), num(r.gpus_per_node), f(r.gpu_type),
                f(r.mode), num(r.exit_code), self._hparams(r.hyperparameters),
                num(m.final_train_loss), num(m.best_train_loss), num(m.eval_loss),
                num(m.train_samples_per_second), num(m.total_steps), num(m.epochs)))
            tail = ",".join((
                f(r.experiment_path), f(r.config_hash), f(r.git_sha), f(r.image),
                u(r.jobset), u(r.artifacts_uri), u(r.artifacts_url), u(r.loss_curve),
                u(r.tracker_url), u(r.index_key), f(r.message)))
            evals: dict[str, str] | None = None
            if r.evaluations:
                evals = {}
                for name, ev in r.evaluations.items():
                    evals[f"{name}/status"] = f(ev.status)
                    for key, value in ev.metrics.items():
                        evals[f"{name}/{key}"] = num(value)
                    evals[f"{name}/predictions"] = f(ev.predictions)
            folder = (r.dataset, r.model)
            rows = self._folders.get(folder)
            if rows is None:
                rows = self._folders[folder] = []
                self._folder_columns[folder] = set()
            if evals is not None:
                self._folder_columns[folder].update(evals)
            rows.append((head, tail, evals))

    def _hparams(self, hp: Any) -> str:
        if not isinstance(hp, dict):
            hp = {}
        try:
            key = (tuple(hp.items()), tuple(map(type, hp.values())))
            cached = self._hp.get(key)
        except TypeError:  # unhashable values (lists, dicts)
            key, cached = None, None
        if cached is None:
            cached = ",".join(self._hp_cell(hp.get(k)) for k in KEY_HYPERPARAMETERS)
            if key is not None:
                self._hp[key] = cached
        return cached

    def _hp_cell(self, value: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return repr(value) if isinstance(value, int) or math.isfinite(value) else ""
        if isinstance(value, str):
            return self._fields[value]
        return self._fields[json.dumps(value, sort_keys=True, separators=(",", ":"),
                                       default=str)]

    def columns(self, folders: Iterable[tuple[str, str]]) -> list[str]:
        """The evaluation columns of these dataset/model folders' runs, sorted (as the
        header has them)."""
        return sorted(set().union(*(self._folder_columns[k] for k in folders)))

    def folder_columns(self) -> dict[tuple[str, str], list[str]]:
        """The evaluation columns each dataset/model folder's runs fill, sorted."""
        return {k: sorted(v) for k, v in self._folder_columns.items()}

    def header(self, evals: list[str]) -> str:
        """The header line (with its newline) for these evaluation columns."""
        return ",".join([*_FIRST, *KEY_HYPERPARAMETERS, *_METRICS,
                         *(self._fields[c] for c in evals), *_LAST]) + "\n"

    def blocks(self, evals: list[str], folders: Iterable[tuple[str, str]]
               ) -> dict[tuple[str, str], str]:
        """The rows of each of these dataset/model folders (each row ending in a
        newline) laid out for these evaluation columns (a superset of those the rows
        fill), in file order: a folder's rows are one contiguous block of runs.csv."""
        blank = "," * len(evals)  # between head and tail: the empty evaluation cells
        out: dict[tuple[str, str], str] = {}
        for folder in sorted(folders):
            lines = []
            for head, tail, ev in self._folders[folder]:
                if ev is None:
                    lines.append(f"{head},{blank}{tail}\n")
                else:
                    cells = ",".join(ev.get(c, "") for c in evals)
                    lines.append(f"{head},{cells},{tail}\n")
            out[folder] = "".join(lines)
        return out

    def forget(self, folders: Iterable[tuple[str, str]]) -> None:
        """Drop these folders' rows (their dataset's file is written)."""
        for k in folders:
            self._folders.pop(k, None)
            self._folder_columns.pop(k, None)

    def text(self) -> str:
        """The CSV of every run added (one dataset's file when they are one dataset's)."""
        evals = self.columns(self._folders)
        return self.header(evals) + "".join(self.blocks(evals, self._folders).values())
