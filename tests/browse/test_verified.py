"""`ftops index readme` and `ftops index check` redo only the folders changed since the
generated files were last known current (render.browse.verified): whatever changed, the
answer must be the one a full regeneration gives, and the work must be that of the
changed folders only."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from test_update import full, run, snapshot

from render.browse import sync, verified
from render.browse.leaderboard import Boards
from render.browse.sync import stale_files, write_readme
from render.errors import FatalError
from render.record.index import write_entry


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def _index(tmp_path: Path, n: int = 30) -> tuple[Path, list[Any]]:
    rng = random.Random(7)
    runs = [run(i, rng) for i in range(n)]
    root = tmp_path / "repo" / "outputs-index"
    for r in runs:
        write_entry(root, r)
    time.sleep(verified.RACY_NS / 1e9)  # entries written just now would be racily clean
    write_readme(root, Boards())
    return root, runs


def _no_full(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> list[str]:
        raise AssertionError("read and regenerated every entry")

    monkeypatch.setattr(sync, "_sync_all", refuse)


def test_nothing_changed_reads_no_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                         ) -> None:
    root, _ = _index(tmp_path)
    _no_full(monkeypatch)
    monkeypatch.setattr(sync, "updated_files", lambda *a: pytest.fail("rendered a folder"))
    assert stale_files(root, Boards()) == []
    assert write_readme(root, Boards()) == root / "README.md"


def test_a_new_entry_redoes_its_folder_only_and_equals_a_full_regeneration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, runs = _index(tmp_path)
    new = run(99, random.Random(1), dataset="alpaca", model="qwen2.5-7b")
    write_entry(root, new)
    expected = full(tmp_path, [*runs, new])
    _no_full(monkeypatch)
    stale = stale_files(root, Boards())
    assert "alpaca/qwen2.5-7b/README.md" in stale and "README.md" in stale
    assert not any(p.startswith("wiki/") for p in stale)  # the other dataset: untouched
    write_readme(root, Boards())
    assert snapshot(root) == expected
    assert stale_files(root, Boards()) == []


@pytest.mark.parametrize("rel", ["alpaca/llama-3.1-8b/README.md", "wiki/README.md",
                                 "wiki/runs.csv", "README.md", "summary.jsonl"])
def test_a_hand_edit_of_the_same_size_is_found(tmp_path: Path, rel: str) -> None:
    """Same size, same mtime put back: the inode's change time still tells."""
    root, _ = _index(tmp_path)
    path = root / rel
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-2] = ord("X") if data[-2] != ord("X") else ord("Y")
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert rel in stale_files(root, Boards())
    write_readme(root, Boards())
    assert stale_files(root, Boards()) == []


def test_a_change_right_before_the_scan_is_not_trusted(tmp_path: Path) -> None:
    """A file changed within the racy window of the scan that signed it is not kept in
    the state (its clock may not have moved since): it counts as changed next time."""
    root, _ = _index(tmp_path)
    fp = verified.fingerprint(Boards())
    readme = root / "alpaca" / "llama-3.1-8b" / "README.md"
    readme.write_bytes(readme.read_bytes())  # just now
    verified.save(root, fp, verified.scan(root))
    state = verified.load(root, fp)
    assert state is not None
    assert "alpaca/llama-3.1-8b/" not in state.folders and "wiki/" in state.folders
    now = verified.scan(root)
    assert now is not None
    assert verified.changed_folders(state, now.folders) == {("alpaca", "llama-3.1-8b")}


def test_a_removed_folder_and_a_new_dataset(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    root, runs = _index(tmp_path)
    shutil.rmtree(root / "wiki" / "gemma-2-2b")
    new = run(98, random.Random(2), dataset="gsm8k", model="gemma-2-2b")
    write_entry(root, new)
    kept = [r for r in runs if (r.dataset, r.model) != ("wiki", "gemma-2-2b")]
    expected = full(tmp_path, [*kept, new])
    _no_full(monkeypatch)
    write_readme(root, Boards())
    assert snapshot(root) == expected


def test_what_the_state_cannot_say_is_redone_in_full(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    root, runs = _index(tmp_path)
    calls: list[bool] = []
    real = sync._sync_all

    def counted(*args: Any, **kwargs: Any) -> list[str]:
        calls.append(True)
        return real(*args, **kwargs)

    monkeypatch.setattr(sync, "_sync_all", counted)
    # other leaderboards: the state says nothing
    boards = Boards(by_dataset={"alpaca": Boards().default.__class__(
        "final_train_loss", "lower", "test")})
    stale_files(root, boards)
    assert calls == [True]
    # a state this user does not own alone (group-writable) is not read
    state_file = next((tmp_path / "cache" / "ftops" / "index-state").glob("*.marshal"))
    state_file.chmod(0o664)
    assert stale_files(root, Boards()) == []
    assert calls == [True, True]
    # a linked dataset folder: the full regeneration decides
    (root / "linked").symlink_to(root / "wiki")
    assert verified.scan(root) is None


def test_a_file_changed_while_a_run_read_the_index_is_redone_next_time(
        tmp_path: Path) -> None:
    """An entry written by someone else while a run reads the index no longer matches
    the signature the run began with (which is what the state keeps): the next run
    redoes its folder."""
    root, _ = _index(tmp_path)
    fp = verified.fingerprint(Boards())
    before = verified.scan(root)
    assert before is not None
    entry = next((root / "wiki").glob("*/*.json"))
    entry.write_text(entry.read_text())  # the same bytes, written again meanwhile
    verified.save(root, fp, before)
    state = verified.load(root, fp)
    assert state is not None
    rel = entry.relative_to(root).as_posix()
    now = verified.scan(root)
    assert now is not None
    assert verified.changed_folders(state, now.folders) == {tuple(rel.split("/")[:2])}


@pytest.mark.parametrize("place", ["wiki/stray.json", "stray.json",
                                   "wiki/qwen2.5-7b/sub/stray.json",
                                   "wiki/qwen2.5-7b/.stray.json", ".hidden/stray.json",
                                   "link"])
def test_what_the_entry_loader_reads_beyond_the_signatures_goes_to_the_full_pass(
        tmp_path: Path, place: str) -> None:
    """The loader reads every .json at any depth (hidden ones too) and follows links;
    the signatures cover the files of three levels. Anything beyond them is the full
    pass's to judge: a misplaced entry is the same error with or without a state."""
    root, _ = _index(tmp_path)
    entry = next((root / "wiki").glob("*/*.json"))
    if place == "link":  # an entry that is a link: its target can change unseen
        target = tmp_path / "elsewhere.json"
        target.write_bytes(entry.read_bytes())
        entry.unlink()
        entry.symlink_to(target)
    else:
        (root / place).parent.mkdir(parents=True, exist_ok=True)
        (root / place).write_bytes(entry.read_bytes())
    assert verified.scan(root) is None
    if place != "link":
        with pytest.raises(FatalError, match="stored at the wrong path"):
            stale_files(root, Boards())
