"""The parse cache (`render.propose.yamlsource`): a file accepted once is read back from
its folder's pack in the user's cache folder, with the same data and, when a finding
needs one, the same locations; refused texts are never cached; a pack someone else
could have written, or a broken one, is never trusted."""

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
    monkeypatch.setattr(yamlsource, "_packs", {})
    return home / "ftops" / "parsed-yaml"


def _new_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a process does at exit (write its packs), then forget them as a new one."""
    yamlsource.flush_cache()
    monkeypatch.setattr(yamlsource, "_packs", {})


def _packs(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.marshal"))


def test_a_cached_file_gives_the_same_data_and_locations(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.yaml").write_text(TEXT)
    (tmp_path / "b.yaml").write_text(TEXT.replace("someone", "other"))
    first = yamlsource.load(tmp_path / "a.yaml", "a.yaml")
    yamlsource.load(tmp_path / "b.yaml", "b.yaml")
    assert first.node is not None
    _new_process(monkeypatch)
    (pack,) = _packs(cache)  # one pack for the folder
    mtime = pack.stat().st_mtime_ns
    again = yamlsource.load(tmp_path / "a.yaml", "a.yaml")
    assert again.data == first.data == {
        "metadata": {"owner": "someone"}, "list": [1, 2.5, "three", None, True],
        "nested": {"deeper": {"value": 1e-4}}}
    assert yamlsource.load(tmp_path / "b.yaml").data["metadata"]["owner"] == "other"
    assert again.text == TEXT and again._node is None  # not parsed: from the pack
    for path in (("nested", "deeper", "value"), ("list", 2), ("missing",)):
        assert again.locate(path) == first.locate(path)
    assert again.locate(("nested", "deeper", "value")) == (6, 5)
    again.data["metadata"]["owner"] = "changed by a caller"
    _new_process(monkeypatch)
    assert pack.stat().st_mtime_ns == mtime  # nothing new: not written again
    assert yamlsource.load(tmp_path / "a.yaml").data["metadata"]["owner"] == "someone"


def test_a_refused_file_is_never_cached(tmp_path: Path, cache: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "bad.yaml").write_text("a: 1\na: 2\n")
    for _ in range(2):
        with pytest.raises(yamlsource.YamlError) as err:
            yamlsource.load(tmp_path / "bad.yaml", "bad.yaml")
        assert "duplicate key 'a'" in str(err.value)
        assert err.value.finding.line == 2
        _new_process(monkeypatch)
    assert _packs(cache) == []


def test_a_foreign_or_broken_pack_is_not_trusted(tmp_path: Path, cache: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.yaml").write_text(TEXT)
    yamlsource.load(tmp_path / "a.yaml")
    _new_process(monkeypatch)
    (pack,) = _packs(cache)
    entries = marshal.loads(pack.read_bytes())
    forged = {k: marshal.dumps({"metadata": {"owner": "forged"}}) for k in entries}
    pack.write_bytes(marshal.dumps(forged))
    os.chmod(pack, 0o666)  # anyone could have written it
    assert yamlsource.load(tmp_path / "a.yaml").data["metadata"]["owner"] == "someone"
    _new_process(monkeypatch)  # rewritten, this user's own again
    assert not pack.stat().st_mode & 0o022
    for broken in (b"not marshal data", marshal.dumps(["a list"]),
                   marshal.dumps({k: b"not marshal" for k in entries})):
        pack.write_bytes(broken)
        monkeypatch.setattr(yamlsource, "_packs", {})
        assert yamlsource.load(tmp_path / "a.yaml").data["metadata"]["owner"] == "someone"


def test_lint_reports_the_same_findings_from_the_cache(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_workspace(tmp_path / "repo")
    bad = root / "experiments/demo/tiny-llama/bad_v1.yaml"
    bad.write_text("metadata: {owner: x}\nlaunch:\n  nodes: 0\ntrain:\n  learnig_rate: 1\n")
    cold = [f.format() for f in lint(Workspace(root)).findings]
    _new_process(monkeypatch)
    assert _packs(cache)  # that run filled the cache
    warm = [f.format() for f in lint(Workspace(root)).findings]
    assert warm == cold
    assert any(":5:" in line and "learnig_rate" in line for line in warm), warm
