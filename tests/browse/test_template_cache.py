"""Compiled templates are kept in the user's cache folder (render.markdown
`_bytecode_cache`): a process renders from them without compiling, a template whose
source changed is compiled again, and a damaged or foreign cache file is never used."""

from __future__ import annotations

import os
from pathlib import Path

import jinja2
import pytest
from run_records import make_record

from render import markdown
from render.browse.readme import render_index


def _fresh(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """As a new process: no environment or cache object built yet."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    markdown.environment.cache_clear()
    markdown._bytecode_cache.cache_clear()


def _files(home: Path) -> list[Path]:
    return sorted((home / "ftops" / "jinja").glob("*.cache"))


def _compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each template Jinja compiles from source."""
    seen: list[str] = []
    real = jinja2.Environment.compile

    def compile_(self: jinja2.Environment, source: str, name: str | None = None,
                 *a: object, **kw: object) -> object:
        seen.append(str(name))
        return real(self, source, name, *a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(jinja2.Environment, "compile", compile_)
    return seen


def test_a_second_process_renders_from_the_cache(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [make_record("r1"), make_record("r2", dataset="wiki")]
    _fresh(monkeypatch, tmp_path)
    seen = _compiles(monkeypatch)
    first = render_index(runs)
    assert {"model.md.j2", "dataset.md.j2", "index.md.j2"} <= set(seen)
    assert len(_files(tmp_path)) >= 3
    _fresh(monkeypatch, tmp_path)
    seen.clear()
    assert render_index(runs) == first
    assert seen == []  # nothing compiled: every template came from the cache


def test_a_damaged_or_foreign_cache_file_is_not_used(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [make_record("r1")]
    _fresh(monkeypatch, tmp_path)
    first = render_index(runs)
    files = _files(tmp_path)
    files[0].write_bytes(b"garbage")
    files[1].write_bytes(files[1].read_bytes()[:20])  # cut short
    os.chmod(files[2], 0o666)  # anyone could have written it
    _fresh(monkeypatch, tmp_path)
    seen = _compiles(monkeypatch)
    assert render_index(runs) == first
    assert len(seen) >= 3  # each of them compiled again
