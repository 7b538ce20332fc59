"""`outputs-index/` entries: the one module that reads and writes them.

Layout (``root`` below is the ``outputs-index/`` directory itself)::

    outputs-index/<dataset>/<model>/<experiment>__<run_id>.json  RunRecord.to_json()

Everything else in that folder is generated from the entries by `render.browse`. Lint's
immutability rule, the plan's nearest run and estimate, `ftops status` and the publisher
all read entries through here.

Merge rule (``merge_records``): a later lifecycle status wins,
``launched < running < succeeded | failed | cancelled``; an equal status is replaced by
the incoming record (a fresher copy of the same state); an earlier one never
overwrites a later one. An entry is never deleted.
"""

from __future__ import annotations

import math
import operator
import os
import re
from collections.abc import Iterator
from itertools import chain, groupby
from pathlib import Path

from render.errors import FatalError
from render.fsutil import atomic_write, confined
from render.record.results import EVAL_NAME
from render.record.runrecord import MAX_LOSS_POINTS, STATUSES, Metrics, RunRecord

INDEX_DIR = "outputs-index"  # at the repository root
ENTRY_SUFFIX = ".json"
ENTRY_SEPARATOR = "__"  # <experiment>__<run_id>.json

# Lifecycle rank: a record may only be replaced by one of equal or higher rank.
STATUS_RANK: dict[str, int] = {
    "launched": 0,
    "running": 1,
    "succeeded": 2,
    "failed": 2,
    "cancelled": 2,
}

# Path components of an entry: no separators, no "..", no leading dot or dash.
_KEY_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
KEY_PART_MAX = 128  # characters of one part (the `{0,127}` above): lint checks names with it
_NUMBER_TYPES = frozenset({int, float})
_EVAL_NAME = re.compile(EVAL_NAME)


def check_key(record: RunRecord) -> None:
    """Raise FatalError unless the record's dataset/model/experiment/run_id make a
    safe entry path (no separators, no "..", no leading dot)."""
    for name in ("dataset", "model", "experiment", "run_id"):
        value = getattr(record, name)
        if not isinstance(value, str) or not _KEY_PART.fullmatch(value):
            raise FatalError(
                f"run record {name}={value!r} cannot name an outputs-index entry: use "
                "1-128 characters from A-Z a-z 0-9 . _ + - starting with a letter or digit"
            )
    if "__" in record.run_id:
        raise FatalError(
            f"run id {record.run_id!r} contains '__', which separates experiment and run "
            "id in entry names: use single '_' or '-'"
        )
    if record.status not in STATUS_RANK:
        raise FatalError(
            f"run {record.run_id}: unknown status {record.status!r}; "
            f"use one of {', '.join(STATUSES)}"
        )


def is_key_part(value: object) -> bool:
    """Whether `value` may be a dataset, model, experiment or run id of an entry (the
    run id also must not hold '__'; `check_key` says why not)."""
    return isinstance(value, str) and _KEY_PART.fullmatch(value) is not None


def check_keys(runs: list[RunRecord]) -> None:
    """`check_key` for many records (they name the generated files): dataset, model and
    experiment names repeat, so each distinct one is matched once."""
    ok: set[str] = set()
    for r in runs:
        try:
            if (
                (r.dataset in ok and r.model in ok and r.experiment in ok)
                and r.status in STATUS_RANK
                and _KEY_PART.fullmatch(r.run_id)
                and "__" not in r.run_id
            ):
                continue
        except TypeError:  # not a string (unhashable): check_key says what is wrong
            pass
        check_key(r)
        ok.update((r.dataset, r.model, r.experiment))


def validate(record: RunRecord) -> None:
    """Raise FatalError unless the record is a well-formed entry (safe key, known
    status, fields of the right types)."""
    check_key(record)
    try:
        _check_types(record)
    except ValueError as exc:
        raise FatalError(f"run {record.run_id}: {exc}") from exc


def merge_records(
    existing: RunRecord | None, incoming: RunRecord, *, replace_equal: bool = True
) -> RunRecord:
    """The record an entry should hold after `incoming` arrives on top of `existing`.

    A later lifecycle status wins. On an equal status the incoming record wins when
    `replace_equal` (a fresher copy of the same state), else the existing one stays.
    """
    if existing is None:
        return incoming
    old = STATUS_RANK.get(existing.status, -1)
    new = STATUS_RANK.get(incoming.status, -1)
    if new > old or (new == old and replace_equal):
        return incoming
    return existing


def read_entry(path: Path, root: Path | None = None) -> RunRecord:
    """Parse one entry file; FatalError naming the file when it is not a valid entry."""
    return _read(str(path), _shown(path, root))


def _read(path: str, shown: str) -> RunRecord:
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise FatalError(f"{shown}: cannot read index entry: {exc}") from exc
    return parse_entry(text, shown)


def parse_entry(text: str, shown: str) -> RunRecord:
    """The record an entry's text holds; FatalError naming `shown` when it is not a
    valid entry (any JSON at all: nothing else escapes)."""
    try:
        record = RunRecord.from_json(text)
        _check_types(record)
    except (ValueError, TypeError) as exc:
        raise FatalError(
            f"{shown}: corrupt index entry ({exc}). Restore it from git "
            f"(`git checkout <good-commit> -- {shown}`) or republish the run from its "
            "run.json with `ftops index reconcile`"
        ) from exc
    return record


def load_index(root: Path) -> list[RunRecord]:
    """Every entry under `root` (the outputs-index/ directory), sorted by entry path.

    Raises FatalError naming the file for a corrupt entry or one whose path does not
    match its content.
    """
    return _load_rels(root, _entry_rels(root))


def count_entries(root: Path) -> int:
    """How many entry files `root` holds (a listing: none is read, nothing sorted)."""
    if not root.is_dir():
        return 0
    return sum(1 for _dirpath, _dirs, files in os.walk(root)
               for f in files if f.endswith(ENTRY_SUFFIX))


def _entry_rels(root: Path) -> list[str]:
    """Entry paths (*.json) relative to `root`, sorted by path components."""
    if not root.is_dir():
        return []
    base = os.path.join(str(root), "")
    rels: list[str] = []
    for dirpath, _dirs, files in os.walk(base):
        sub = dirpath[len(base) :].replace(os.sep, "/")
        rels.extend(f"{sub}/{f}" if sub else f for f in files if f.endswith(".json"))
    rels.sort(key=lambda rel: rel.split("/"))
    return rels


def _load_rels(root: Path, rels: list[str]) -> list[RunRecord]:
    base = os.path.join(str(root), "")
    return [_placed(_read(base + rel, f"{root.name}/{rel}"), rel, f"{root.name}/{rel}")
            for rel in rels]


def entries_of(texts: dict[str, str], shown: str = INDEX_DIR) -> list[RunRecord]:
    """The records of these entry texts ({path relative to outputs-index/: text}, e.g.
    read from git), sorted by path; FatalError naming the file as `load_index`."""
    return [_placed(parse_entry(texts[rel], f"{shown}/{rel}"), rel, f"{shown}/{rel}")
            for rel in sorted(texts, key=lambda rel: rel.split("/"))]


def _placed(record: RunRecord, rel: str, shown: str) -> RunRecord:
    """`record`, stored at `rel`, when that is where its content says it belongs."""
    try:
        check_key(record)
    except FatalError as exc:
        raise FatalError(f"{shown}: {exc}") from exc
    if rel != record.index_key:
        raise FatalError(
            f"{shown}: entry is stored at the wrong path; its content says "
            f"outputs-index/{record.index_key}. Move it there (git mv) or fix its "
            "dataset/model/experiment/run_id"
        )
    return record


def write_entry(root: Path, record: RunRecord) -> Path:
    """Write (merge) one run's entry under `root`; returns its path.

    The stored entry is replaced only by a record of an equal or later lifecycle
    status (see `merge_records`); an entry is never deleted.
    """
    path, _ = merge_entry(root, record)
    return path


def merge_entry(root: Path, record: RunRecord, *, replace_equal: bool = True) -> tuple[Path, bool]:
    """Like `write_entry`, also saying whether the file changed."""
    check_key(record)
    # a committed symlink (outputs-index/<dataset> -> /elsewhere) is never written through
    path = confined(root.parent, root / record.index_key, f"{INDEX_DIR}/")
    existing = read_entry(path, root) if path.exists() else None
    winner = merge_records(existing, record, replace_equal=replace_equal)
    text = winner.to_json()
    if existing is not None and path.read_text(encoding="utf-8") == text:
        return path, False
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, text.encode("utf-8"))
    return path, True


def load_by_dataset(root: Path) -> Iterator[tuple[str, list[RunRecord]]]:
    """(dataset folder, its entries) in order, one dataset loaded at a time."""
    rels = _entry_rels(root)
    for dataset, group in groupby(rels, key=lambda rel: rel.split("/", 1)[0]):
        yield dataset, _load_rels(root, list(group))


def load_folder(root: Path, dataset: str, model: str) -> list[RunRecord]:
    """The entries of one <dataset>/<model> folder (none when it is absent); FatalError
    naming the file for a corrupt one, as `load_index`."""
    folder = os.path.join(str(root), dataset, model)
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return _load_rels(root, sorted(f"{dataset}/{model}/{n}" for n in names
                                   if n.endswith(ENTRY_SUFFIX)))


_STR_FIELDS = (
    "run_id", "experiment", "experiment_path", "dataset", "model", "config_hash",
    "git_sha", "image", "owner", "mode", "gpu_type", "jobset", "status",
    "artifacts_uri", "artifacts_url", "loss_curve", "tracker_url", "message",
)  # fmt: skip


_INT_RANGES = {"nodes": (0, 100_000), "gpus_per_node": (0, 100_000), "rerun": (0, 100_000),
               "restarts": (0, 100_000), "schema_version": (0, 100_000)}
_EXIT_CODES = (-(2**31), 2**31)


def _number(value: object) -> bool:
    """A JSON number that every reader can use as a float: not a bool, finite, and in
    a float's range (a 400-digit integer or 1e999 is not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_types(record: RunRecord) -> None:
    for name in _STR_FIELDS:
        value = getattr(record, name)
        if not isinstance(value, str):
            raise ValueError(f"{name!r} must be a string, got {type(value).__name__}")
    if record.status not in STATUS_RANK:
        raise ValueError(f"unknown status {record.status!r} (use one of {', '.join(STATUSES)})")
    for name in ("started_at", "finished_at"):
        value = getattr(record, name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{name!r} must be a string or null, got {type(value).__name__}")
    for name, (low, high) in _INT_RANGES.items():
        value = getattr(record, name)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"{name!r} must be an integer from {low} to {high}")
    code = record.exit_code
    if code is not None and (isinstance(code, bool) or not isinstance(code, int)
                             or not _EXIT_CODES[0] <= code < _EXIT_CODES[1]):
        raise ValueError("'exit_code' must be a 32-bit integer or null")
    metrics: Metrics = record.metrics
    for name, value in vars(metrics).items():
        if value is not None and not _number(value):
            raise ValueError(f"metrics.{name} must be a finite number or null, "
                             f"got {_short(value)}")
    if record.duration_s is not None and not _number(record.duration_s):
        raise ValueError(f"'duration_s' must be a finite number or null, "
                         f"got {_short(record.duration_s)}")
    for name in ("hyperparameters", "resolved_config", "sweep"):
        value = getattr(record, name)
        if not isinstance(value, dict):
            raise ValueError(f"{name!r} must be an object")
        _check_values(name, value)
    if "label" in record.sweep and not isinstance(record.sweep["label"], str):
        raise ValueError("'sweep.label' must be a string")
    if not isinstance(record.needs, list) or not all(isinstance(n, dict) for n in record.needs):
        raise ValueError("'needs' must be a list of objects")
    for need in record.needs:
        _check_values("needs", need)
    _check_loss_points(record.loss_points)
    if not isinstance(record.evaluations, dict):
        raise ValueError("'evaluations' must be an object")
    for name, evaluation in record.evaluations.items():
        if not _EVAL_NAME.fullmatch(name):
            raise ValueError(f"evaluation name {name!r} must be 1-40 characters from "
                             "a-z 0-9 _ - starting with a letter or digit")
        evaluation.check(name)


def _check_values(name: str, data: dict[str, object]) -> None:
    """Every number inside `data` is usable (see `_number`); walked without recursion,
    so any nesting json.loads accepted is checked."""
    stack: list[object] = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, int | float) and not isinstance(value, bool) \
                and not _number(value):
            raise ValueError(f"{name!r} holds a number no reader can use: {_short(value)}")


def _short(value: object) -> str:
    """A value for a message: numbers of any size stay one short line."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**15:
        return f"an integer of {len(str(abs(value)))} digits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_loss_points(points: object) -> None:
    if not isinstance(points, list):
        raise ValueError("'loss_points' must be a list of [step, loss] pairs")
    if len(points) > MAX_LOSS_POINTS:
        raise ValueError(f"'loss_points' holds {len(points)} pairs; at most {MAX_LOSS_POINTS}")
    if not points:
        return
    if not {list, tuple}.issuperset(map(type, points)) or {2} != set(map(len, points)):
        raise ValueError("'loss_points' must be a list of [step, loss] pairs")
    flat = list(chain.from_iterable(points))
    if not _NUMBER_TYPES.issuperset(map(type, flat)) or not _all_numbers(flat):
        raise ValueError("'loss_points' values must be finite numbers")
    steps = flat[0::2]
    if not all(map(operator.lt, steps, steps[1:])):
        raise ValueError("'loss_points' steps must increase")


def _all_numbers(values: list[int | float]) -> bool:
    """`_number` of every one of these ints and floats, in one C loop when it can: an
    exact sum that is finite means none is inf, nan or beyond a float's range (those
    make it inf or nan, or raise); otherwise each is looked at."""
    try:
        if math.isfinite(math.fsum(values)):
            return True
    except (OverflowError, ValueError):  # a huge int or sum, or inf + -inf
        pass
    return all(map(_number, values))


def _shown(path: Path, root: Path | None) -> str:
    if root is not None:
        try:
            return (Path(root.name) / path.relative_to(root)).as_posix()
        except ValueError:
            pass
    return str(path)


def entries_by_experiment(root: Path, dataset: str, model: str) -> dict[str, list[Path]]:
    """The entry files of one <dataset>/<model> folder by experiment name (a listing
    only: read them with `read_entry`)."""
    folder = root / dataset / model
    by_name: dict[str, list[Path]] = {}
    if folder.is_dir():
        for entry in sorted(folder.glob(f"*{ENTRY_SEPARATOR}*{ENTRY_SUFFIX}")):
            by_name.setdefault(entry.name.rsplit(ENTRY_SEPARATOR, 1)[0], []).append(entry)
    return by_name


def model_runs(root: Path, dataset: str, model: str) -> list[RunRecord]:
    """The entries of one <dataset>/<model> folder; entries that do not parse are left
    out (`ftops index check` reports them)."""
    runs = []
    for paths in entries_by_experiment(root, dataset, model).values():
        for path in paths:
            try:
                runs.append(read_entry(path, root))
            except FatalError:
                continue
    return runs
