"""Writing files so that readers never see half of one: the one atomic writer.

`atomic_write` writes a temporary file in the same folder and renames it over the target
(`os.replace`), so a reader sees the old bytes or the new ones; a symlink at the target is
replaced, never followed. Used for index entries, generated READMEs and SVGs, and local
artifact storage.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

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
