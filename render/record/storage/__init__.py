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

Modules: `base` (the interface, keys, local trees), `files` (a local directory), `gcs`
(a bucket); `open_storage` picks one from a root URI.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from render.errors import FatalError
from render.record.storage.base import (
    _BUCKET_RE,
    _SCHEME_RE,
    ACCEPTED_FORMS,
    Storage,
    UploadReport,
    clean_key,
)
from render.record.storage.files import FileStorage
from render.record.storage.gcs import GCSStorage

__all__ = ["FileStorage", "GCSStorage", "Storage", "UploadReport", "clean_key",
           "open_storage"]


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
