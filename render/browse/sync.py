"""Keeping the generated files of `outputs-index/` in step with its entries.

`write_readme(root)` (`ftops index readme`) regenerates every generated file from the
entry files (and the leaderboards named in the repository around `root`:
`render.browse.leaderboard`) and removes generated files that no entry produces any
more (entry JSON files are never touched); `stale_files(root)` (`ftops index check`)
says which would change. Entries are read one dataset at a time, so memory stays
bounded by the largest dataset, and a file is rewritten only when its bytes change.

`update_readme(root, changed)` (the publisher) does what `write_readme` does after a
change to some dataset/model folders, regenerating only what they affect from them and
the summary (`render.browse.update`).

Generated names: `README.md` and `summary.jsonl` at the top, `README.md`, `runs.csv` and
`*.svg` in each dataset folder, `README.md` and `*.svg` in each dataset/model folder. A
`runs.csv` at the top (one for every run, written before each dataset had its own) is a
generated file no entry produces any more: regenerating removes it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

from render.browse import verified
from render.browse.leaderboard import Boards, load_boards
from render.browse.readme import README_NAME, generate
from render.browse.runlog import RUNS_CSV
from render.browse.summary import SUMMARY_NAME
from render.browse.svg import SVG_SUFFIX
from render.browse.update import NeedsFull, OnDisk, Tree, updated_files
from render.fsutil import atomic_write, confined, create_new
from render.record.index import ENTRY_SUFFIX, count_entries, load_by_dataset

TOP_FILES = (README_NAME, SUMMARY_NAME)  # the generated files at the top
_TOP_NAMES = (*TOP_FILES, RUNS_CSV)  # and one written before (removed as stale)


def write_readme(root: Path, boards: Boards | None = None) -> Path:
    """Regenerate every generated file under `root` from the entry files: the map
    (README.md), the summary, one leaderboard README and runs.csv per dataset (and the
    SVG of its top runs), one README per dataset/model and one SVG loss chart per run with loss
    points; remove generated files that no entry produces any more (entry JSON files
    are never touched). Returns the path of the top README. `boards` defaults to the
    leaderboards of the repository `root` is in (`root.parent`).

    Entries are read one dataset at a time, so memory stays bounded by the largest
    dataset, and a file is rewritten only when its bytes change."""
    _sync_generated(root, boards, write=True)
    return root / README_NAME


def update_readme(root: Path, changed: Iterable[tuple[str, str]],
                  boards: Boards | None = None, tree: Tree | None = None) -> list[str]:
    """After the entries of the `changed` (dataset, model) folders changed, bring the
    generated files under `root` to what `write_readme` would write, regenerating only
    what those folders affect (`render.browse.update`); `tree` is where it reads them
    (default: `root`, which holds them all). Falls back to `write_readme` where the
    summary cannot say. Returns the generated paths written or removed."""
    if boards is None:
        boards = load_boards(root.resolve().parent)
    try:
        files, scope = updated_files(root, changed, boards, tree or OnDisk(root))
    except NeedsFull:
        return _sync_generated(root, boards, write=True)
    on_disk = _scan_scope(root, scope)
    differ = _sync_files(root, files, on_disk, write=True)
    stale = sorted(rel for rel in on_disk if rel not in files)
    _remove(root, stale)
    return sorted(differ + stale)


def check_readme(root: Path, boards: Boards | None = None) -> bool:
    """True when every generated file under `root` is exactly what `write_readme`
    would write, and there is no generated file that no entry produces."""
    return not stale_files(root, boards)


def stale_files(root: Path, boards: Boards | None = None) -> list[str]:
    """Generated paths (relative to `root`) that `write_readme` would write, rewrite
    or remove; empty when the generated files are current."""
    return _sync_generated(root, boards, write=False)


def check_files(root: Path, boards: Boards | None = None) -> tuple[list[str], int]:
    """`stale_files`, and how many entry files `root` holds (counted from the scan the
    check began with, where it took one)."""
    seen: list[verified.Snapshot] = []
    stale = _sync_generated(root, boards, write=False, seen=seen)
    if not seen:
        return stale, count_entries(root)
    return stale, sum(1 for folder, files in seen[0].folders.items() if folder.count("/") == 2
                      for name in files if name.endswith(ENTRY_SUFFIX))


def generated_files(root: Path) -> list[str]:
    """Paths (relative to `root`) of the generated files present under `root`."""
    return sorted(_scan_generated(root))


def _scan_generated(root: Path) -> dict[str, bool]:
    """Generated-namespace paths present under `root` -> whether each is a plain file
    (a symlink or anything else is replaced or removed, never read or followed)."""
    found: dict[str, bool] = {}
    if not root.is_dir():
        return found
    base = str(root)
    with os.scandir(base) as top:
        for d in top:
            if d.name in _TOP_NAMES:
                found[d.name] = d.is_file(follow_symlinks=False)
            if d.name.startswith(".") or not d.is_dir(follow_symlinks=False):
                continue
            with os.scandir(d.path) as models:
                for m in models:
                    is_dir = m.is_dir(follow_symlinks=False)
                    if not is_dir and (_generated_name(m.name) or m.name == RUNS_CSV):
                        found[f"{d.name}/{m.name}"] = m.is_file(follow_symlinks=False)
                    if m.name.startswith(".") or not is_dir:
                        continue
                    prefix = f"{d.name}/{m.name}/"
                    with os.scandir(m.path) as it:
                        for f in it:
                            if _generated_name(f.name):
                                found[prefix + f.name] = f.is_file(follow_symlinks=False)
    return found


def _generated_name(name: str) -> bool:
    return name == README_NAME or (name.endswith(SVG_SUFFIX) and not name.startswith("."))


def _sync_generated(root: Path, boards: Boards | None, *, write: bool,
                    seen: list[verified.Snapshot] | None = None) -> list[str]:
    """Compare (and with `write`, make) the generated files under `root` with what
    the entries produce; returns the paths that differ, are missing or are stale.
    Only the folders changed since the files were last known current are redone, when
    that is known (`render.browse.verified`)."""
    if boards is None:
        boards = load_boards(root.resolve().parent)
    fp = verified.fingerprint(boards)
    state = verified.load(root, fp)
    before = verified.scan(root)
    if before is not None and seen is not None:
        seen.append(before)
    folders = (verified.changed_folders(state, before.folders)
               if state is not None and before is not None else None)
    if folders is not None and not folders:
        return []  # nothing changed since they were current
    result = None
    if folders is not None:
        with contextlib.suppress(NeedsFull):
            result = _sync_folders(root, folders, boards, write=write)
    if result is None:
        result = _sync_all(root, boards, write=write)
    if write or not result:
        verified.save(root, fp, before, result if write else ())
    return result


def _sync_folders(root: Path, folders: set[tuple[str, str]], boards: Boards, *,
                  write: bool) -> list[str]:
    """`_sync_generated` of what these folders affect (raises NeedsFull)."""
    files, scope = updated_files(root, folders, boards, OnDisk(root))
    on_disk = _scan_scope(root, scope)
    differ = _sync_files(root, files, on_disk, write=write)
    stale = sorted(rel for rel in on_disk if rel not in files)
    if write:
        _remove(root, stale)
    return sorted(differ + stale)


def _sync_all(root: Path, boards: Boards, *, write: bool) -> list[str]:
    on_disk = _scan_generated(root)
    differ: list[str] = []
    expected: set[str] = set()
    for batch in generate(load_by_dataset(root), boards):  # one dataset at a time
        expected.update(batch)
        differ += _sync_files(root, batch, on_disk, write=write)
    stale = sorted(rel for rel in on_disk if rel not in expected)
    differ += stale
    if write:
        _remove(root, stale)
    return sorted(differ)


def _remove(root: Path, stale: list[str]) -> None:
    for rel in stale:
        path = root / rel
        path.unlink(missing_ok=True)
        for folder in (path.parent, path.parent.parent):
            with contextlib.suppress(OSError):  # not empty: keep it
                folder.rmdir()


def _scan_scope(root: Path, scope: list[str]) -> dict[str, bool]:
    """`_scan_generated` of some folders only: "" (the top files), "<dataset>/" (a
    dataset's own files) and "<dataset>/<model>/"."""
    found: dict[str, bool] = {}
    for folder in scope:
        try:
            it = os.scandir(os.path.join(str(root), folder))
        except (FileNotFoundError, NotADirectoryError):
            continue
        with it:
            for f in it:
                if not f.is_dir(follow_symlinks=False) and is_generated(folder, f.name):
                    found[folder + f.name] = f.is_file(follow_symlinks=False)
    return found


def is_generated(folder: str, name: str) -> bool:
    """Whether `name` in this folder ("" for the top of outputs-index/, "<dataset>/",
    "<dataset>/<model>/") is a generated file's name."""
    if not folder:
        return name in _TOP_NAMES
    return _generated_name(name) or (name == RUNS_CSV and folder.count("/") == 1)


def _sync_files(
    root: Path, files: dict[str, str], on_disk: dict[str, bool], *, write: bool
) -> list[str]:
    """The paths of `files` whose bytes under `root` differ (with `write`: rewritten).
    `on_disk` is `_scan_generated(root)` from before (a path missing from it, or not
    a plain file, is written without being read)."""
    differ: list[str] = []
    made: set[str] = set()
    for rel, text in files.items():
        data = text.encode("utf-8")
        if on_disk.get(rel) and _read_bytes(root, rel) == data:
            continue
        differ.append(rel)
        if write:
            # never write into a linked folder (a link at the file itself is replaced)
            confined(root.parent, (root / rel).parent, "outputs-index/")
            parent = rel.rpartition("/")[0]
            if parent and parent not in made:
                (root / parent).mkdir(parents=True, exist_ok=True)
                made.add(parent)
            if rel in on_disk:
                atomic_write(root / rel, data)
            else:
                create_new(root / rel, data)
    return differ


def _read_bytes(root: Path, rel: str) -> bytes | None:
    try:
        with open(os.path.join(str(root), rel), "rb") as fh:
            return fh.read()
    except OSError:
        return None
