"""render.record.storage against a real GCS emulator (over HTTP) and a real directory.

The common behaviour is parametrised over both backends; GCS-only faults that cannot be
produced for real (a blob that arrives corrupted, an upload that raises) wrap the real
`transfer_manager.upload_many_from_filenames` to inject the fault; detection and recovery
run unmodified against the emulator.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gcs_emulator import GCSEmulator, gcs_emulator  # noqa: F401 - the fixture

from render.errors import FatalError
from render.record.storage import FileStorage, GCSStorage, Storage, UploadReport, open_storage

# -- helpers -----------------------------------------------------------------------------

TREE: dict[str, bytes] = {
    "adapter_model.safetensors": os.urandom(300_000),
    "adapter_config.json": b'{"r": 8, "lora_alpha": 16}\n',
    "trainer_state.json": b'{"global_step": 10, "log_history": []}\n',
    "checkpoint-10/optimizer.pt": os.urandom(123_457),
    "checkpoint-10/rng_state.pth": bytes(range(256)) * 40,
    "checkpoint-10/deep/er/notes.txt": "lr 1e-4, r\u00e9sum\u00e9 \u2713\n".encode(),
    "logs/trainer_log.jsonl": b'{"loss": 1.5}\n{"loss": 1.2}\n',
    "empty.txt": b"",
}


def make_tree(base: Path, files: dict[str, bytes] = TREE) -> Path:
    for rel, data in files.items():
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return base


@dataclass
class Backend:
    """A storage root plus raw access that bypasses render.record.storage (to check and tamper)."""

    kind: str
    root: str
    read: Callable[[str], bytes | None]  # key relative to the root
    write: Callable[[str, bytes], None]
    delete: Callable[[str], None]

    def open(self) -> Storage:
        return open_storage(self.root)


def _gcs_backend(emu: GCSEmulator) -> Backend:
    from google.api_core.exceptions import NotFound
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    anonymous: Any = AnonymousCredentials
    bucket = storage.Client(project=emu.project, credentials=anonymous()).bucket(emu.bucket)

    def read(key: str) -> bytes | None:
        try:
            data: bytes = bucket.blob(f"root/{key}").download_as_bytes()
            return data
        except NotFound:
            return None

    def write(key: str, data: bytes) -> None:
        bucket.blob(f"root/{key}").upload_from_string(data)

    def delete(key: str) -> None:
        bucket.blob(f"root/{key}").delete()

    return Backend("gcs", emu.root, read, write, delete)


def _file_backend(root: Path) -> Backend:
    def read(key: str) -> bytes | None:
        path = root / key
        return path.read_bytes() if path.is_file() else None

    def write(key: str, data: bytes) -> None:
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)

    def delete(key: str) -> None:
        (root / key).unlink()

    return Backend("file", str(root), read, write, delete)


@pytest.fixture(params=["file", "gcs"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "gcs":
        yield _gcs_backend(request.getfixturevalue("gcs_emulator"))
    else:
        yield _file_backend(tmp_path / "store")


@pytest.fixture
def src(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "run-output")


def keys(prefix: str, files: dict[str, bytes] = TREE) -> list[str]:
    return sorted(f"{prefix}/{rel}" for rel in files)


# -- common behaviour (both backends) ----------------------------------------------------


def test_upload_reads_back_byte_identical(backend: Backend, src: Path) -> None:
    store = backend.open()
    report = store.upload_dir(src, "wiki/llama/exp1", workers=4)
    assert isinstance(report, UploadReport)
    assert report.uploaded == keys("wiki/llama/exp1")
    assert report.skipped == []
    assert report.bytes_sent == sum(len(d) for d in TREE.values())
    assert report.seconds > 0
    for rel, data in TREE.items():
        assert backend.read(f"wiki/llama/exp1/{rel}") == data, rel
    assert store.list_keys("wiki/llama/exp1/") == keys("wiki/llama/exp1")
    assert store.read_text("wiki/llama/exp1/checkpoint-10/deep/er/notes.txt") == (
        "lr 1e-4, r\u00e9sum\u00e9 \u2713\n"
    )


def test_second_upload_sends_nothing(backend: Backend, src: Path) -> None:
    store = backend.open()
    store.upload_dir(src, "exp")
    again = backend.open().upload_dir(src, "exp")  # a fresh instance: state is remote
    assert again.uploaded == []
    assert again.skipped == keys("exp")
    assert again.bytes_sent == 0


def test_deleted_object_is_the_only_one_resent(backend: Backend, src: Path) -> None:
    store = backend.open()
    store.upload_dir(src, "exp")
    backend.delete("exp/checkpoint-10/optimizer.pt")
    report = store.upload_dir(src, "exp")
    assert report.uploaded == ["exp/checkpoint-10/optimizer.pt"]
    assert report.bytes_sent == len(TREE["checkpoint-10/optimizer.pt"])
    assert len(report.skipped) == len(TREE) - 1
    assert backend.read("exp/checkpoint-10/optimizer.pt") == TREE["checkpoint-10/optimizer.pt"]


def test_corrupted_remote_is_detected_and_resent(backend: Backend, src: Path) -> None:
    store = backend.open()
    store.upload_dir(src, "exp")
    same_size = bytearray(TREE["adapter_model.safetensors"])
    same_size[1000] ^= 0xFF  # one flipped byte, same length
    backend.write("exp/adapter_model.safetensors", bytes(same_size))
    backend.write("exp/trainer_state.json", b"{}")  # different length
    report = store.upload_dir(src, "exp")
    assert report.uploaded == ["exp/adapter_model.safetensors", "exp/trainer_state.json"]
    assert backend.read("exp/adapter_model.safetensors") == TREE["adapter_model.safetensors"]
    assert backend.read("exp/trainer_state.json") == TREE["trainer_state.json"]


def test_upload_never_deletes_at_destination(backend: Backend, src: Path) -> None:
    store = backend.open()
    backend.write("exp/from-another-run.txt", b"keep me")
    store.upload_dir(src, "exp")
    assert backend.read("exp/from-another-run.txt") == b"keep me"


def test_upload_changed_local_file(backend: Backend, src: Path) -> None:
    store = backend.open()
    store.upload_dir(src, "exp")
    (src / "logs" / "trainer_log.jsonl").write_bytes(b'{"loss": 0.9}\n')
    (src / "checkpoint-20").mkdir()
    (src / "checkpoint-20" / "state.bin").write_bytes(b"\x00\x01")
    report = store.upload_dir(src, "exp")
    assert report.uploaded == ["exp/checkpoint-20/state.bin", "exp/logs/trainer_log.jsonl"]
    assert backend.read("exp/logs/trainer_log.jsonl") == b'{"loss": 0.9}\n'


def test_list_keys_prefix_and_suffix(backend: Backend, src: Path) -> None:
    store = backend.open()
    store.upload_dir(src, "ds/m1/exp-a")
    store.upload_dir(src / "logs", "ds/m1/exp-ab")
    store.write_text("ds/m2/exp-c/run.json", "{}")
    assert store.list_keys("ds/m1/exp-a/", suffix=".json") == [
        "ds/m1/exp-a/adapter_config.json",
        "ds/m1/exp-a/trainer_state.json",
    ]
    # a prefix is a string prefix (as on GCS): exp-a also matches exp-ab
    assert store.list_keys("ds/m1/exp-a", suffix=".jsonl") == [
        "ds/m1/exp-a/logs/trainer_log.jsonl",
        "ds/m1/exp-ab/trainer_log.jsonl",
    ]
    assert store.list_keys(suffix="run.json") == ["ds/m2/exp-c/run.json"]
    assert store.list_keys("ds/") == sorted(store.list_keys())
    assert len(store.list_keys()) == len(TREE) + 2
    assert store.list_keys("nothing-here/") == []
    assert store.list_keys("ds/m1/exp-a/checkpoint-10/deep") == [
        "ds/m1/exp-a/checkpoint-10/deep/er/notes.txt"
    ]


def test_write_text_read_text_round_trip(backend: Backend) -> None:
    store = backend.open()
    assert store.read_text("meta/run.json") is None
    assert not store.exists("meta/run.json")
    store.write_text("meta/run.json", '{"status": "ok", "note": "\u00e9"}\n')
    assert store.exists("meta/run.json")
    assert store.read_text("meta/run.json") == '{"status": "ok", "note": "\u00e9"}\n'
    store.write_text("meta/run.json", "replaced")
    assert store.read_text("meta/run.json") == "replaced"
    assert backend.read("meta/run.json") == b"replaced"
    assert store.list_keys("meta/") == ["meta/run.json"]  # no temp files left behind
    assert not store.exists("meta")  # a "directory" is not an object


def test_keys_cannot_escape_the_root(backend: Backend, src: Path) -> None:
    store = backend.open()
    for bad in ("../outside.txt", "a/../../b", "a\\b"):
        with pytest.raises(FatalError, match="no '..'"):
            store.write_text(bad, "x")
    with pytest.raises(FatalError, match="invalid key prefix"):
        store.upload_dir(src, "../up")
    # redundant slashes and dots are normalised
    store.write_text("/a//b/./c.txt", "ok")
    assert store.read_text("a/b/c.txt") == "ok"


def test_upload_of_missing_dir_is_fatal(backend: Backend, tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="not a directory"):
        backend.open().upload_dir(tmp_path / "nope", "exp")


# -- URIs --------------------------------------------------------------------------------


def test_gcs_uri_and_browse_url() -> None:
    store = open_storage("gs://my-project-llm/experiments/")
    assert isinstance(store, GCSStorage)
    assert store.uri() == "gs://my-project-llm/experiments"
    assert store.uri("wiki/llama/exp 1/") == "gs://my-project-llm/experiments/wiki/llama/exp 1"
    assert store.browse_url("wiki/exp 1") == (
        "https://console.cloud.google.com/storage/browser/my-project-llm/experiments/wiki/exp%201"
    )
    assert open_storage("gs://bkt").uri("a/b") == "gs://bkt/a/b"


def test_file_uri_and_browse_url(tmp_path: Path) -> None:
    store = open_storage(tmp_path.as_uri())
    assert isinstance(store, FileStorage)
    assert store.root == tmp_path
    assert store.uri("a b/c.json") == (tmp_path / "a b" / "c.json").as_uri()
    assert store.browse_url("x") == (tmp_path / "x").as_uri()
    assert open_storage(str(tmp_path)).uri() == tmp_path.as_uri()
    assert open_storage(f"file://localhost{tmp_path}").uri() == tmp_path.as_uri()
    rel = open_storage("relative/dir")
    assert isinstance(rel, FileStorage) and rel.root == Path.cwd() / "relative" / "dir"


@pytest.mark.parametrize(
    ("root", "detail"),
    [
        ("", "empty storage root"),
        ("   ", "empty storage root"),
        ("gs://", "not a valid bucket name"),
        ("gs://My_Bucket/x", "not a valid bucket name"),
        ("gs://ab", "not a valid bucket name"),
        ("gs://bucket/../x", "no '..'"),
        ("s3://bucket/x", "scheme 's3'"),
        ("https://storage.googleapis.com/b", "scheme 'https'"),
        ("file://otherhost/srv", "file:///absolute/path"),
        ("file:relative", "file:///absolute/path"),
    ],
)
def test_invalid_roots_say_what_is_accepted(root: str, detail: str) -> None:
    with pytest.raises(FatalError) as err:
        open_storage(root)
    assert detail in str(err.value)
    if detail != "no '..'":
        assert "gs://<bucket>[/<prefix>], file:///<absolute/path>, or a local" in str(err.value)


def test_file_root_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(FatalError, match="not a directory"):
        open_storage(str(tmp_path / "f"))


def test_uri_needs_no_client_or_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    store = open_storage("gs://bkt/p")
    assert store.uri("k") == "gs://bkt/p/k"
    assert isinstance(store, GCSStorage) and store._client is None


# -- GCS specifics ----------------------------------------------------------------------


def test_emulator_client_is_anonymous(gcs_emulator: GCSEmulator) -> None:  # noqa: F811
    from google.auth.credentials import AnonymousCredentials

    store = open_storage(gcs_emulator.root)
    assert isinstance(store, GCSStorage)
    assert isinstance(store.client._credentials, AnonymousCredentials)
    assert store.client.project == gcs_emulator.project
    assert gcs_emulator.host in store.client._connection.API_BASE_URL


def test_large_file_uses_resumable_upload(gcs_emulator: GCSEmulator, tmp_path: Path) -> None:  # noqa: F811
    """> 8 MiB goes through the client's resumable (JSON API) upload, not multipart."""
    big = {"model.safetensors": os.urandom(9 * 1024 * 1024 + 7), "small.txt": b"s"}
    backend = _gcs_backend(gcs_emulator)
    store = backend.open()
    report = store.upload_dir(make_tree(tmp_path / "big", big), "exp", workers=2)
    assert report.uploaded == ["exp/model.safetensors", "exp/small.txt"]
    assert backend.read("exp/model.safetensors") == big["model.safetensors"]
    assert store.upload_dir(tmp_path / "big", "exp").uploaded == []


def test_missing_bucket_is_fatal(gcs_emulator: GCSEmulator, src: Path) -> None:  # noqa: F811
    store = open_storage("gs://no-such-bucket-here/x")
    with pytest.raises(FatalError, match="gs://no-such-bucket-here not found"):
        store.upload_dir(src, "exp")
    with pytest.raises(FatalError, match="not found"):
        store.list_keys()


def test_no_credentials_is_fatal_with_a_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No emulator, no ADC (empty gcloud config, metadata server check disabled)."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    store = open_storage("gs://bkt/p")
    with pytest.raises(FatalError, match="Workload Identity"):
        store.read_text("x")


def test_unreachable_emulator_is_fatal(monkeypatch: pytest.MonkeyPatch) -> None:
    from gcs_emulator import _free_port

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{_free_port()}")
    monkeypatch.setattr(GCSStorage, "request_retry_timeout", 0.5)
    store = open_storage("gs://bkt/p")
    with pytest.raises(FatalError, match="gs://bkt unreachable"):
        store.list_keys()


def _wrap_upload_many(mp: pytest.MonkeyPatch, after: Callable[..., list[Any]]) -> None:
    from google.cloud.storage import transfer_manager

    real = transfer_manager.upload_many_from_filenames

    def wrapper(bucket: Any, filenames: list[str], **kw: Any) -> list[Any]:
        return after(real, bucket, filenames, **kw)

    mp.setattr(transfer_manager, "upload_many_from_filenames", wrapper)


def test_blob_corrupted_in_transit_is_resent_once(
    gcs_emulator: GCSEmulator,  # noqa: F811
    src: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Targeted mock: after the real first upload, one blob is overwritten with other
    bytes (as if corrupted on the way); the listing check must catch it and re-send it."""
    calls: list[list[str]] = []

    def corrupt_first(real: Any, bucket: Any, filenames: list[str], **kw: Any) -> list[Any]:
        calls.append(list(filenames))
        out: list[Any] = real(bucket, filenames, **kw)
        if len(calls) == 1:
            bucket.blob(kw["blob_name_prefix"] + "checkpoint-10/optimizer.pt").upload_from_string(
                b"garbage"
            )
        return out

    _wrap_upload_many(monkeypatch, corrupt_first)
    backend = _gcs_backend(gcs_emulator)
    report = backend.open().upload_dir(src, "exp")
    assert calls[1] == ["checkpoint-10/optimizer.pt"]
    assert len(calls) == 2
    assert report.uploaded == keys("exp")
    assert backend.read("exp/checkpoint-10/optimizer.pt") == TREE["checkpoint-10/optimizer.pt"]


def test_blob_corrupted_twice_is_fatal_naming_the_file(
    gcs_emulator: GCSEmulator,  # noqa: F811
    src: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Targeted mock: every upload of one file lands corrupted."""

    def corrupt_always(real: Any, bucket: Any, filenames: list[str], **kw: Any) -> list[Any]:
        out: list[Any] = real(bucket, filenames, **kw)
        if "trainer_state.json" in filenames:
            bucket.blob(kw["blob_name_prefix"] + "trainer_state.json").upload_from_string(b"x")
        return out

    _wrap_upload_many(monkeypatch, corrupt_always)
    with pytest.raises(FatalError) as err:
        _gcs_backend(gcs_emulator).open().upload_dir(src, "exp")
    msg = "\n".join((str(err.value), *err.value.details))
    assert "1 file(s) could not be stored" in msg
    assert "exp/trainer_state.json: stored size/CRC32C differ from the local file, twice" in msg
    assert "Run the upload again" in msg


def test_failed_upload_is_retried_then_fatal_then_resumable(
    gcs_emulator: GCSEmulator,  # noqa: F811
    src: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Targeted mock: the upload of two files raises (as a dropped connection would),
    on every try. The rest is stored; the error names both; a later call sends only them."""
    from google.api_core.exceptions import ServiceUnavailable as _Unavailable

    ServiceUnavailable: Any = _Unavailable

    monkeypatch.setattr(GCSStorage, "retry_delays", (0.0, 0.0))
    broken = {"adapter_model.safetensors", "checkpoint-10/rng_state.pth"}
    tries: list[list[str]] = []

    def fail_some(real: Any, bucket: Any, filenames: list[str], **kw: Any) -> list[Any]:
        tries.append(list(filenames))
        ok = [f for f in filenames if f not in broken]
        results = iter(real(bucket, ok, **kw) if ok else [])
        return [
            ServiceUnavailable("backend unavailable") if f in broken else next(results)
            for f in filenames
        ]

    backend = _gcs_backend(gcs_emulator)
    with monkeypatch.context() as mp, pytest.raises(FatalError) as err:
        _wrap_upload_many(mp, fail_some)
        backend.open().upload_dir(src, "exp")
    msg = "\n".join((str(err.value), *err.value.details))
    assert "2 file(s) could not be stored in gs://" in msg
    assert "exp/adapter_model.safetensors: ServiceUnavailable: 503 backend unavailable" in msg
    assert "exp/checkpoint-10/rng_state.pth" in msg
    assert f"({len(TREE) - 2} other file(s) were stored and verified;" in msg
    assert len(tries) == 3  # first try + 2 retries, each only the failed files
    assert tries[1] == tries[2] == sorted(broken)
    assert backend.read("exp/adapter_model.safetensors") is None

    # the network "recovers" (the mock is gone)
    report = backend.open().upload_dir(src, "exp")
    assert report.uploaded == sorted(f"exp/{b}" for b in broken)
    assert len(report.skipped) == len(TREE) - 2


def test_transient_failure_recovers_within_one_call(
    gcs_emulator: GCSEmulator,  # noqa: F811
    src: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Targeted mock: one upload raises on the first try only."""
    from google.api_core.exceptions import ServiceUnavailable as _Unavailable

    ServiceUnavailable: Any = _Unavailable

    monkeypatch.setattr(GCSStorage, "retry_delays", (0.0, 0.0))
    tries: list[list[str]] = []

    def fail_once(real: Any, bucket: Any, filenames: list[str], **kw: Any) -> list[Any]:
        tries.append(list(filenames))
        if len(tries) > 1:
            return list(real(bucket, filenames, **kw))
        ok = [f for f in filenames if f != "empty.txt"]
        results = iter(real(bucket, ok, **kw))
        return [ServiceUnavailable("x") if f == "empty.txt" else next(results) for f in filenames]

    _wrap_upload_many(monkeypatch, fail_once)
    report = _gcs_backend(gcs_emulator).open().upload_dir(src, "exp")
    assert tries[1] == ["empty.txt"]
    assert report.uploaded == keys("exp")


def test_upload_to_the_root_itself(backend: Backend, src: Path) -> None:
    """`hook.finish` uploads a run's output with key_prefix "" onto a per-run root."""
    run_root = f"{backend.root}/ds/model/exp/run-1"
    store = open_storage(run_root)
    report = store.upload_dir(src, "")
    assert report.uploaded == sorted(TREE)
    assert backend.read("ds/model/exp/run-1/trainer_state.json") == TREE["trainer_state.json"]
    assert open_storage(backend.root).list_keys("ds/", "/trainer_state.json") == [
        "ds/model/exp/run-1/trainer_state.json"
    ]


def test_file_upload_onto_its_own_source_is_a_no_op(src: Path) -> None:
    report = open_storage(str(src)).upload_dir(src, "")
    assert report.uploaded == [] and report.skipped == sorted(TREE)
    assert {p.name for p in src.iterdir()} == {
        "adapter_model.safetensors",
        "adapter_config.json",
        "trainer_state.json",
        "checkpoint-10",
        "logs",
        "empty.txt",
    }
