"""What ftops keeps between its processes, in this user's cache folder.

`$XDG_CACHE_HOME/ftops/<name>` (by default `~/.cache/ftops/<name>`): the compiled
schema checks (`schema-checks`, see `render.propose.schema`), the parsed experiment
files (`parsed-yaml`, see `render.propose.yamlsource`) and the compiled templates
(`jinja`, see `render.markdown`). They hold `marshal` data, which
Python trusts as it trusts its own `__pycache__`: a file is read back only when this
user owns it and no one else can write it. Writes are atomic; a cache that cannot be
read or written (a read-only home, a full disk) means "not cached", never an error.
"""

from __future__ import annotations

import marshal
import os
from pathlib import Path
from typing import Any

from render.fsutil import atomic_write


def cache_dir(name: str) -> Path:
    """`$XDG_CACHE_HOME/ftops/<name>`, by default `~/.cache/ftops/<name>`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ftops" / name


def read_own(path: Path) -> bytes | None:
    """The bytes of `path` when it is this user's own file that no one else can write,
    else None (missing, someone else's, group- or world-writable, unreadable)."""
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if info.st_uid != os.getuid() or info.st_mode & 0o022:
                return None
            return fh.read()
    except OSError:
        return None


def load_marshal(path: Path) -> Any:
    """The marshal data of `path` when `read_own` gives its bytes and they are marshal
    data, else None."""
    raw = read_own(path)
    if raw is None:
        return None
    try:
        return marshal.loads(raw)  # noqa: S302 - this user's own file (see above)
    except (EOFError, ValueError, TypeError):
        return None


def write_quietly(path: Path, data: bytes) -> None:
    """Create or replace `path` atomically, making its folder; a failure is ignored
    (the next process computes the value again)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    except OSError:
        pass

