"""`git cat-file --batch` answers read by the one parser (render.record.gitcmd), over a
real repository: objects, names git cannot resolve, and contents holding newlines."""

from __future__ import annotations

import subprocess
from pathlib import Path

from render.record.gitcmd import batch_objects


def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(repo), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, input=input, check=True,
                          capture_output=True).stdout


def test_batch_answers_in_order(tmp_path: Path) -> None:
    _git(tmp_path, "init", "--quiet")
    (tmp_path / "a file.txt").write_bytes(b"line 1\nline 2 missing 3\n")
    (tmp_path / "empty").write_bytes(b"")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "--quiet", "-m", "x")
    names = ["HEAD:a file.txt", "HEAD:no such file", "HEAD:empty", "HEAD:b missing 12"]
    raw = _git(tmp_path, "cat-file", "--batch", input="".join(f"{n}\n" for n in names).encode())
    answers = batch_objects(raw, len(names))
    assert answers == [(b"blob", b"line 1\nline 2 missing 3\n"), None, (b"blob", b""), None]
