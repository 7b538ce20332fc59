"""The parse cache (`render.propose.yamlsource`): a text accepted once is read back from
the user's cache folder, with the same data and, when a finding needs one, the same
locations; refused texts are never cached; a cache file someone else could have written
is never trusted."""

from __future__ import annotations

import marshal
import os
from pathlib import Path

import pytest
from lint_harness import make_workspace

from render.propose import yamlsource
from render.propose.experiment import Workspace
from render.propose.lint import lint

TEXT = """\
metadata:
  owner: someone
list: [1, 2.5, "three", null, true]
nested:
  deeper:
    value: 1e-4
"""


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home / "ftops" / "parsed-yaml"


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*/*.marshal"))


def test_a_cached_text_gives_the_same_data_and_locations(cache: Path) -> None:
    first = yamlsource.parse(TEXT, "a.yaml")
    (entry,) = _entries(cache)
    again = yamlsource.parse(TEXT, "b.yaml")
    assert again.data == first.data == {
        "metadata": {"owner": "someone"}, "list": [1, 2.5, "three", None, True],
        "nested": {"deeper": {"value": 1e-4}}}
    assert again.file == "b.yaml" and again.text == TEXT
    assert _entries(cache) == [entry]  # read, not written again
    for path in (("nested", "deeper", "value"), ("list", 2), ("missing",)):
        assert again.locate(path) == first.locate(path)
    assert again.locate(("nested", "deeper", "value")) == (6, 5)


def test_a_refused_text_is_never_cached(cache: Path) -> None:
    bad = "a: 1\na: 2\n"
    for _ in range(2):
        with pytest.raises(yamlsource.YamlError) as err:
            yamlsource.parse(bad, "bad.yaml")
        assert "duplicate key 'a'" in str(err.value)
        assert err.value.finding.line == 2
    assert _entries(cache) == []


def test_a_foreign_or_broken_cache_file_is_not_trusted(cache: Path) -> None:
    yamlsource.parse(TEXT, "a.yaml")
    (entry,) = _entries(cache)
    forged = marshal.dumps({"metadata": {"owner": "forged"}})
    entry.write_bytes(forged)
    os.chmod(entry, 0o666)  # anyone could have written it
    assert yamlsource.parse(TEXT, "a.yaml").data["metadata"]["owner"] == "someone"
    entry.write_bytes(b"not marshal data")
    os.chmod(entry, 0o644)
    assert yamlsource.parse(TEXT, "a.yaml").data["metadata"]["owner"] == "someone"


def test_lint_reports_the_same_findings_from_the_cache(tmp_path: Path, cache: Path) -> None:
    root = make_workspace(tmp_path / "repo")
    bad = root / "experiments/demo/tiny-llama/bad_v1.yaml"
    bad.write_text("metadata: {owner: x}\nlaunch:\n  nodes: 0\ntrain:\n  learnig_rate: 1\n")
    cold = [f.format() for f in lint(Workspace(root)).findings]
    assert _entries(cache)  # this run filled the cache
    warm = [f.format() for f in lint(Workspace(root)).findings]
    assert warm == cold
    assert any(":5:" in line and "learnig_rate" in line for line in warm), warm
