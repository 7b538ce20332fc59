"""A real GCS server for tests: `gcp-storage-emulator` (PyPI) run as a subprocess.

Use the `gcs_emulator` fixture (import it into tests/conftest.py):

    from gcs_emulator import gcs_emulator  # noqa: F401

One emulator process serves the whole test session (started on first use, stopped at the
end of the session). Every test that asks for the fixture gets its own fresh bucket and
has `STORAGE_EMULATOR_HOST` / `GOOGLE_CLOUD_PROJECT` set (by monkeypatch, so they are
restored after the test). The emulator speaks the GCS JSON API over plain HTTP; the
google-cloud-storage client switches to it (and to anonymous credentials) when
`STORAGE_EMULATOR_HOST` is set.

`EmulatorProcess` is also usable on its own (scripts/bench_upload.py):

    with EmulatorProcess() as emu:
        emu.create_bucket("b")
"""

from __future__ import annotations

import atexit
import itertools
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

EMULATOR_PROJECT = "ftops-test"
"""Project id the client reports; the emulator accepts any (it models one project)."""


# `python -m gcp_storage_emulator start ...`, except for the listen backlog: the emulator's
# single-threaded http.server keeps the default of 5, so a burst of >5 parallel uploads
# overflows it and the kernel drops SYNs, which the client only retries after 1 s. (The
# server still handles one request at a time.)
_LAUNCH = (
    "import sys, http.server; http.server.HTTPServer.request_queue_size = 128; "
    "from gcp_storage_emulator.__main__ import main; main(sys.argv[1:])"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class EmulatorProcess:
    """`python -m gcp_storage_emulator start --in-memory` on a free localhost port."""

    def __init__(self, *, startup_timeout: float = 30.0) -> None:
        self.startup_timeout = startup_timeout
        self.port = 0
        self.host = ""  # "http://127.0.0.1:<port>", the value for STORAGE_EMULATOR_HOST
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - lives as long as the process
            prefix="gcs-emulator-", suffix=".log", delete=False
        )

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> EmulatorProcess:
        last_error = ""
        for _ in range(3):  # a port picked free can be taken before the child binds it
            self.port = _free_port()
            self.host = f"http://127.0.0.1:{self.port}"
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    _LAUNCH,
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--in-memory",
                    "--quiet",
                ],
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env={k: v for k, v in os.environ.items() if k != "STORAGE_EMULATOR_HOST"},
            )
            try:
                self._wait_ready()
                return self
            except RuntimeError as exc:
                last_error = str(exc)
                self.stop()
        raise RuntimeError(f"gcp-storage-emulator did not start: {last_error}")

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.host}/storage/v1/b"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"exited with {self._proc.returncode}; log:\n{self.log_text()[-2000:]}"
                )
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:  # noqa: S310 - localhost
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no answer on {url} within {self.startup_timeout:.0f}s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    # -- admin ---------------------------------------------------------------------
    def create_bucket(self, name: str) -> None:
        """Create a bucket through the JSON API (no client library involved)."""
        body = json.dumps({"name": name}).encode()
        req = urllib.request.Request(  # noqa: S310 - localhost
            f"{self.host}/storage/v1/b?project={EMULATOR_PROJECT}",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
            if resp.status != 200:
                raise RuntimeError(f"create bucket {name}: HTTP {resp.status}")


@dataclass(frozen=True)
class GCSEmulator:
    """What a test gets: where the emulator listens and a fresh, empty bucket."""

    host: str  # http://127.0.0.1:<port>  (= STORAGE_EMULATOR_HOST)
    bucket: str
    project: str
    process: EmulatorProcess

    @property
    def root(self) -> str:
        """A storage root in the test's bucket: gs://<bucket>/root."""
        return f"gs://{self.bucket}/root"


_SESSION: EmulatorProcess | None = None
_BUCKETS = itertools.count(1)


def _session_emulator(config: pytest.Config) -> EmulatorProcess:
    global _SESSION
    if _SESSION is None:
        proc = EmulatorProcess().start()
        atexit.register(proc.stop)  # belt and braces if the session is killed
        config.add_cleanup(proc.stop)
        _SESSION = proc

        def _forget() -> None:
            global _SESSION
            _SESSION = None

        config.add_cleanup(_forget)
    return _SESSION


@pytest.fixture
def gcs_emulator(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[GCSEmulator]:
    """A running GCS emulator, a new empty bucket, and the client env pointing at them."""
    proc = _session_emulator(request.config)
    bucket = f"ftops-test-{os.getpid()}-{next(_BUCKETS)}"
    proc.create_bucket(bucket)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", proc.host)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", EMULATOR_PROJECT)
    yield GCSEmulator(host=proc.host, bucket=bucket, project=EMULATOR_PROJECT, process=proc)
