"""Writing files so that readers never see half of one: the one atomic writer; and the
one check that a path inside a checkout does not pass through a symlink.

`atomic_write` writes a temporary file in the same folder and renames it over the target
(`os.replace`), so a reader sees the old bytes or the new ones; a symlink at the target is
replaced, never followed. Used for index entries, generated READMEs and SVGs, and local
artifact storage.

`symlink_under(base, path)` finds a symlink between a folder we own (a checkout, a
clone, the render output) and a path in it. A committed symlink can point anywhere:
reading through it ships a file from outside into a ConfigMap, writing or deleting
through it changes files outside. Callers refuse such paths (`confined` raises).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from render.errors import FatalError

TMP_PREFIX = ".ftops-tmp-"  # temporary files start with this (listings skip them)


def atomic_write(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Create or replace `path` with `data` atomically (the folder must exist).

    `durable` also fsyncs the bytes before the rename (artifacts that must survive a
    crash of the machine, not only of the process)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_new(path: Path, data: bytes) -> None:
    """Write a file that did not exist (one syscall fewer than a replace: most of a first
    README generation over a large index); if it appeared meanwhile, replace it. A crash
    may leave it short: whoever compares it with what it should hold rewrites it."""
    try:
        with open(path, "xb") as fh:
            fh.write(data)
    except FileExistsError:
        atomic_write(path, data)


def symlink_under(base: Path, path: Path) -> Path | None:
    """The first component of `path` below `base` (`path` itself included) that is a
    symlink, or None. `path` must be `base` or lie (lexically) under it."""
    top = os.path.normpath(base)
    rel = os.path.relpath(os.path.normpath(path), top)
    if rel == ".":
        return None
    current = top
    for part in rel.split(os.sep):
        current = os.path.join(current, part)
        if os.path.islink(current):
            return Path(current)
    return None


def confined(base: Path, path: Path, what: str) -> Path:
    """`path` when nothing between `base` and it is a symlink; else a FatalError saying
    which one (ftops never reads or writes through a symlink in a folder it owns)."""
    link = symlink_under(base, path)
    if link is not None:
        raise FatalError(f"{link} is a symbolic link; ftops does not follow links in {what} "
                         f"(it could point outside it): replace it with a real folder or "
                         "file, or remove it")
    return path
