"""A local directory as artifact storage: NFS/CephFS mounts, the local flow, tests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from render.errors import FatalError
from render.fsutil import TMP_PREFIX, atomic_write
from render.record.storage.base import (
    _CHUNK,
    Storage,
    UploadReport,
    _fail_list,
    _join,
    _key_prefix,
    _LocalFile,
    _scan_dir,
    _sha256,
    clean_key,
)


class FileStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root.absolute()
        if self.root.exists() and not self.root.is_dir():
            raise FatalError(f"storage root {self.root} exists and is not a directory")

    def __repr__(self) -> str:
        return f"FileStorage({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        k = clean_key(key)
        return self.root / k if k else self.root

    def uri(self, key: str = "") -> str:
        return self._path(key).as_uri()

    def browse_url(self, key: str = "") -> str:
        return self.uri(key)

    def read_text(self, key: str) -> str | None:
        path = self._path(key)
        try:
            return path.read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return None
        except OSError as exc:
            raise FatalError(f"cannot read {path}: {exc.strerror or exc}") from None

    def write_text(self, key: str, text: str) -> None:
        path = self._path(key)
        if not clean_key(key):
            raise FatalError("write_text needs a key below the storage root")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text.encode("utf-8"), durable=True)
        except OSError as exc:
            raise FatalError(f"cannot write {path}: {exc.strerror or exc}") from None

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list_keys(self, prefix: str = "", suffix: str = "") -> list[str]:
        # `prefix` is a string prefix of the key (as on GCS), not necessarily a directory.
        want = _key_prefix(prefix)
        base = self._path(want.rsplit("/", 1)[0] if "/" in want else "")
        keys: list[str] = []
        for dirpath, _dirs, filenames in os.walk(base):  # a missing base yields nothing
            for name in filenames:
                if name.startswith(TMP_PREFIX):
                    continue
                key = Path(dirpath, name).relative_to(self.root).as_posix()
                if key.startswith(want) and key.endswith(suffix):
                    keys.append(key)
        return sorted(keys)

    def upload_dir(self, local_dir: Path, key_prefix: str, *, workers: int = 8) -> UploadReport:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        started = time.monotonic()
        prefix = clean_key(key_prefix, what="key prefix")
        files = _scan_dir(local_dir)
        dest_root = self._path(prefix)
        report = UploadReport()
        problems: dict[str, str] = {}

        def one(f: _LocalFile) -> tuple[str, str | None, int]:
            dest = dest_root / f.rel
            key = _join(prefix, f.rel)
            try:
                if self._same_file(f, dest):
                    return "skipped", None, 0
                for _attempt in range(2):  # a copy that reads back different is redone once
                    if self._copy_verified(f.path, dest):
                        return "uploaded", None, f.size
                return "failed", "checksum mismatch after copying twice", f.size
            except OSError as exc:
                return "failed", f"{exc.strerror or exc} ({key})", 0

        with ThreadPoolExecutor(max_workers=workers) as pool:
            for f, (outcome, why, sent) in zip(files, pool.map(one, files), strict=True):
                key = _join(prefix, f.rel)
                report.bytes_sent += sent
                if outcome == "skipped":
                    report.skipped.append(key)
                elif outcome == "uploaded":
                    report.uploaded.append(key)
                else:
                    problems[key] = why or "failed"
        report.seconds = time.monotonic() - started
        if problems:
            raise _fail_list(problems, len(report.uploaded) + len(report.skipped), self.uri(prefix))
        return report

    @staticmethod
    def _same_file(f: _LocalFile, dest: Path) -> bool:
        try:
            st = dest.stat()
        except FileNotFoundError:
            return False
        if stat.S_ISDIR(st.st_mode):
            raise FatalError(f"cannot store {f.path} at {dest}: a directory is in the way")
        if st.st_size != f.size:
            return False
        if st.st_mtime_ns == f.path.stat().st_mtime_ns:
            return True  # copies keep the source mtime: same size + mtime = same file
        return _sha256(dest) == _sha256(f.path)

    @staticmethod
    def _copy_verified(src: Path, dest: Path) -> bool:
        """Copy via a temp file, renamed into place only if it reads back identical.

        The copy keeps the source's mtime, so the next upload skips it on size + mtime.
        """
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=TMP_PREFIX + dest.name + ".")
        try:
            sent = hashlib.sha256()
            with os.fdopen(fd, "wb") as out, src.open("rb") as fh:
                while chunk := fh.read(_CHUNK):
                    sent.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if _sha256(Path(tmp)) != sent.hexdigest():
                os.unlink(tmp)
                return False
            st = src.stat()
            os.chmod(tmp, 0o644)
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(tmp, dest)
            return True
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
