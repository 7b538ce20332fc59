"""Running git for the index publisher: hermetic, list argv, credentials never shown.

git runs as a subprocess with a list argv (never a shell) in a hermetic environment (no
user or system config, no terminal prompts, a fixed author/committer, a few forced
settings). An HTTPS token (`FTOPS_INDEX_TOKEN`) reaches git as an http header in git's
environment config, never in a URL, an argv or a message; credentials in a remote URL
(`https://user:token@host/...`) are redacted from every message.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

GIT_TIMEOUT_S = 300.0
TOKEN_ENV = "FTOPS_INDEX_TOKEN"  # noqa: S105 - the name of the variable, not a token

# Environment variables passed through to git: PATH, and what credentials and
# proxies legitimately need. Everything else (HOME, XDG_*, GIT_DIR, ...) is dropped.
_PASSTHROUGH = (
    "PATH", "SYSTEMROOT", "TMPDIR", "TEMP", "TMP",
    "SSH_AUTH_SOCK", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_ASKPASS", "SSH_ASKPASS",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "GIT_SSL_CAINFO",
)  # fmt: skip

# Config forced on every git call (there is no other config: see _env).
_GIT_CONFIG = (
    "core.hooksPath=/dev/null",
    "commit.gpgSign=false",
    "core.autocrlf=false",
    "core.fsmonitor=false",
    "gc.auto=0",
    "maintenance.auto=false",
    "protocol.ext.allow=never",
    "advice.detachedHead=false",
)

_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s'\"]*@")


def redact(text: str) -> str:
    """Hide the user-info part (`user:token@`) of every URL in `text`."""
    return _CREDENTIALS.sub(r"\1***@", text)


class GitError(Exception):
    """A git command that exited non-zero; its output is redacted."""

    def __init__(self, args: Sequence[str], returncode: int, output: str) -> None:
        self.output = redact(output.strip())
        self.returncode = returncode
        shown = redact(" ".join(["git", *args]))
        super().__init__(f"`{shown}` exited {returncode}: {self.output[-2000:]}")


def run_git(args: Sequence[str], *, cwd: Path, env: dict[str, str],
            input: bytes | None = None) -> bytes:
    """`git -c <forced settings> <args>` in `cwd`; stdout, or GitError."""
    argv = ["git"]
    for item in _GIT_CONFIG:
        argv += ["-c", item]
    argv += args
    proc = subprocess.run(  # noqa: S603 - list argv, no shell
        argv, cwd=cwd, env=env, input=input if input is not None else b"",
        capture_output=True, timeout=GIT_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        output = (proc.stdout + b"\n" + proc.stderr).decode("utf-8", "replace")
        raise GitError(args, proc.returncode, output)
    return proc.stdout


def git_env(author: tuple[str, str], home: Path) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
    name, email = author
    env.update(
        HOME=str(home),
        LC_ALL="C",
        LANG="C",
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        GIT_TERMINAL_PROMPT="0",
        GIT_AUTHOR_NAME=name,
        GIT_AUTHOR_EMAIL=email,
        GIT_COMMITTER_NAME=name,
        GIT_COMMITTER_EMAIL=email,
    )
    token = os.environ.get(TOKEN_ENV)
    if token:
        # An HTTPS token as a header in git's environment config: never in a URL, an
        # argv or a message (as actions/checkout does it).
        basic = base64.b64encode(f"x-access-token:{token}".encode()).decode()
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader",
                   GIT_CONFIG_VALUE_0=f"AUTHORIZATION: basic {basic}")
    return env


_OID = re.compile(rb"[0-9a-f]{40,64}")


def batch_objects(raw: bytes, count: int) -> list[tuple[bytes, bytes] | None]:
    """The `count` answers in `git cat-file --batch` output, in order: (type, content)
    for an object, None for a name git could not resolve ("<name> missing",
    "<name> ambiguous")."""
    out: list[tuple[bytes, bytes] | None] = []
    pos = 0
    for _ in range(count):
        eol = raw.index(b"\n", pos)
        header = raw[pos:eol].split(b" ")
        pos = eol + 1
        # "<oid> <type> <size>", then the content and a newline
        if len(header) == 3 and header[2].isdigit() and _OID.fullmatch(header[0]):
            size = int(header[2])
            out.append((header[1], raw[pos:pos + size]))
            pos += size + 1
        else:
            out.append(None)
    return out
