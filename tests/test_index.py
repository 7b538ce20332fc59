"""outputs-index/ layout and README generation (render.index): pure files, no git."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from render.errors import FatalError
from render.index import (
    README_HEADER,
    best_runs,
    check_readme,
    esc,
    load_index,
    merge_records,
    render_readme,
    write_entry,
    write_readme,
)
from render.record import Metrics, RunRecord


def rec(run_id: str = "r1", **kw: Any) -> RunRecord:
    base: dict[str, Any] = {
        "run_id": run_id,
        "experiment": "sft_lora_lr1e-4_v1",
        "experiment_path": "experiments/alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1.yaml",
        "dataset": "alpaca",
        "model": "llama-3.1-8b",
        "config_hash": "sha256:abc",
        "git_sha": "0" * 40,
        "owner": "jk",
        "status": "succeeded",
    }
    base.update(kw)
    return RunRecord(**base)


def table_rows(readme: str) -> list[str]:
    """Rows of the per-model run tables (not the summary table)."""
    return [ln for ln in readme.splitlines() if ln.startswith("| [") or ln.startswith("| sft")]


def cell_count(row: str) -> int:
    """Cells in a GFM table row: split on pipes not escaped by a backslash."""
    return len(re.split(r"(?<!\\)\|", row)) - 2


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


# ------------------------------------------------------------------- README


def sample_runs() -> list[RunRecord]:
    return [
        rec("r1", metrics=Metrics(final_train_loss=1.0, best_train_loss=0.9, eval_loss=1.2)),
        rec("r2", metrics=Metrics(final_train_loss=0.8, eval_loss=0.95), duration_s=3725.0),
        rec("r3", status="failed", exit_code=137, metrics=Metrics(eval_loss=0.1)),
        rec("r4", status="running"),
        rec(
            "r5",
            model="qwen2.5-7b",
            experiment="sft_full_v1",
            experiment_path="experiments/alpaca/qwen2.5-7b/sft_full_v1.yaml",
            metrics=Metrics(eval_loss=1.5),
        ),  # fmt: skip
        rec("r6", dataset="wiki", metrics=Metrics(final_train_loss=2.0)),
        rec("r7", dataset="wiki", metrics=Metrics(final_train_loss=1.5)),
        rec("r8", dataset="wiki", status="cancelled", metrics=Metrics(final_train_loss=0.1)),
    ]


def test_readme_header_and_summary() -> None:
    text = render_readme(sample_runs())
    assert text.splitlines()[0] == README_HEADER
    assert text.endswith("\n")
    assert "| alpaca | [llama-3.1-8b](#alpaca--llama-31-8b) | 4 | 0 | 1 | 2 | 1 | 0 |" in text
    assert "| alpaca | [qwen2.5-7b](#alpaca--qwen25-7b) | 1 | 0 | 0 | 1 | 0 | 0 |" in text
    assert "| wiki | [llama-3.1-8b](#wiki--llama-31-8b) | 3 |" in text
    assert "## alpaca" in text and "### alpaca / qwen2.5-7b" in text and "## wiki" in text


def test_readme_is_deterministic() -> None:
    runs = sample_runs()
    first = render_readme(runs)
    for seed in range(5):
        shuffled = runs[:]
        random.Random(seed).shuffle(shuffled)
        assert render_readme(shuffled) == first
    assert render_readme(runs + runs) == first  # duplicates collapse to one row each


def test_readme_marks_best_run_per_dataset() -> None:
    runs = sample_runs()
    best = best_runs(runs)
    # alpaca: lowest eval_loss among succeeded (r3 failed with 0.1 does not count)
    assert best["alpaca"].run_id == "r2"
    # wiki: no eval loss anywhere -> lowest final train loss among succeeded
    assert best["wiki"].run_id == "r7"
    text = render_readme(runs)
    best_rows = [ln for ln in text.splitlines() if "**best**" in ln]
    assert len(best_rows) == 2
    assert "| r2 | succeeded **best** |" in best_rows[0]
    assert "| r7 | succeeded **best** |" in best_rows[1]
    assert "Best run: **sft_lora_lr1e-4_v1** run r2 on llama-3.1-8b (eval loss 0.95)." in text
    assert "(final train loss 1.5)" in text


def test_readme_row_content() -> None:
    r = rec(
        "r9",
        metrics=Metrics(final_train_loss=0.51234, best_train_loss=0.49, eval_loss=0.6),
        hyperparameters={
            "learning_rate": 1e-4,
            "num_train_epochs": 3.0,
            "lora_rank": 8,
            "finetuning_type": "lora",
            "zzz": "not shown first",
        },
        duration_s=125,
        artifacts_url="https://console.cloud.google.com/storage/browser/b/x",
        loss_curve="gs://bucket/exp/training_loss.png",
        tracker_url="http://mlflow.local/#/runs/1",
    )
    [row] = table_rows(render_readme([r]))
    assert row.startswith(
        "| [sft_lora_lr1e-4_v1](../experiments/alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1.yaml)"
        " | r9 | succeeded **best** | jk | finetuning_type=lora, lr=0.0001, epochs=3, "
        "lora_rank=8, zzz=not shown first | 0.5123 / 0.49 | 0.6 | 2m 05s | "
    )
    assert "[artifacts](https://console.cloud.google.com/storage/browser/b/x)" in row
    assert "[loss curve](https://storage.cloud.google.com/bucket/exp/training_loss.png)" in row
    assert "[tracker](http://mlflow.local/#/runs/1)" in row
    assert cell_count(row) == 9


def test_hyperparameter_values_keep_their_type() -> None:
    runs = [rec("a", hyperparameters={"x": True}), rec("b", hyperparameters={"x": 1})]
    rows = table_rows(render_readme(runs))
    assert "| x=true |" in rows[0] and "| x=1 |" in rows[1]


def test_failed_row_shows_exit_code() -> None:
    [row] = table_rows(render_readme([rec(status="failed", exit_code=3)]))
    assert "| failed (exit 3) |" in row


HOSTILE = [
    "a | b",
    "line1\nline2\r\n| --- |",
    "`code` ``` <script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "back\\slash\\|pipe",
    "&#124; &lt;",
    "\u2028sep\x00nul\x1b[31m",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_cannot_break_the_table(hostile: str) -> None:
    r = rec(
        owner=hostile,
        hyperparameters={"learning_rate": hostile},
        artifacts_url="https://x/" + hostile,
        tracker_url=hostile,
        loss_curve="javascript:" + hostile,
    )
    text = render_readme([r])
    rows = table_rows(text)
    assert len(rows) == 1, text
    [row] = rows
    assert cell_count(row) == 9
    assert "<" not in row and ">" not in row  # no raw HTML
    assert not re.search(r"(?<!\\)\]\(javascript", row)  # no javascript: link
    assert "\n" not in row and "\r" not in row


def test_esc_escapes_everything_markdown_cares_about() -> None:
    assert esc("a|b") == "a\\|b"
    assert esc("`x`") == "\\`x\\`"
    assert esc("<b>&") == "&lt;b&gt;&amp;"
    assert esc("[a](b)") == "\\[a\\](b)"
    assert esc("a\nb") == "a b"
    assert esc("x" * 500).endswith("\u2026") and len(esc("x" * 500)) == 160


def test_hostile_paths_are_not_linked() -> None:
    for path in ["/etc/passwd", "https://evil/x.yaml", "../../x.yaml", ""]:
        [row] = table_rows(render_readme([rec(experiment_path=path)]))
        assert row.startswith("| sft_lora_lr1e-4_v1 | r1 |"), row


def test_empty_readme() -> None:
    text = render_readme([])
    assert text.startswith(README_HEADER + "\n")
    assert "No runs recorded yet." in text


def test_write_and_check_readme(tmp_path: Path) -> None:
    assert not check_readme(tmp_path)  # missing
    for r in sample_runs():
        write_entry(tmp_path, r)
    path = write_readme(tmp_path)
    assert path == tmp_path / "README.md"
    assert path.read_text() == render_readme(sample_runs())
    assert check_readme(tmp_path)
    # a new entry makes it stale
    write_entry(tmp_path, rec("r10"))
    assert not check_readme(tmp_path)
    write_readme(tmp_path)
    assert check_readme(tmp_path)
    # a hand edit makes it stale
    path.write_text(path.read_text() + "\nhand edit\n")
    assert not check_readme(tmp_path)


try:  # property test when hypothesis is installed (it is a dev dependency)
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=200, deadline=None)
    @given(owner=st.text(max_size=300), msg=st.text(max_size=50))
    def test_any_owner_keeps_the_row_shape(owner: str, msg: str) -> None:
        rows = table_rows(render_readme([rec(owner=owner, hyperparameters={msg or "k": msg})]))
        assert len(rows) == 1
        assert cell_count(rows[0]) == 9

except ImportError:  # pragma: no cover
    pass
