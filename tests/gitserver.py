"""A git remote over smart HTTP, as GitHub serves one: `git http-backend` (git's own CGI
program) behind a small HTTP server that demands a token the way ftops sends it
(`Authorization: Basic base64("x-access-token:<token>")`, set by FTOPS_INDEX_TOKEN).

Bound to any address (the real node's pods reach it on the bridge, 10.88.0.1); serves
the bare repositories under `root`. Fetch and push both need the token; every request
is logged (method, path, status, whether it carried the right token) for tests.
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    status: int
    authorized: bool
    client: str  # the peer's address: pods on the real node come from 10.88.0.0/24


class GitHttpServer:
    def __init__(self, root: Path, token: str, host: str = "127.0.0.1") -> None:
        self.root = root
        self.token = token
        self.requests: list[Request] = []
        self.server = ThreadingHTTPServer((host, 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> GitHttpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)

    def pushes(self) -> list[Request]:
        return [r for r in self.requests
                if r.method == "POST" and r.path.endswith("/git-receive-pack")]

    def _authorized(self, header: str | None) -> bool:
        scheme, _, credentials = (header or "").strip().partition(" ")
        want = base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
        return scheme.lower() == "basic" and hmac.compare_digest(credentials.strip().encode(),
                                                                 want.encode())

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes,
                       authorized: bool) -> None:
                srv.requests.append(Request(self.command, self.path.split("?")[0], status,
                                            authorized, self.client_address[0]))
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "status"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self) -> None:
                body = self._body() if self.command == "POST" else b""
                if not srv._authorized(self.headers.get("Authorization")):
                    self._reply(401, [("WWW-Authenticate", 'Basic realm="ftops-test"')],
                                b"token required\n", False)
                    return
                path, _, query = self.path.partition("?")
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(srv.root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REMOTE_USER": "x-access-token",  # enables receive-pack (push)
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "HTTP_GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                }
                proc = subprocess.run(["git", "http-backend"], input=body, env=env,
                                      capture_output=True, timeout=120)
                head, _, payload = proc.stdout.partition(b"\r\n\r\n")
                if not _:
                    head, _, payload = proc.stdout.partition(b"\n\n")
                headers = []
                status = 200
                for line in head.decode("latin-1").splitlines():
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name.strip(), value.strip()))
                if proc.returncode != 0 and status == 200:
                    status, payload = 500, proc.stderr
                self._reply(status, headers, payload, True)

            def do_GET(self) -> None:  # noqa: N802
                self._serve()

            def do_POST(self) -> None:  # noqa: N802
                self._serve()

        return Handler
