"""What `outputs-index/` looked like when its generated files were last known current,
so `ftops index readme` and `ftops index check` redo only the folders changed since.

Reading and rendering every entry costs ~0.5 ms a run (~50 s at 100,000). After a
regeneration or a check that found nothing stale, ftops keeps, in this user's cache
(`render.usercache`, `index-state/`), a digest of each of the index's top, dataset and
dataset/model folders: the names of its files and their lstat signatures (type and
mode, size, mtime, ctime, inode), with a fingerprint of the leaderboards and of ftops's
own code. The next run scans the same folders and compares, as git compares its index
with the working tree:

- nothing differs: the generated files are current (the scan: ~1.5 s at 100,000 runs,
  one lstat per file);
- some dataset/model folders differ (an entry added, edited or removed, a README or
  SVG there touched): those folders are regenerated from their entries, with their
  datasets' files and the map, from the summary (`render.browse.update`, as a publish
  does), and compared with the files on disk;
- a dataset's own folder differs (its README, runs.csv, an SVG): every folder of that
  dataset is redone;
- anything else (a top file, a linked folder, other leaderboards, another ftops, no
  state, a state this user does not own alone): everything is read and regenerated,
  as before.

A file changed within `RACY_NS` of the scan that signed it could keep its signature (a
coarse file clock), so its folder is not kept: it counts as changed next time ("racily
clean", as git says). A file someone else changes while a run reads the index no
longer matches the signature the run began with, so its folder is redone next time too.
Only a change that keeps size, both times and inode would pass unseen; ctime cannot be
set by a user. The state is a speed-up where the files are this user's to trust: it
is this user's, for this folder (by real path); CI's fresh clone has none and checks
everything.
"""
from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import platform
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import jinja2

from render.browse.leaderboard import Boards
from render.record.index import ENTRY_SUFFIX
from render.usercache import cache_dir, load_marshal, write_quietly

FORMAT = 2
RACY_NS = 100_000_000  # 0.1 s: coarser than any file clock we know of
KEEP = 64  # states kept (one per index folder); the least recently saved go first
_PACKAGE = Path(__file__).resolve().parent.parent  # render/

Signature = tuple[int, int, int, int, int]  # mode, size, mtime_ns, ctime_ns, inode
Scan = dict[str, dict[str, Signature]]  # folder ("", "<d>/", "<d>/<m>/") -> name -> sig
Digest = tuple[int, int, int]


@dataclass(frozen=True)
class State:
    fingerprint: str
    folders: dict[str, Digest]  # the folders known current (none with a racy file)


@dataclass(frozen=True)
class Snapshot:
    began_ns: int  # when the scan began (a file changed since may keep its signature)
    folders: Scan


def fingerprint(boards: Boards) -> str:
    """The leaderboards, ftops's code (every module and template of `render/`) and the
    Python and Jinja that run it: a state kept under other ones says nothing."""
    digest = hashlib.sha256(f"{boards!r} {platform.python_version()} {jinja2.__version__}"
                            .encode())
    for path in sorted(_PACKAGE.rglob("*")):
        if path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    return digest.hexdigest()


def scan(root: Path) -> Snapshot | None:
    """The signature of every file in the top, dataset and dataset/model folders of
    `root` (hidden files skipped, as the generated files are); None when the entry
    loader would read something the signatures do not cover, so the full regeneration
    decides (and says what is wrong): a symbolic link (it is followed), a folder inside
    a dataset/model folder or a hidden folder (the loader walks every level), a `.json`
    outside a dataset/model folder or a hidden one (read, and refused as misplaced), or
    `root` not a folder."""
    began = time.time_ns()
    found: Scan = {}
    try:
        if not _scan_folder(str(root), "", 2, found):
            return None
    except (FileNotFoundError, NotADirectoryError):
        return None
    return Snapshot(began, found)


def _scan_folder(path: str, folder: str, depth: int, found: Scan) -> bool:
    """Sign the files of `folder` ("", "<d>/" or "<d>/<m>/", at `path`) into `found`,
    and those of its subfolders `depth` levels down; False for a link among them."""
    files: dict[str, Signature] = {}
    found[folder] = files
    below: list[os.DirEntry[str]] = []
    with os.scandir(path) as it:
        for e in it:
            if e.is_symlink():
                return False
            is_dir = e.is_dir(follow_symlinks=False)
            if e.name.startswith("."):
                if is_dir or e.name.endswith(ENTRY_SUFFIX):
                    return False
                continue
            if is_dir:
                if not depth:
                    return False
                below.append(e)
                continue
            if depth and e.name.endswith(ENTRY_SUFFIX):
                return False
            st = e.stat(follow_symlinks=False)
            files[e.name] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    return all(_scan_folder(e.path, f"{folder}{e.name}/", depth - 1, found) for e in below)


def digest(files: dict[str, Signature]) -> Digest:
    """One folder's files: how many, a checksum of their names, a hash of their
    signatures in name order (integers: the same in every process)."""
    names = sorted(files)
    return (len(names), zlib.crc32("\0".join(names).encode("utf-8", "surrogateescape")),
            hash(tuple(files[n] for n in names)))


def changed_folders(state: State, now: Scan) -> set[tuple[str, str]] | None:
    """The (dataset, model) folders to redo since `state`, or None: redo everything."""
    old = state.folders
    changed = [f for f, files in now.items() if old.get(f) != digest(files)]
    changed += old.keys() - now.keys()
    folders: set[tuple[str, str]] = set()
    for folder in changed:
        parts = folder.split("/")
        if folder == "":
            return None  # the map, the summary or another top file
        if len(parts) == 2:
            # a dataset's own file: every folder of the dataset is redone, since a
            # regeneration keeps the runs.csv rows of folders it does not redo as they
            # are in the file, the one that changed
            models = {f.split("/")[1] for f in (*old, *now)
                      if f.count("/") == 2 and f.startswith(folder)}
            if not models:
                return None  # no folder to redo it from
            folders.update((parts[0], m) for m in models)
        else:
            folders.add((parts[0], parts[1]))
    return folders


def _path(root: Path) -> Path:
    key = hashlib.sha256(os.path.realpath(root).encode()).hexdigest()[:32]
    return cache_dir("index-state") / f"{key}.marshal"


def load(root: Path, fp: str) -> State | None:
    """The state kept for `root` under fingerprint `fp`, or None."""
    data = load_marshal(_path(root))
    if (not isinstance(data, dict) or data.get("format") != FORMAT
            or data.get("root") != os.path.realpath(root) or data.get("fingerprint") != fp
            or not isinstance(data.get("folders"), dict)):
        return None
    return State(fp, data["folders"])


def save(root: Path, fp: str, before: Snapshot | None, written: Iterable[str] = ()) -> None:
    """Record `root` after a regeneration or a check that found its generated files
    current: the signatures of `before`, the scan taken before that work began (a file
    changed since then no longer matches, so its folder is redone next time), with the
    files it `written` (or removed) signed anew. A folder holding a file changed within
    RACY_NS of its signing is left out (it counts as changed next time); so the files
    written just now are signed once that window has passed."""
    if before is None:
        forget(root)
        return
    folders = dict(before.folders)
    racy = before.began_ns - RACY_NS
    poisoned = {f for f, files in folders.items()
                if any(max(sig[2], sig[3]) >= racy for sig in files.values())}
    names = sorted(set(written))
    if names:
        time.sleep(RACY_NS / 1e9)
        racy = time.time_ns() - RACY_NS
    for rel in names:
        folder, _, name = rel.rpartition("/")
        folder = folder + "/" if folder else ""
        files = folders[folder] = dict(folders.get(folder, {}))
        files.pop(name, None)
        try:
            st = os.lstat(os.path.join(str(root), rel))
        except OSError:
            continue  # removed
        files[name] = (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        if max(st.st_mtime_ns, st.st_ctime_ns) >= racy:
            poisoned.add(folder)
    with contextlib.suppress(OSError):
        kept = sorted(cache_dir("index-state").glob("*.marshal"),
                      key=lambda p: p.stat().st_mtime_ns)
        for old in kept[:max(0, len(kept) - KEEP + 1)]:
            old.unlink()
    write_quietly(_path(root), marshal.dumps({
        "format": FORMAT, "root": os.path.realpath(root), "fingerprint": fp,
        "folders": {f: digest(files) for f, files in folders.items() if f not in poisoned}}))


def forget(root: Path) -> None:
    with contextlib.suppress(OSError):
        _path(root).unlink()
