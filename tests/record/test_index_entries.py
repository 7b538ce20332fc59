"""outputs-index/ entries (render.record.index): layout, the merge rule, validation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from run_records import make_record

from render.errors import FatalError
from render.record.index import load_index, merge_records, write_entry
from render.record.runrecord import MAX_LOSS_POINTS, Metrics, RunRecord


def rec(run_id: str = "r1", **kw: Any) -> RunRecord:
    return make_record(run_id, **kw)





# ------------------------------------------------------------------- entries


def test_write_entry_layout_and_content(tmp_path: Path) -> None:
    r = rec()
    path = write_entry(tmp_path, r)
    assert path == tmp_path / "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r1.json"
    assert path.read_text() == r.to_json()
    assert load_index(tmp_path) == [r]


def test_write_entry_lifecycle_merge(tmp_path: Path) -> None:
    write_entry(tmp_path, rec(status="running"))
    write_entry(tmp_path, rec(status="launched"))  # stale: ignored
    assert load_index(tmp_path)[0].status == "running"
    write_entry(tmp_path, rec(status="failed", exit_code=1))
    write_entry(tmp_path, rec(status="running"))  # stale: ignored
    [entry] = load_index(tmp_path)
    assert (entry.status, entry.exit_code) == ("failed", 1)
    # equal rank: the incoming (fresher) copy wins
    write_entry(tmp_path, rec(status="cancelled", message="by jk"))
    assert load_index(tmp_path)[0].status == "cancelled"


def test_merge_records_rule() -> None:
    launched, running, done = rec(status="launched"), rec(status="running"), rec()
    assert merge_records(None, launched) is launched
    assert merge_records(launched, running) is running
    assert merge_records(running, launched) is running
    assert merge_records(done, running) is done
    same = rec(owner="other")
    assert merge_records(done, same) is same
    assert merge_records(done, same, replace_equal=False) is done


@pytest.mark.parametrize(
    "field,value",
    [("dataset", "../etc"), ("model", "a/b"), ("experiment", ".hidden"), ("run_id", "")],
)
def test_write_entry_rejects_unsafe_paths(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(FatalError, match=field):
        write_entry(tmp_path, rec(**{field: value}))
    assert not any(tmp_path.parent.glob("etc*"))


def test_run_id_cannot_contain_the_separator(tmp_path: Path) -> None:
    # "a__b" + "__" + "c" and "a" + "__" + "b__c" would name the same file
    with pytest.raises(FatalError, match="'__'"):
        write_entry(tmp_path, rec("b__c", experiment="a"))


def test_write_entry_rejects_unknown_status(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="unknown status"):
        write_entry(tmp_path, rec(status="done"))


def test_load_index_names_corrupt_file(tmp_path: Path) -> None:
    root = tmp_path / "outputs-index"
    write_entry(root, rec())
    bad = root / "alpaca/llama-3.1-8b/broken__r2.json"
    bad.write_text('{"run_id": "r2", ')
    with pytest.raises(FatalError) as err:
        load_index(root)
    assert "outputs-index/alpaca/llama-3.1-8b/broken__r2.json" in str(err.value)
    assert "reconcile" in str(err.value)


@pytest.mark.parametrize(
    "content",
    [
        "[1, 2]",
        '{"run_id": "r2"}',
        json.dumps({**json.loads(rec("r2").to_json()), "status": "weird"}),
        json.dumps({**json.loads(rec("r2").to_json()), "owner": ["x"]}),
        json.dumps({**json.loads(rec("r2").to_json()), "metrics": {"eval_loss": "low"}}),
    ],
)
def test_load_index_rejects_invalid_entries(tmp_path: Path, content: str) -> None:
    bad = tmp_path / "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r2.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(content)
    with pytest.raises(FatalError, match="sft_lora_lr1e-4_v1__r2.json"):
        load_index(tmp_path)


def test_load_index_rejects_misplaced_entry(tmp_path: Path) -> None:
    wrong = tmp_path / "alpaca/other-model/x__r1.json"
    wrong.parent.mkdir(parents=True)
    wrong.write_text(rec().to_json())
    with pytest.raises(FatalError, match="wrong path.*alpaca/llama-3.1-8b/sft_lora"):
        load_index(tmp_path)


def test_load_index_missing_dir_is_empty(tmp_path: Path) -> None:
    assert load_index(tmp_path / "nope") == []


# ------------------------------------------------------------------- loss_points in entries


def test_entries_without_loss_points_stay_byte_identical(tmp_path: Path) -> None:
    r = rec(metrics=Metrics(eval_loss=1.0), hyperparameters={"lr": 1e-4, "n": {"a": [1]}})
    old = json.loads(r.to_json())
    assert "loss_points" not in old
    assert r.to_json() == json.dumps(old, indent=2, sort_keys=True) + "\n"
    # an entry written before the field existed loads, with no points
    path = tmp_path / r.index_key
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(old, indent=2, sort_keys=True) + "\n")
    [loaded] = load_index(tmp_path)
    assert loaded.loss_points == [] and loaded == r
    assert RunRecord.from_dict({**old, "loss_points": None}).loss_points == []


def test_loss_points_are_one_compact_line() -> None:
    r = rec(loss_points=[[1, 2.5], [2, 2.25]], hyperparameters={"lr": 1e-4})
    text = r.to_json()
    assert '\n  "loss_points": [[1, 2.5], [2, 2.25]],\n  "message": ""' in text
    assert json.loads(text) == json.loads(json.dumps(json.loads(text)))
    assert RunRecord.from_json(text) == r
    # everything but the points is laid out as before
    rest = {k: v for k, v in json.loads(text).items() if k != "loss_points"}
    assert [ln for ln in text.splitlines() if "loss_points" not in ln] == (
        json.dumps(rest, indent=2, sort_keys=True).splitlines()
    )


@pytest.mark.parametrize(
    "points",
    [
        [[1, "x"]],
        [[1, True]],
        [[1, float("nan")]],
        [[1, 2, 3]],
        [1, 2],
        {"a": 1},
        [[2, 1.0], [1, 0.5]],
        [[1, 1.0], [1, 0.5]],
        [[s, 1.0] for s in range(MAX_LOSS_POINTS + 1)],
    ],
)
def test_load_index_rejects_bad_loss_points(tmp_path: Path, points: Any) -> None:
    bad = tmp_path / "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r2.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({**json.loads(rec("r2").to_json()), "loss_points": points}))
    with pytest.raises(FatalError, match="loss_points"):
        load_index(tmp_path)
