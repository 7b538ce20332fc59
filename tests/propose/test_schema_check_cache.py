"""The compiled fast schema check is cached on disk (a fresh `ftops lint FILE` would
otherwise spend ~1 s generating it): same verdicts from the cache, a broken or foreign
cache file is never trusted."""

from __future__ import annotations

import marshal
import os
from pathlib import Path

import pytest

from render.propose import schema

NAME = "experiment.schema.json"
BAD = {"metadata": {}, "launch": {"nodes": "two"}, "train": {}}


def _fresh(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    schema.fast_validator.cache_clear()


def _cached(home: Path) -> list[Path]:
    return sorted((home / "ftops" / "schema-checks").glob("experiment.schema-*.marshal"))


def test_the_cache_gives_the_same_verdicts(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(monkeypatch, tmp_path)
    first = schema.fast_error(NAME, BAD)
    (made,) = _cached(tmp_path)
    _fresh(monkeypatch, tmp_path)  # a new process: read from the file
    again = schema.fast_error(NAME, BAD)
    assert first is not None and again is not None and str(first) == str(again)
    assert _cached(tmp_path) == [made]


def test_a_broken_or_foreign_cache_file_is_rebuilt(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _fresh(monkeypatch, tmp_path)
    schema.fast_validator(NAME)
    (made,) = _cached(tmp_path)
    made.write_bytes(b"not marshal data")
    _fresh(monkeypatch, tmp_path)
    assert schema.fast_error(NAME, BAD) is not None  # rebuilt, not crashed
    assert made.read_bytes() != b"not marshal data"
    made.write_bytes(marshal.dumps({"marshal data": "but not code"}))
    _fresh(monkeypatch, tmp_path)
    assert schema.fast_error(NAME, BAD) is not None  # rebuilt, not executed
    # a file others could have written is not loaded: replaced by a fresh compile
    os.chmod(made, 0o666)
    made.write_bytes(b"\x00" * 16)
    _fresh(monkeypatch, tmp_path)
    assert schema.fast_error(NAME, BAD) is not None
    assert made.read_bytes() != b"\x00" * 16 and not made.stat().st_mode & 0o022
