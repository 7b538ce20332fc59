"""outputs-index/<dataset>/runs.csv (render.browse.runlog): one row per run that pandas
and a spreadsheet load as they should, one file per dataset with that dataset's
evaluation columns, and no cell a spreadsheet would run as a formula."""

from __future__ import annotations

import csv
import io
import random
from typing import Any

import pytest
from run_records import make_record

from render.browse.readme import render_index
from render.browse.runlog import field
from render.record.evaluation import Evaluation
from render.record.runrecord import Metrics, RunRecord


def rec(run_id: str, **kw: Any) -> RunRecord:
    return make_record(run_id, **kw)


def rows(runs: list[RunRecord]) -> list[dict[str, str]]:
    """Every dataset's runs.csv rows, in path order."""
    files = render_index(runs)
    return [row for path in sorted(files) if path.endswith("/runs.csv")
            for row in csv.DictReader(io.StringIO(files[path]))]


def sample() -> list[RunRecord]:
    return [
        rec("r1", duration_s=7200.0, nodes=2, gpus_per_node=8, gpu_type="h100-80gb",
            hyperparameters={"learning_rate": 1e-4, "lora_rank": 8, "stage": "sft",
                             "finetuning_type": "lora"},
            metrics=Metrics(final_train_loss=0.5, best_train_loss=0.4, eval_loss=0.75,
                            total_steps=300),
            artifacts_url="https://console.cloud.google.com/storage/browser/b/r1",
            tracker_url="https://mlflow.example.com/#/experiments/1/runs/abc",
            evaluations={"holdout": Evaluation("succeeded", 0, "x", 8,
                                               {"bleu-4": 12.5, "rouge-l": 20.0},
                                               "gs://b/r1/eval/holdout/"
                                               "generated_predictions.jsonl")}),
        rec("r2", dataset="wiki", status="failed", exit_code=137, message="OOM, killed"),
        rec("r3", model="qwen2.5-7b", experiment="sft_v2",
            experiment_path="experiments/alpaca/qwen2.5-7b/sft_v2.yaml"),
    ]


def test_one_row_per_run_with_its_numbers() -> None:
    table = rows(sample())
    assert [r["run_id"] for r in table] == ["r1", "r3", "r2"]  # by dataset, model, run
    r1 = table[0]
    assert (r1["status"], r1["dataset"], r1["model"], r1["owner"]) == (
        "succeeded", "alpaca", "llama-3.1-8b", "jk")
    assert r1["learning_rate"] == "0.0001" and r1["lora_rank"] == "8"
    assert r1["duration_s"] == "7200.0" and r1["gpu_hours"] == "32.0"  # 2 h x 16 GPUs
    assert (r1["final_train_loss"], r1["eval_loss"], r1["total_steps"]) == ("0.5", "0.75",
                                                                           "300")
    assert r1["holdout/bleu-4"] == "12.5" and r1["holdout/status"] == "succeeded"
    assert r1["holdout/predictions"].endswith("/eval/holdout/generated_predictions.jsonl")
    assert r1["tracker_url"].startswith("https://mlflow.example.com/")
    assert r1["entry"] == "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r1.json"
    r2 = table[2]
    assert (r2["exit_code"], r2["message"]) == ("137", "OOM, killed")
    assert r2["gpu_hours"] == ""  # no duration
    assert table[1]["holdout/bleu-4"] == ""  # alpaca's file has the column, r3 no value
    assert "holdout/bleu-4" not in r2  # wiki's file: no run of wiki was evaluated


def test_one_file_per_dataset() -> None:
    files = render_index(sample())
    assert sorted(p for p in files if p.endswith(".csv")) == ["alpaca/runs.csv",
                                                               "wiki/runs.csv"]
    assert "runs.csv" not in files  # no file of every run at the top
    assert [r["run_id"] for r in csv.DictReader(io.StringIO(files["wiki/runs.csv"]))] == [
        "r2"]
    assert "wiki/runs.csv" in files["README.md"] and "(runs.csv)" in files["wiki/README.md"]


def test_pandas_reads_it() -> None:
    import pandas as pd

    files = render_index(sample())
    # every run in one table, as runlog's docstring says
    frame = pd.concat([pd.read_csv(io.StringIO(files[p])) for p in sorted(files)
                       if p.endswith("/runs.csv")], ignore_index=True)
    assert list(frame["run_id"]) == ["r1", "r3", "r2"]
    assert frame["eval_loss"].dtype == float and frame.loc[0, "holdout/bleu-4"] == 12.5
    assert frame.loc[0, "gpu_hours"] == 32.0 and pd.isna(frame.loc[2, "holdout/bleu-4"])


def test_deterministic_for_any_order() -> None:
    runs = sample()
    first = {p: t for p, t in render_index(runs).items() if p.endswith(".csv")}
    for seed in range(3):
        shuffled = runs[:]
        random.Random(seed).shuffle(shuffled)
        assert {p: t for p, t in render_index(shuffled).items() if p.endswith(".csv")
                } == first


FORMULAS = ["=HYPERLINK(\"http://evil\",\"x\")", "+1+1", "-1+2", "@SUM(A1)", "\t=1",
            "\r=1", "  =1", "\uff1d1", "=cmd|' /C calc'!A0"]


def test_a_column_name_cannot_be_a_formula_either() -> None:
    r = rec("r1", evaluations={"=x": Evaluation("succeeded", 0, "d", 1, {"bleu-4": 1.0})})
    header = next(csv.reader(io.StringIO(render_index([r])["alpaca/runs.csv"])))
    assert "'=x/bleu-4" in header  # (entries refuse such a name; a record made elsewhere)


@pytest.mark.parametrize("text", FORMULAS)
def test_no_cell_becomes_a_formula(text: str) -> None:
    r = rec("r1", owner=text, message=text, hyperparameters={"learning_rate": text},
            evaluations={"holdout": Evaluation("succeeded", 0, text, 1, {text: 1.0}, text)})
    raw = render_index([r])["alpaca/runs.csv"]
    table = list(csv.reader(io.StringIO(raw)))
    assert len(table) == 2 and len(table[0]) == len(table[1])
    header, row = table
    for name in ("owner", "message", "learning_rate", "holdout/predictions"):
        assert row[header.index(name)] == "'" + text, name
    # a column named by a metric key starts with the evaluation's name: text
    assert f"holdout/{text}" in header
    # whatever the text, no cell starts with a formula character
    for cell in row + header:
        first = cell.lstrip(" ")[:1]
        assert not first or first not in "=+-@\t\r\uff1d" or cell.startswith("'"), cell


def test_numbers_stay_numbers_and_text_is_quoted() -> None:
    r = rec("r1", metrics=Metrics(final_train_loss=-0.5), owner='a,"b"\nc')
    [row] = rows([r])
    assert row["final_train_loss"] == "-0.5"  # a negative number is a number
    assert row["owner"] == 'a,"b"\nc'  # quoted, round-trips
    assert field("-x") == "'-x" and field("plain") == "plain"
    assert field('say "hi", ok') == '"say ""hi"", ok"'
