"""A read-only OCI distribution registry over an OCI image layout, for the real node.

containerd pulls the training image from it as a node pulls from Artifact Registry:
``registry.ftops.test/ftops/llamafactory@sha256:<digest>``, the manifest first, then the
config and whatever layers it does not have yet (the real node preloads them, so the
layout holds the manifest and config: ``image.write_manifest_layout``; a blob it lacks
is a 404 and fails the pull). Only what a pull needs is served (``GET``/``HEAD`` of
``/v2/``, manifests by tag or digest, blobs); everything else is 404 or 405. Plain HTTP
on 127.0.0.1; containerd is told so through its hosts directory (``hosts.toml``).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_PATH = re.compile(r"^/v2/(?P<name>[a-z0-9]+(?:[._/-][a-z0-9]+)*)/(?P<kind>manifests|blobs)/"
                   r"(?P<ref>[A-Za-z0-9_.:-]{1,128})$")


class Registry:
    def __init__(self, layout: Path, repository: str, host: str = "127.0.0.1") -> None:
        self.layout = layout
        self.repository = repository
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.address = f"{host}:{self.server.server_address[1]}"
        self.requests: list[tuple[str, str, int]] = []
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Registry:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def _blob(self, digest: str) -> Path | None:
        if not _DIGEST.fullmatch(digest):
            return None
        path = self.layout / "blobs" / "sha256" / digest.split(":", 1)[1]
        return path if path.is_file() else None

    def _manifest(self, ref: str) -> tuple[Path, str, str] | None:
        """(blob path, media type, digest) of a manifest named by tag or digest."""
        index = json.loads((self.layout / "index.json").read_text())
        for m in index.get("manifests", []):
            tag = (m.get("annotations") or {}).get("org.opencontainers.image.ref.name")
            if ref in (tag, m["digest"]):
                path = self._blob(m["digest"])
                if path is not None:
                    return path, m["mediaType"], m["digest"]
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        reg = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(self, code: int, headers: dict[str, str], body: Path | bytes | None
                       ) -> None:
                reg.requests.append((self.command, self.path, code))
                self.send_response(code)
                size = body.stat().st_size if isinstance(body, Path) else len(body or b"")
                headers = {"Content-Length": str(size),
                           "Docker-Distribution-API-Version": "registry/2.0", **headers}
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command == "HEAD" or body is None:
                    return
                if isinstance(body, Path):
                    with open(body, "rb") as f:
                        shutil.copyfileobj(f, self.wfile, 1 << 20)
                else:
                    self.wfile.write(body)

            def _serve(self) -> None:
                if self.path in ("/v2", "/v2/"):
                    self._reply(200, {"Content-Type": "application/json"}, b"{}")
                    return
                m = _PATH.match(self.path.split("?", 1)[0])
                if m is None or m["name"] != reg.repository:
                    self._reply(404, {}, b"")
                    return
                if m["kind"] == "manifests":
                    found = reg._manifest(m["ref"])
                    if found is None:
                        self._reply(404, {}, b"")
                        return
                    path, media, digest = found
                    self._reply(200, {"Content-Type": media, "Docker-Content-Digest": digest},
                                path)
                    return
                blob = reg._blob(m["ref"])
                if blob is None:
                    self._reply(404, {}, b"")
                    return
                self._reply(200, {"Content-Type": "application/octet-stream",
                                  "Docker-Content-Digest": m["ref"]}, blob)

            def do_GET(self) -> None:  # noqa: N802
                self._serve()

            def do_HEAD(self) -> None:  # noqa: N802
                self._serve()

            def _refuse(self) -> None:
                self._reply(405, {}, b"")

            do_POST = do_PUT = do_PATCH = do_DELETE = _refuse  # noqa: N815

        return Handler


NAME = "registry.ftops.test"
"""The registry's name in image references. containerd's hosts directory maps it to the
server's address, which changes every session; the name does not, so an image pulled in
one session is found by the next (same reference) without pulling again."""


def containerd_hosts(hosts_dir: Path, address: str, name: str = NAME) -> None:
    """Tell containerd (``config_path``) that ``name`` is served over plain HTTP at
    ``address``."""
    d = hosts_dir / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(
        f'server = "http://{address}"\n\n[host."http://{address}"]\n'
        '  capabilities = ["pull", "resolve"]\n')
