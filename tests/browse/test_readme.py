"""The generated files of outputs-index/ (render.browse): READMEs, SVGs, sync."""

from __future__ import annotations

import csv
import io
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from run_records import make_record

from render.browse.leaderboard import Boards
from render.browse.readme import README_HEADER, best_runs, render_index, render_readme
from render.browse.svg import render_loss_svg, render_overlay_svg
from render.browse.sync import check_readme, generated_files, stale_files, write_readme
from render.errors import FatalError
from render.markdown import esc
from render.record.evaluation import Evaluation
from render.record.index import write_entry
from render.record.results import Leaderboard
from render.record.runrecord import MAX_LOSS_POINTS, Metrics, RunRecord

MODEL_README = "alpaca/llama-3.1-8b/README.md"
BASE_CELLS = 5  # run, status, hyperparameters, train loss, links (+ metric columns)


def rec(run_id: str = "r1", **kw: Any) -> RunRecord:
    return make_record(run_id, **kw)


def table_rows(readme: str) -> list[str]:
    """Rows of a model README's run table (the experiment linked from three folders down,
    or its bare name when its path cannot be linked)."""
    return [ln for ln in readme.splitlines()
            if ln.startswith("| [") and "](../../../" in ln.split(" | ")[0]
            or ln.startswith("| sft")]


def model_readme(runs: list[RunRecord], key: str = MODEL_README) -> str:
    return render_index(runs)[key]


def cell_count(row: str) -> int:
    """Cells in a GFM table row: split on pipes not escaped by a backslash."""
    return len(re.split(r"(?<!\\)\|", row)) - 2


def header_cells(readme: str) -> int:
    """Columns of the README's run table (its header row)."""
    [header] = [ln for ln in readme.splitlines() if ln.startswith("| run | status |")]
    return cell_count(header)


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
    assert "8 runs, 2 datasets, 3 dataset/model pairs." in text
    assert "each dataset's `runs.csv`" in text
    # one row per dataset/model: counts by status, link to the model's README
    assert (
        "| alpaca | [llama-3.1-8b](alpaca/llama-3.1-8b/README.md) | 4 "
        "| 1 running, 2 succeeded, 1 failed | sft_lora_lr1e-4_v1 · r2 (0.95) "
        "| sft_lora_lr1e-4_v1 · r4 (running) |" in text
    )
    assert ("| alpaca | [qwen2.5-7b](alpaca/qwen2.5-7b/README.md) | 1 | 1 succeeded "
            "| sft_full_v1 · r5 (1.5) |") in text
    assert "| wiki | [llama-3.1-8b](wiki/llama-3.1-8b/README.md) | 3 |" in text
    # one row per dataset: its best run by its leaderboard (eval loss by default)
    assert (
        "| [alpaca](alpaca/README.md) | [5](alpaca/runs.csv) | eval loss ↓ | **0.95** "
        "| sft_lora_lr1e-4_v1 · r2 "
        "| [llama-3.1-8b](alpaca/llama-3.1-8b/README.md) |" in text
    )
    # wiki has no eval loss: nothing is ranked (final train loss says little)
    assert ("| [wiki](wiki/README.md) | [3](wiki/runs.csv) | eval loss ↓ | "
            "| no run has it yet | |") in text
    # the map has no per-run rows
    assert not table_rows(text) and "(exit 137)" not in text
    # at most 7 columns in any table
    assert max(cell_count(ln) for ln in text.splitlines() if ln.startswith("|")) <= 7


def test_top_readme_stays_small() -> None:
    runs = [
        rec(f"r{i}", dataset=f"d{i % 3}", model=f"m{i % 4}", owner="x" * 100,
            loss_points=[[s, 1.0 / s] for s in range(1, 65)])
        for i in range(600)
    ]  # fmt: skip
    files = render_index(runs)
    assert len(files["README.md"]) < 4000  # 12 model rows, 3 dataset rows
    assert sum(k.endswith(".svg") for k in files) == 600
    assert sum(k.count("/") == 2 and k.endswith("/README.md") for k in files) == 12
    assert sum(k.count("/") == 1 and k.endswith("/README.md") for k in files) == 3


def test_latest_run_per_model() -> None:
    runs = [
        rec("old", started_at="2026-01-01T00:00:00Z"),
        rec("new", status="running", started_at="2026-02-01T00:00:00Z"),
        rec("none"),  # no start time: never the latest over one that has one
    ]
    assert "| sft_lora_lr1e-4_v1 · new (running) |" in render_readme(runs)


def test_readme_is_deterministic() -> None:
    runs = sample_runs() + [
        rec("p1", loss_points=[[1, 2.0], [2, 1.5]], metrics=Metrics(eval_loss=1.1)),
        rec("p2", dataset="wiki", loss_points=[[10, 3], [20, 2.5], [30, 2.25]]),
    ]
    first = render_index(runs)
    for seed in range(5):
        shuffled = runs[:]
        random.Random(seed).shuffle(shuffled)
        assert render_index(shuffled) == first
        assert render_readme(shuffled) == first["README.md"]
    assert render_index(runs + runs) == first  # duplicates collapse to one row each
    assert set(first) == {
        "README.md",
        "summary.jsonl",  # what a publish regenerates the map from (render.browse.summary)
        "alpaca/README.md",
        "alpaca/runs.csv",
        "alpaca/top-runs.svg",  # the ranked top runs, overlaid (p1 has a curve)
        "alpaca/llama-3.1-8b/README.md",
        "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__p1.svg",
        "alpaca/qwen2.5-7b/README.md",
        "wiki/README.md",
        "wiki/runs.csv",
        "wiki/llama-3.1-8b/README.md",
        "wiki/llama-3.1-8b/sft_lora_lr1e-4_v1__p2.svg",
    }
    for name, text in first.items():
        if name == "summary.jsonl":  # JSON lines: the first says who generated it
            assert "generated by `ftops index readme`" in text.partition("\n")[0]
        elif not name.endswith("/runs.csv"):
            assert text.startswith(("<!-- Generated by `ftops index readme`", README_HEADER))


def test_readme_marks_best_run_per_dataset() -> None:
    runs = sample_runs()
    best = best_runs(runs)
    # alpaca: lowest eval_loss among succeeded (r3 failed with 0.1 does not count)
    assert best["alpaca"].run_id == "r2"
    # wiki: no eval loss anywhere -> no best by the default leaderboard
    assert "wiki" not in best
    # a leaderboard for wiki that ranks by final train loss picks r7 (r8 was cancelled)
    boards = Boards(by_dataset={"wiki": Leaderboard("final_train_loss", "lower")})
    assert best_runs(runs, boards)["wiki"].run_id == "r7"
    files = render_index(runs)
    best_rows = [
        ln for text in files.values() for ln in text.splitlines() if "**best**" in ln
    ]  # fmt: skip
    assert len(best_rows) == 1
    assert "| succeeded · 1h 02m **best** |" in best_rows[0] and "· r2 ·" in best_rows[0]
    text = files[MODEL_README]
    assert (
        "Best run of alpaca by eval loss (lower is better): **sft_lora_lr1e-4_v1** run r2 on "
        "this model (0.95)." in text
    )
    qwen = files["alpaca/qwen2.5-7b/README.md"]
    assert (
        "Best run of alpaca by eval loss (lower is better): **sft_lora_lr1e-4_v1** run r2 on "
        "[llama-3.1-8b](../../alpaca/llama-3.1-8b/README.md) (0.95)." in qwen
    )
    assert "Best run on this model: **sft_full_v1** run r5 (1.5)." in qwen
    assert "No run of wiki has eval loss yet, so none is ranked." in files[
        "wiki/llama-3.1-8b/README.md"]


def test_model_readme_header() -> None:
    text = model_readme(sample_runs())
    assert text.startswith(README_HEADER + "\n\n# alpaca / llama-3.1-8b\n")
    assert ("[Experiment index](../../README.md) · [alpaca leaderboard](../README.md) · "
            "4 runs: 1 running, 2 succeeded, 1 failed.") in text
    assert len(table_rows(text)) == 4
    assert ("| run | status | hyperparameters | train loss (final / best) | eval loss ↓ "
            "| links |") in text
    assert text.endswith("|\n")  # no run has a curve: the table ends the page


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
        loss_points=[[1, 2.5], [5, 1.25], [9, 0.75]],
        evaluations={"holdout": Evaluation(
            "succeeded", 0, "alpaca_test", 8, {"bleu-4": 12.345, "rouge-l": 20.0},
            "gs://bucket/exp/eval/holdout/generated_predictions.jsonl")},
    )
    text = model_readme([r])
    [row] = table_rows(text)
    assert row == (
        "| [sft_lora_lr1e-4_v1](../../../experiments/alpaca/llama-3.1-8b/"
        "sft_lora_lr1e-4_v1.yaml) · [r9](sft_lora_lr1e-4_v1__r9.svg) · jk "
        "| succeeded · 2m 05s **best** | finetuning_type=lora, "
        "lr=0.0001, epochs=3, lora_rank=8, zzz=not shown first | 0.5123 / 0.49 | 0.6 | 12.35 "
        "| [artifacts](https://console.cloud.google.com/storage/browser/b/x) "
        "· [tracker](http://mlflow.local/#/runs/1) "
        "· [predictions](https://storage.cloud.google.com/bucket/exp/eval/holdout/"
        "generated_predictions.jsonl) |"
    )
    # the eval loss and the evaluation's BLEU-4: two metric columns, 7 in all
    assert ("| run | status | hyperparameters | train loss (final / best) | eval loss ↓ "
            "| BLEU-4 (holdout) | links |") in text
    assert cell_count(row) == header_cells(text) == 7
    # the run's chart below the table, under a heading that names it
    assert ("### sft_lora_lr1e-4_v1 · r9\n\n"
            "![training loss of sft_lora_lr1e-4_v1 · r9](sft_lora_lr1e-4_v1__r9.svg)") in text


def test_metric_columns_follow_the_leaderboard_and_stop_at_seven() -> None:
    def ev(**scores: float) -> dict[str, Evaluation]:
        return {"holdout": Evaluation("succeeded", 0, "x", 4, dict(scores)),
                "other": Evaluation("succeeded", 0, "y", 4, {"bleu-4": 1.0})}

    runs = [rec("a", metrics=Metrics(eval_loss=1.0), evaluations=ev(**{"rouge-l": 9.0})),
            rec("b", metrics=Metrics(eval_loss=2.0), evaluations=ev(**{"rouge-l": 30.0}))]
    boards = Boards(by_dataset={"alpaca": Leaderboard("holdout/rouge-l", "higher")})
    files = render_index(runs, boards)
    text = files[MODEL_README]
    # the primary metric first (with its arrow), then eval loss; BLEU-4s do not fit
    assert ("| run | status | hyperparameters | train loss (final / best) "
            "| ROUGE-L (holdout) ↑ | eval loss | links |") in text
    assert all(cell_count(r) == 7 for r in table_rows(text))
    # the best is the highest ROUGE-L, not the lowest eval loss
    assert "**best**" in [r for r in table_rows(text) if "· b ·" in r][0]
    board = files["alpaca/README.md"]
    assert "| # | run | model | ROUGE-L (holdout) ↑ | other scores | train loss |" in board
    assert board.index("· b |") < board.index("· a |")
    # its other scores: eval loss, BLEU-4 of the same evaluation (no name), other ones'
    assert "| eval loss 2 · BLEU-4 (other) 1 |" in board


def test_hyperparameters_the_same_in_every_run_are_said_once() -> None:
    common = {"finetuning_type": "lora", "num_train_epochs": 3.0}
    runs = [rec("a", hyperparameters={**common, "learning_rate": 1e-4}),
            rec("b", hyperparameters={**common, "learning_rate": 2e-4}),
            rec("c", hyperparameters={**common, "learning_rate": 2e-4, "lora_rank": 8})]
    text = model_readme(runs)
    assert ("Every run here has finetuning_type=lora, epochs=3; the table shows the rest."
            in text)
    rows = table_rows(text)
    assert [r.split(" | ")[2] for r in rows] == ["lr=0.0001", "lr=0.0002",
                                                  "lr=0.0002, lora_rank=8"]
    # one run alone: nothing to factor out
    assert "Every run here" not in model_readme(runs[:1])


def test_charts_of_the_most_recent_runs_only() -> None:
    runs = [rec(f"r{i:03d}", started_at=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z",
                loss_points=CURVE) for i in range(45)]
    files = render_index(runs)
    text = files[MODEL_README]
    assert sum(k.endswith(".svg") for k in files) == 45  # every run has its chart file
    charts = re.findall(r"^### .* · (r\d+)$", text, re.M)
    assert charts == [f"r{i:03d}" for i in range(44, 14, -1)]  # the latest 30, newest first
    assert "the 30 most recently started runs of 45" in text
    assert all(f"[r{i:03d}](sft_lora_lr1e-4_v1__r{i:03d}.svg)" in text for i in range(45))


def test_hyperparameter_values_keep_their_type() -> None:
    runs = [rec("a", hyperparameters={"x": True}), rec("b", hyperparameters={"x": 1})]
    rows = table_rows(model_readme(runs))
    assert "| x=true |" in rows[0] and "| x=1 |" in rows[1]


def test_failed_row_shows_exit_code() -> None:
    [row] = table_rows(model_readme([rec(status="failed", exit_code=3, duration_s=9)]))
    assert "| failed (exit 3) · 9s |" in row


def test_links_are_short_labels() -> None:
    local = "file:///home/jk/ftops/outputs/experiments/alpaca/llama-3.1-8b/x/r1"
    [row] = table_rows(model_readme([rec(artifacts_url=local, artifacts_uri=local,
                                         tracker_url="not a url")]))
    assert f"[artifacts]({local})" in row  # a local run: labelled, opens where it ran
    assert "tracker" not in row  # no usable address: no link
    [row] = table_rows(model_readme([rec(artifacts_uri="gs://b/runs/a b/r1")]))
    # a bucket folder without a browse URL: its Cloud Console address, escaped
    assert "[artifacts](https://console.cloud.google.com/storage/browser/b/runs/a%20b/r1)" in row
    assert "gs://" not in row and "file://" not in row.replace(f"({local})", "")


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
        experiment_path=hostile,
        message=hostile,
        image=hostile,
        loss_points=[[1, 2.0], [2, 1.0]],
        metrics=Metrics(eval_loss=1.0),
        evaluations={"holdout": Evaluation("succeeded", 0, hostile, 1,
                                           {"bleu-4": 1.0, hostile: 2.0},
                                           "https://y/" + hostile, hostile)},
    )
    files = render_index([r, rec("r2", metrics=Metrics(eval_loss=2.0))])
    text = files[MODEL_README]
    rows = table_rows(text)
    assert len(rows) == 2, text
    row = rows[0]
    assert cell_count(row) == header_cells(text) == 7
    assert " · [r1](sft_lora_lr1e-4_v1__r1.svg) · " in row
    assert "| [artifacts](https://x/" in row
    assert "[predictions](https://y/" in row
    # the SVG is a function of the points alone
    assert files["alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r1.svg"] == render_loss_svg(
        [[1, 2.0], [2, 1.0]]
    )
    # the map shows none of these strings
    assert files["README.md"] == render_readme([rec(metrics=Metrics(eval_loss=1.0)),
                                                rec("r2", metrics=Metrics(eval_loss=2.0))])
    board_rows = [ln for ln in files["alpaca/README.md"].splitlines() if ln.startswith("| 1 |")]
    assert len(board_rows) == 1 and cell_count(board_rows[0]) == 7
    for line in [row, board_rows[0]]:
        assert "<" not in line and ">" not in line  # no raw HTML
        assert not re.search(r"(?<!\\)\]\(javascript", line)  # no javascript: link
        assert "\n" not in line and "\r" not in line
    # runs.csv: still one record per run, the hostile text kept as text
    table = list(csv.reader(io.StringIO(files["alpaca/runs.csv"])))
    assert len(table) == 3 and len({len(x) for x in table}) == 1
    owner = table[1][table[0].index("owner")]
    assert owner.lstrip("'") == hostile.replace("\r\n", "\n") or owner.lstrip("'") == hostile


def test_esc_escapes_everything_markdown_cares_about() -> None:
    assert esc("a|b") == "a\\|b"
    assert esc("`x`") == "\\`x\\`"
    assert esc("<b>&") == "&lt;b&gt;&amp;"
    assert esc("[a](b)") == "\\[a\\](b)"
    assert esc("a\nb") == "a b"
    assert esc("x" * 500).endswith("\u2026") and len(esc("x" * 500)) == 160


def test_hostile_paths_are_not_linked() -> None:
    for path in ["/etc/passwd", "https://evil/x.yaml", "../../x.yaml", ""]:
        [row] = table_rows(model_readme([rec(experiment_path=path)]))
        assert row.startswith("| sft_lora_lr1e-4_v1 · r1 · jk |"), row


def test_empty_readme() -> None:
    text = render_readme([])
    assert text.startswith(README_HEADER + "\n")
    assert "No runs recorded yet." in text
    files = render_index([])
    assert files["README.md"] == text
    assert set(files) == {"README.md", "summary.jsonl"}  # no dataset: no runs.csv


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


# ------------------------------------------------------------------- all generated files

CURVE = [[1, 2.5], [2, 2.0], [4, 1.5], [8, 1.0]]


def curve_runs() -> list[RunRecord]:
    return sample_runs() + [
        rec("c1", loss_points=CURVE, metrics=Metrics(final_train_loss=1.0)),
        rec("c2", dataset="wiki", model="qwen2.5-7b", loss_points=[[5, 0.5]]),
    ]


def on_disk(root: Path) -> dict[str, str]:
    """Every non-entry file under root."""
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in root.rglob("*")
        if p.is_file() and p.suffix != ".json"
    }


def test_write_readme_writes_every_generated_file(tmp_path: Path) -> None:
    runs = curve_runs()
    for r in runs:
        write_entry(tmp_path, r)
    write_readme(tmp_path)
    assert on_disk(tmp_path) == render_index(runs)
    assert generated_files(tmp_path) == sorted(render_index(runs))
    assert check_readme(tmp_path) and stale_files(tmp_path) == []
    assert "![training loss of sft_lora_lr1e-4_v1 · c1](sft_lora_lr1e-4_v1__c1.svg)" in (
        tmp_path / MODEL_README).read_text()
    # idempotent: nothing rewritten when nothing changed
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    write_readme(tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == mtimes


def test_stale_generated_files_are_removed(tmp_path: Path) -> None:
    runs = curve_runs()
    for r in runs:
        write_entry(tmp_path, r)
    write_readme(tmp_path)
    notes = tmp_path / "wiki/qwen2.5-7b/notes.txt"  # not a generated name: kept
    notes.write_text("mine\n")
    # the only wiki/qwen run goes (entries are never deleted by ftops; a person may)
    (tmp_path / "wiki/qwen2.5-7b/sft_lora_lr1e-4_v1__c2.json").unlink()
    # a curve for a run that has none, and a model folder with no entries at all
    (tmp_path / "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r1.svg").write_text("<svg/>")
    (tmp_path / "gone/model").mkdir(parents=True)
    (tmp_path / "gone/model/README.md").write_text("old\n")
    (tmp_path / "gone/model/x__y.svg").write_text("<svg/>")
    # the one runs.csv of every run that the index had before each dataset had its own
    (tmp_path / "runs.csv").write_text("run_id,status\nc1,succeeded\n")
    assert stale_files(tmp_path) == [
        "README.md",
        "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r1.svg",
        "gone/model/README.md",
        "gone/model/x__y.svg",
        "runs.csv",
        "summary.jsonl",
        "wiki/README.md",
        "wiki/qwen2.5-7b/README.md",
        "wiki/qwen2.5-7b/sft_lora_lr1e-4_v1__c2.svg",
        "wiki/runs.csv",
    ]
    entries_before = sorted(p.name for p in tmp_path.rglob("*.json"))
    write_readme(tmp_path)
    left = [r for r in runs if r.run_id != "c2"]
    assert on_disk(tmp_path) == {**render_index(left), "wiki/qwen2.5-7b/notes.txt": "mine\n"}
    assert not (tmp_path / "gone").exists()  # emptied folders go too
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == entries_before
    assert check_readme(tmp_path)


@pytest.mark.parametrize(
    "change",
    [
        "edit model README",
        "delete model README",
        "edit dataset README",
        "delete dataset README",
        "edit runs.csv",
        "delete runs.csv",
        "edit svg",
        "delete svg",
        "extra svg",
        "extra model README",
        "svg symlink",
    ],
)
def test_check_readme_sees_every_generated_file(tmp_path: Path, change: str) -> None:
    for r in curve_runs():
        write_entry(tmp_path, r)
    write_readme(tmp_path)
    assert check_readme(tmp_path)
    model = tmp_path / MODEL_README
    dataset = tmp_path / "alpaca/README.md"
    log = tmp_path / "alpaca/runs.csv"
    svg = tmp_path / "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__c1.svg"
    if change == "edit model README":
        model.write_text(model.read_text().replace(" · [c1](", " · [c9]("))
    elif change == "delete model README":
        model.unlink()
    elif change == "edit dataset README":
        dataset.write_text(dataset.read_text().replace("| 1 |", "| 9 |"))
    elif change == "delete dataset README":
        dataset.unlink()
    elif change == "edit runs.csv":
        log.write_text(log.read_text().replace("\nc1,", "\nc9,"))
    elif change == "delete runs.csv":
        log.unlink()
    elif change == "edit svg":
        svg.write_text(svg.read_text().replace("points=", "points=\"0 0\" x="))
    elif change == "delete svg":
        svg.unlink()
    elif change == "extra svg":
        (svg.parent / "sft_lora_lr1e-4_v1__nope.svg").write_text(svg.read_text())
    elif change == "extra model README":
        (tmp_path / "alpaca/mistral").mkdir()
        (tmp_path / "alpaca/mistral/README.md").write_text(model.read_text())
    elif change == "svg symlink":  # same bytes, but not a plain file
        target = tmp_path.parent / "elsewhere.svg"
        target.write_text(svg.read_text())
        svg.unlink()
        svg.symlink_to(target)
    assert not check_readme(tmp_path)
    assert len(stale_files(tmp_path)) == 1
    write_readme(tmp_path)
    assert check_readme(tmp_path)
    assert not svg.is_symlink()
    if change == "svg symlink":
        assert target.read_text() == svg.read_text()  # replaced, never written through


SVG_TEXT = re.compile(
    r'<!-- Generated by `ftops index readme` from the runs\' loss_points\. Do not edit by '
    r'hand\. -->\n<svg xmlns="http://www\.w3\.org/2000/svg" width="640" height="200" '
    r'viewBox="0 0 640 200">(<(rect|line) [a-z0-9 ="#.-]+/>)+'
    r'<polyline fill="none" stroke="#0969da" stroke-width="2" stroke-linecap="round" '
    r'stroke-linejoin="round" vector-effect="non-scaling-stroke" '
    r'transform="translate\([0-9]+ [0-9]+\) scale\([-0-9.e+]+ [-0-9.e+]+\) '
    r'translate\([-0-9.e+]+ [-0-9.e+]+\)" points="[-0-9.e+ ]+"/>'
    r'<g font-family="[^"<>]+" font-size="11" fill="#57606a">'
    r'(<text x="[0-9.]+" y="[0-9.]+"( text-anchor="(end|middle)")?>[-0-9.e+a-z]+</text>)+'
    r'</g></svg>\n'
)


def svg_texts(svg: str) -> list[str]:
    return re.findall(r">([^<>]*)</text>", svg)


def test_svg_chart_is_exact_and_deterministic() -> None:
    svg = render_loss_svg(CURVE)
    assert svg is not None and SVG_TEXT.fullmatch(svg), svg
    # the data area is x 62..620, y 28..170: steps 1..8 (558/7 per step), loss 1.0..2.5
    assert 'transform="translate(62 170) scale(79.7143 -94.6667) translate(-1 -1)"' in svg
    assert 'points="1 2.5 2 2 4 1.5 8 1"/>' in svg
    # labelled axes: loss at the top, middle and bottom, the first and last step
    assert svg_texts(svg) == ["2.5", "1.75", "1", "1", "8", "step", "loss"]
    # equal values give equal text (1 == 1.0), whatever came first
    assert render_loss_svg([[1.0, 2.5], [2.0, 2], [4, 1.5], [8, 1.0]]) == svg
    assert render_loss_svg([tuple(p) for p in CURVE]) == svg
    # degenerate curves: one point (a dot), a flat loss (a line in the middle)
    one = render_loss_svg([[5, 0.5]])
    assert one is not None and "translate(341 99) scale(1 -1) translate(-5 -0.5)" in one
    flat = render_loss_svg([[1, 0.5], [2, 0.5]])
    assert flat is not None and "translate(62 99) scale(558 -1)" in flat
    big = render_loss_svg([[10**6 + i, 1e-5 * i] for i in range(MAX_LOSS_POINTS)])
    assert big is not None and SVG_TEXT.fullmatch(big)


def test_overlay_svg_letters_each_run() -> None:
    svg = render_overlay_svg([CURVE, [[2, 3.0], [16, 0.5]], "not points", [[1, 1.0]]])
    assert svg is not None
    assert svg.count("<polyline") == 3  # the unusable run is left out, its letter kept
    # one shared scale: steps 1..16, loss 0.5..3
    assert svg_texts(svg)[:5] == ["3", "1.75", "0.5", "1", "16"]
    assert re.findall(r">([A-H])</text>", svg) == ["A", "B", "D"]
    assert render_overlay_svg(["x", None]) is None


@pytest.mark.parametrize(
    "points",
    [
        [],
        [[1, "<script>alert(1)</script>"]],
        [["</svg><script>", 1]],
        [[1, float("nan")], [2, 1.0]],
        [[1, float("inf")], [2, 1.0]],
        [[1, 2, 3]],
        [[1]],
        [[1, [2]]],
        [{"a": 1, "b": 2}],
        ["12"],
        [[1, None]],
        [[s, 1.0] for s in range(MAX_LOSS_POINTS + 1)],
        "1 2",
        None,
        7,
    ],
)
def test_hostile_points_never_reach_an_svg(points: Any) -> None:
    assert render_loss_svg(points) is None
    files = render_index([rec(loss_points=points, owner="<svg onload=alert(1)>")])
    assert [k for k in files if k.endswith(".svg")] == []
    [row] = table_rows(files[MODEL_README])
    assert cell_count(row) == BASE_CELLS and ".svg)" not in row


def test_odd_but_valid_names_make_safe_file_names() -> None:
    runs = [
        rec("r-1.x", experiment="a+b", loss_points=CURVE),
        rec("R_2", experiment="x.y-z_", loss_points=CURVE),
        rec("3", experiment="1", owner="| ![x](javascript:alert(1)) <b>", loss_points=CURVE),
    ]
    files = render_index(runs)
    svgs = sorted(k for k in files if k.endswith(".svg"))
    assert svgs == [
        "alpaca/llama-3.1-8b/1__3.svg",
        "alpaca/llama-3.1-8b/a+b__r-1.x.svg",
        "alpaca/llama-3.1-8b/x.y-z___R_2.svg",
    ]
    assert all(files[k] == render_loss_svg(CURVE) for k in svgs)
    rows = table_rows(files[MODEL_README])
    assert len(rows) == 3 and all(cell_count(r) == BASE_CELLS for r in rows)
    assert " · [3](1__3.svg) · " in rows[0] and "<b>" not in rows[0]


@pytest.mark.parametrize("field", ["dataset", "model", "experiment", "run_id"])
def test_names_that_cannot_be_files_are_refused(field: str) -> None:
    with pytest.raises(FatalError, match=field):
        render_index([rec(**{field: "../x"}, loss_points=CURVE)])


@settings(max_examples=200, deadline=None)
@given(owner=st.text(max_size=300), msg=st.text(max_size=50))
def test_any_owner_keeps_the_row_shape(owner: str, msg: str) -> None:
    rows = table_rows(model_readme([rec(owner=owner, hyperparameters={msg or "k": msg})]))
    assert len(rows) == 1
    assert cell_count(rows[0]) == BASE_CELLS
