"""Central artifact storage: one small interface, a GCS bucket or a local directory.

    store = open_storage("gs://my-project-llm/experiments")   # or "/srv/outputs", "file:///..."
    store.upload_dir(Path("/mnt/output"), "wiki/llama3-8b/lora-r8")
    store.write_text("wiki/llama3-8b/lora-r8/run.json", "{...}")

Keys are `/`-separated and relative to the root given to `open_storage`; `..` is refused.

Uploads are resumable by construction: `upload_dir` first compares the local tree with
what is already stored (size + CRC32C for GCS, size + mtime or SHA-256 for files) and sends
only what is missing or different, so after a failure the caller just calls it again.
Nothing at the destination is ever deleted.

GCS credentials come from the environment only: Application Default Credentials
(Workload Identity on GKE, `gcloud auth application-default login` on a laptop). With
`STORAGE_EMULATOR_HOST` set, the client talks to that emulator with anonymous credentials.
The google-cloud-storage library is imported lazily, so `uri()`/`browse_url()` work
without it or without credentials.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import mimetypes
import os
import re
import stat
import tempfile
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from render.errors import FatalError

ACCEPTED_FORMS = "gs://<bucket>[/<prefix>], file:///<absolute/path>, or a local directory path"
CONSOLE_BROWSER = "https://console.cloud.google.com/storage/browser"
_CHUNK = 1 << 20
_TMP_PREFIX = ".ftops-tmp-"
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
    lines = "\n".join(f"  {key}: {why}" for key, why in sorted(problems.items()))
    return FatalError(
        f"{len(problems)} file(s) could not be stored in {where} "
        f"({done} other file(s) were stored and verified):\n{lines}\n"
        "Run the upload again: files already stored intact are skipped."
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


def open_storage(root: str) -> Storage:
    """`gs://bucket/prefix` -> GCSStorage; a local path or `file://` URI -> FileStorage."""
    text = root.strip()
    if not text:
        raise FatalError(f"empty storage root; accepted forms: {ACCEPTED_FORMS}")
    if text.startswith("gs://"):
        bucket, _, prefix = text[len("gs://") :].partition("/")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise FatalError(
                f"invalid storage root {root!r}: {bucket!r} is not a valid bucket name "
                "(3-63 characters of a-z, 0-9, '-', '_', '.'); "
                f"accepted forms: {ACCEPTED_FORMS}"
            )
        return GCSStorage(bucket, clean_key(prefix, what=f"prefix in storage root {root!r}"))
    if text.lower().startswith("file:"):
        parsed = urllib.parse.urlparse(text)
        if not text.lower().startswith("file://") or parsed.netloc not in ("", "localhost"):
            raise FatalError(
                f"invalid storage root {root!r}: a file URI must look like "
                f"file:///absolute/path; accepted forms: {ACCEPTED_FORMS}"
            )
        path = urllib.parse.unquote(parsed.path)
        if not path.startswith("/"):
            raise FatalError(f"invalid storage root {root!r}: accepted forms: {ACCEPTED_FORMS}")
        return FileStorage(Path(path))
    if _SCHEME_RE.match(text):
        scheme = text.split("://", 1)[0]
        raise FatalError(
            f"unsupported storage root {root!r} (scheme {scheme!r}); "
            f"accepted forms: {ACCEPTED_FORMS}"
        )
    return FileStorage(Path(text).expanduser())


# ---------------------------------------------------------------------------------------
# local directory (NFS/CephFS mounts, the local flow, tests)


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
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_TMP_PREFIX + path.name + ".")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(text.encode("utf-8"))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.chmod(tmp, 0o644)
                os.replace(tmp, path)  # atomic: readers see the old or the new file
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
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
                if name.startswith(_TMP_PREFIX):
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
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=_TMP_PREFIX + dest.name + ".")
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


# ---------------------------------------------------------------------------------------
# Google Cloud Storage


@dataclass(frozen=True)
class _Remote:
    size: int
    crc32c: str | None


class GCSStorage(Storage):
    """A bucket prefix, via google-cloud-storage (JSON API; honours STORAGE_EMULATOR_HOST)."""

    #: pauses before the 2nd, 3rd... round of uploads that raised (tests set these to 0)
    retry_delays: tuple[float, ...] = (1.0, 4.0)
    #: how long the client keeps retrying one request on transient errors (5xx, 429,
    #: connection errors) before it gives up; the library's default is 120 s
    request_retry_timeout: float = 120.0

    def __init__(self, bucket: str, prefix: str = "") -> None:
        self.bucket_name = bucket
        self.prefix = prefix
        self._client: Any = None

    def __repr__(self) -> str:
        return f"GCSStorage({self.uri()!r})"

    # -- plumbing --------------------------------------------------------------------
    def _name(self, key: str) -> str:
        return _join(self.prefix, clean_key(key))

    @property
    def client(self) -> Any:
        if self._client is None:
            with self._errors("connect to Google Cloud Storage"):
                from google.cloud import storage

                emulator = os.environ.get("STORAGE_EMULATOR_HOST")
                if emulator:
                    from google.auth import credentials

                    anonymous: Any = credentials.AnonymousCredentials  # untyped upstream
                    project = os.environ.get("GOOGLE_CLOUD_PROJECT") or "test-project"
                    self._client = storage.Client(project=project, credentials=anonymous())
                else:
                    # ADC: Workload Identity on GKE, gcloud ADC locally. Never a key in config.
                    self._client = storage.Client()
        return self._client

    @property
    def _retry(self) -> Any:
        from google.cloud.storage.retry import DEFAULT_RETRY

        return DEFAULT_RETRY.with_timeout(self.request_retry_timeout)

    @property
    def _bucket(self) -> Any:
        return self.client.bucket(self.bucket_name)

    @contextlib.contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Turn the client's exceptions into one-line FatalErrors a person can act on."""
        from google.api_core import exceptions as gexc
        from google.auth import exceptions as aexc

        where = f"gs://{self.bucket_name}"
        try:
            yield
        except FatalError:
            raise
        except aexc.DefaultCredentialsError:
            raise FatalError(
                f"cannot {action}: no Google Cloud credentials found. On GKE use Workload "
                "Identity (ServiceAccount annotation iam.gke.io/gcp-service-account); "
                "locally run `gcloud auth application-default login`; for tests set "
                "STORAGE_EMULATOR_HOST."
            ) from None
        except (gexc.Forbidden, gexc.Unauthorized) as exc:
            raise FatalError(
                f"cannot {action}: access to {where} denied ({exc.message}). Grant the "
                "job's service account roles/storage.objectAdmin on the bucket."
            ) from None
        except gexc.NotFound as exc:
            raise FatalError(
                f"cannot {action}: {where} not found ({exc.message}); create the bucket "
                "or fix the storage root"
            ) from None
        except gexc.GoogleAPICallError as exc:
            raise FatalError(f"cannot {action} in {where}: {exc}") from None
        except gexc.RetryError as exc:  # gave up retrying transient errors
            raise FatalError(f"cannot {action}: {where} unreachable ({exc.cause})") from None
        except (aexc.TransportError, OSError) as exc:  # requests' errors are OSErrors
            raise FatalError(f"cannot {action}: {where} unreachable ({exc})") from None

    # -- the interface ---------------------------------------------------------------
    def uri(self, key: str = "") -> str:
        name = self._name(key)
        return f"gs://{self.bucket_name}/{name}" if name else f"gs://{self.bucket_name}"

    def browse_url(self, key: str = "") -> str:
        path = urllib.parse.quote(_join(self.bucket_name, self._name(key)), safe="/")
        return f"{CONSOLE_BROWSER}/{path}"

    def read_text(self, key: str) -> str | None:
        from google.api_core.exceptions import NotFound

        name = self._name(key)
        with self._errors(f"read {self.uri(key)}"):
            try:
                data: bytes = self._bucket.blob(name).download_as_bytes(retry=self._retry)
            except NotFound:
                return None
        return data.decode("utf-8")

    def write_text(self, key: str, text: str) -> None:
        name = self._name(key)
        if not clean_key(key):
            raise FatalError("write_text needs a key below the storage root")
        ctype = mimetypes.guess_type(name)[0] or "text/plain"
        with self._errors(f"write {self.uri(key)}"):
            # A single-request upload: the object appears whole or not at all.
            self._bucket.blob(name).upload_from_string(
                text.encode("utf-8"), content_type=f"{ctype}; charset=utf-8", retry=self._retry
            )

    def exists(self, key: str) -> bool:
        name = self._name(key)
        if not name:
            return False
        with self._errors(f"check {self.uri(key)}"):
            return bool(self._bucket.blob(name).exists(retry=self._retry))

    def list_keys(self, prefix: str = "", suffix: str = "") -> list[str]:
        want = _key_prefix(prefix)
        base = self.prefix + "/" if self.prefix else ""
        keys = [
            key
            for key in self._list_remote(base + want)
            if key.startswith(want) and key.endswith(suffix)
        ]
        return sorted(keys)

    def _list_remote(self, name_prefix: str) -> dict[str, _Remote]:
        """Objects under `name_prefix`, keyed relative to the storage root."""
        strip = len(self.prefix) + 1 if self.prefix else 0
        out: dict[str, _Remote] = {}
        with self._errors(f"list gs://{self.bucket_name}/{name_prefix}"):
            for blob in self.client.list_blobs(
                self.bucket_name, prefix=name_prefix or None, retry=self._retry
            ):
                name: str = blob.name
                if name.endswith("/"):
                    continue  # "folder" placeholder objects made by the console
                out[name[strip:]] = _Remote(size=int(blob.size or 0), crc32c=blob.crc32c)
        return out

    def upload_dir(self, local_dir: Path, key_prefix: str, *, workers: int = 8) -> UploadReport:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        started = time.monotonic()
        prefix = clean_key(key_prefix, what="key prefix")
        files = _scan_dir(local_dir)
        by_rel = {f.rel: f for f in files}
        with ThreadPoolExecutor(max_workers=workers) as pool:
            crcs = dict(zip(by_rel, pool.map(lambda f: _crc32c_b64(f.path), files), strict=True))

        key_of = {f.rel: _join(prefix, f.rel) for f in files}
        name_prefix = self._name(prefix) + "/" if self._name(prefix) else ""

        def intact(rel: str, remote: dict[str, _Remote]) -> bool:
            r = remote.get(key_of[rel])
            return r is not None and r.size == by_rel[rel].size and r.crc32c == crcs[rel]

        remote = self._list_remote(name_prefix)
        report = UploadReport()
        pending = [f.rel for f in files if not intact(f.rel, remote)]
        todo = set(pending)
        report.skipped = [key_of[f.rel] for f in files if f.rel not in todo]

        problems: dict[str, str] = {}  # key -> why, for what is not (yet) stored intact
        mismatched_once: set[str] = set()
        rounds = 0
        while pending:
            failed = self._send(local_dir, pending, name_prefix, workers)
            rounds += 1
            report.bytes_sent += sum(by_rel[rel].size for rel in pending if rel not in failed)
            remote = self._list_remote(name_prefix)  # verify against a fresh listing
            retry: list[str] = []
            for rel in pending:
                key = key_of[rel]
                if rel in failed:
                    problems[key] = failed[rel]
                    retry.append(rel)
                elif intact(rel, remote):
                    problems.pop(key, None)
                    report.uploaded.append(key)
                elif rel in mismatched_once:
                    problems[key] = "stored size/CRC32C differ from the local file, twice"
                else:  # re-sent once
                    mismatched_once.add(rel)
                    problems[key] = "stored size/CRC32C differ from the local file"
                    retry.append(rel)
            pending = retry
            if pending and rounds > len(self.retry_delays):
                break  # give up; `problems` names every file still pending
            if pending and failed:
                time.sleep(self.retry_delays[rounds - 1])
        report.uploaded.sort()
        report.seconds = time.monotonic() - started
        if problems:
            raise _fail_list(problems, len(report.uploaded) + len(report.skipped), self.uri(prefix))
        return report

    def _send(
        self, local_dir: Path, rels: list[str], name_prefix: str, workers: int
    ) -> dict[str, str]:
        """Upload `rels` in parallel threads; return {rel: error} for those that raised."""
        from google.cloud.storage import transfer_manager

        with self._errors(f"upload to {self.uri()}"):
            results = transfer_manager.upload_many_from_filenames(
                self._bucket,
                rels,
                source_directory=str(local_dir),
                blob_name_prefix=name_prefix,
                worker_type=transfer_manager.THREAD,
                max_workers=workers,
                raise_exception=False,
                upload_kwargs={"retry": self._retry},
            )
        failed: dict[str, str] = {}
        for rel, result in zip(rels, results, strict=True):
            if isinstance(result, BaseException):
                msg = str(result) or type(result).__name__
                failed[rel] = f"{type(result).__name__}: {msg}".splitlines()[0][:300]
        return failed
