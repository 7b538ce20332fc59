"""The storage interface and what both backends share: keys, local trees, checksums."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import stat
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from render.errors import FatalError

ACCEPTED_FORMS = "gs://<bucket>[/<prefix>], file:///<absolute/path>, or a local directory path"
CONSOLE_BROWSER = "https://console.cloud.google.com/storage/browser"
_CHUNK = 1 << 20
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


@dataclass
class UploadReport:
    """What `upload_dir` did. Names are storage keys (`<key_prefix>/<relative path>`)."""

    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_sent: int = 0
    seconds: float = 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes_sent / 1e6 / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------------------------------
# keys and local trees


def clean_key(key: str, *, what: str = "storage key") -> str:
    """Normalise a `/`-separated key: drop empty and `.` parts; refuse `..` and backslashes."""
    parts = [p for p in key.split("/") if p not in ("", ".")]
    if ".." in parts or "\\" in key:
        raise FatalError(
            f"invalid {what} {key!r}: use '/'-separated names below the storage root "
            "(no '..' or '\\')"
        )
    return "/".join(parts)


def _join(*keys: str) -> str:
    return "/".join(k for k in keys if k)


def _key_prefix(prefix: str) -> str:
    """A list prefix, cleaned; a trailing '/' is kept (it restricts to a "directory")."""
    cleaned = clean_key(prefix, what="key prefix")
    return cleaned + "/" if cleaned and prefix.endswith("/") else cleaned


@dataclass(frozen=True)
class _LocalFile:
    rel: str  # posix path relative to the uploaded directory
    path: Path
    size: int


def _scan_dir(local_dir: Path) -> list[_LocalFile]:
    """Regular files below `local_dir` (symlinks followed), sorted by relative path."""
    if not local_dir.is_dir():
        raise FatalError(f"cannot upload {local_dir}: not a directory")
    found: list[_LocalFile] = []
    for dirpath, dirnames, filenames in os.walk(local_dir, followlinks=False):
        dirnames.sort()
        for name in filenames:
            path = Path(dirpath, name)
            try:
                st = path.stat()
            except OSError as exc:
                raise FatalError(f"cannot upload {path}: {exc.strerror or exc}") from None
            if not stat.S_ISREG(st.st_mode):
                continue  # sockets, fifos, devices
            rel = path.relative_to(local_dir).as_posix()
            if "\\" in rel:
                raise FatalError(f"cannot upload {path}: '\\' in a file name is not supported")
            found.append(_LocalFile(rel=rel, path=path, size=st.st_size))
    return sorted(found, key=lambda f: f.rel)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _crc32c_b64(path: Path) -> str:
    """CRC32C of a file, base64 of the big-endian bytes: the form GCS reports."""
    import google_crc32c

    checksum: Any = google_crc32c.Checksum  # the package's stubs leave it untyped
    crc = checksum()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc.update(chunk)
    return base64.b64encode(crc.digest()).decode("ascii")


def _fail_list(problems: dict[str, str], done: int, where: str) -> FatalError:
    """One line of message; the files, one per line, as details (printed before it)."""
    return FatalError(
        f"{len(problems)} file(s) could not be stored in {where} "
        f"({done} other file(s) were stored and verified; see above). "
        "Run the upload again: files already stored intact are skipped.",
        tuple(f"  {key}: {why}" for key, why in sorted(problems.items())),
    )


# ---------------------------------------------------------------------------------------
# the interface


class Storage(ABC):
    """Artifact storage rooted at one location; every method takes keys relative to it."""

    @abstractmethod
    def uri(self, key: str = "") -> str:
        """Canonical URI: gs://bucket/path or file:///path."""

    @abstractmethod
    def browse_url(self, key: str = "") -> str:
        """A link a person can open (GCS console, or the file:// URI)."""

    @abstractmethod
    def read_text(self, key: str) -> str | None:
        """UTF-8 text of the object, or None if it does not exist."""

    @abstractmethod
    def write_text(self, key: str, text: str) -> None:
        """Create or replace the object atomically (readers never see half of it)."""

    @abstractmethod
    def exists(self, key: str) -> bool:
        """True if an object (file) exists at `key`."""

    @abstractmethod
    def list_keys(self, prefix: str = "", suffix: str = "") -> list[str]:
        """All keys starting with `prefix` and ending with `suffix`, recursive, sorted."""

    @abstractmethod
    def upload_dir(self, local_dir: Path, key_prefix: str, *, workers: int = 8) -> UploadReport:
        """Copy a directory tree to `<key_prefix>/`, sending only what is missing or differs."""
