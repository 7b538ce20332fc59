"""A Google Cloud Storage bucket prefix as artifact storage (google-cloud-storage, imported
lazily; honours STORAGE_EMULATOR_HOST)."""

from __future__ import annotations

import contextlib
import mimetypes
import os
import time
import urllib.parse
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from render.errors import FatalError
from render.record.storage.base import (
    CONSOLE_BROWSER,
    Storage,
    UploadReport,
    _crc32c_b64,
    _fail_list,
    _join,
    _key_prefix,
    _scan_dir,
    clean_key,
)


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
