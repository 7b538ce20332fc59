"""Evaluations after training in the run record (render.record.evaluation): what the
hook reads from `<run>/eval/<name>/`, how records keep it, and that records written
before it existed load and write back byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from run_records import make_record

from render.errors import FatalError
from render.record.evaluation import EvalRun, Evaluation, collect, read_metrics
from render.record.hook import mlflow_ui_base
from render.record.index import load_index, read_entry, write_entry
from render.record.runrecord import RunRecord

OLD_ENTRY = Path(__file__).resolve().parents[1] / "fixtures/records/run-before-evaluations.json"
PREDICT = {  # LLaMA-Factory's predict_results.json (train/sft/workflow.py)
    "predict_bleu-4": 1.364325, "predict_model_preparation_time": 0.0034,
    "predict_rouge-1": 0.0, "predict_rouge-2": 0.0, "predict_rouge-l": 0.0,
    "predict_runtime": 8.8528, "predict_samples_per_second": 0.904,
    "predict_steps_per_second": 0.226,
}


def eval_folder(run: Path, name: str = "holdout", results: dict[str, object] | None = None,
                predictions: int = 3) -> Path:
    folder = run / "eval" / name
    folder.mkdir(parents=True)
    if results is not None:
        (folder / "predict_results.json").write_text(json.dumps(results))
        (folder / "all_results.json").write_text(json.dumps(results))
    lines = [json.dumps({"prompt": "p", "predict": "x", "label": "y"})] * predictions
    if predictions:
        (folder / "generated_predictions.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_collect_a_finished_evaluation(tmp_path: Path) -> None:
    eval_folder(tmp_path, results=PREDICT)
    ev = collect(tmp_path, EvalRun("holdout", {"eval_dataset": "demo_eval"}, 0),
                 "gs://b/run/eval/holdout/generated_predictions.jsonl")
    assert ev.status == "succeeded" and ev.exit_code == 0 and ev.message == ""
    assert ev.dataset == "demo_eval" and ev.samples == 3
    assert ev.metrics["bleu-4"] == 1.364325 and ev.metrics["rouge-l"] == 0.0
    assert ev.metrics["runtime"] == 8.8528 and "predict_runtime" not in ev.metrics
    # a link to the predictions, never their content
    assert ev.predictions == "gs://b/run/eval/holdout/generated_predictions.jsonl"


def test_collect_a_failed_or_empty_evaluation(tmp_path: Path) -> None:
    eval_folder(tmp_path, "crashed", predictions=0)
    ev = collect(tmp_path, EvalRun("crashed", {"dataset": "demo", "val_size": 0.1}, 1), "uri")
    assert (ev.status, ev.exit_code, ev.predictions, ev.samples) == ("failed", 1, "", None)
    assert ev.message == "llamafactory-cli exited with 1; see logs/eval-crashed.log"
    assert ev.dataset == "validation split of demo (val_size 0.1)"
    eval_folder(tmp_path, "silent", results=None)
    ev = collect(tmp_path, EvalRun("silent", {"eval_dataset": "x"}, 0), "uri")
    assert ev.status == "failed" and ev.message == "no predict_results.json was written"


def test_read_metrics_keeps_finite_numbers_only(tmp_path: Path) -> None:
    (tmp_path / "all_results.json").write_text(
        '{"predict_bleu-4": 2, "eval_loss": 1.5, "predict_x": "text", "predict_y": NaN,'
        ' "predict_z": true}')
    assert read_metrics(tmp_path) == {"bleu-4": 2.0, "eval_loss": 1.5}
    (tmp_path / "predict_results.json").write_text("[1, 2]")  # not an object: fall back
    assert read_metrics(tmp_path)["bleu-4"] == 2.0


def test_records_before_evaluations_stay_byte_identical(tmp_path: Path) -> None:
    old = OLD_ENTRY.read_text()
    record = RunRecord.from_json(old)
    assert record.evaluations == {}
    assert record.to_json() == old
    # and as an index entry
    path = tmp_path / record.index_key
    path.parent.mkdir(parents=True)
    path.write_text(old)
    assert read_entry(path, tmp_path).to_json() == old


def test_evaluations_round_trip_through_an_entry(tmp_path: Path) -> None:
    r = make_record("r1", evaluations={"holdout": Evaluation(
        "succeeded", 0, "demo_eval", 8, {"bleu-4": 1.25, "rouge-l": 0.0}, "file:///p")})
    write_entry(tmp_path, r)
    [back] = load_index(tmp_path)
    assert back == r and back.evaluations["holdout"].metrics == {"bleu-4": 1.25, "rouge-l": 0.0}
    assert '"evaluations": {' in back.to_json()


@pytest.mark.parametrize("evaluations,message", [
    ({"Bad Name": {"status": "succeeded"}}, "evaluation name 'Bad Name'"),
    ({"holdout": {"status": "done"}}, "evaluations.holdout.status"),
    ({"holdout": {"status": "succeeded", "metrics": {"bleu-4": "high"}}},
     "evaluations.holdout.metrics.bleu-4 must be a finite number"),
    ({"holdout": {"status": "succeeded", "samples": "8"}}, "samples must be an integer"),
    ({"holdout": {"metrics": {}}}, "an evaluation needs a status"),
    ({"holdout": []}, "an evaluation must be an object"),
    ([], "'evaluations' must be an object"),
])
def test_a_corrupt_evaluation_names_the_entry(tmp_path: Path, evaluations: object,
                                              message: str) -> None:
    data = json.loads(make_record("r1").to_json())
    data["evaluations"] = evaluations
    path = tmp_path / "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r1.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(data))
    with pytest.raises(FatalError, match="corrupt index entry") as err:
        load_index(tmp_path)
    assert message in str(err.value)
    assert str(err.value).startswith(f"{tmp_path.name}/alpaca/llama-3.1-8b/")


def test_mlflow_ui_base() -> None:
    env: dict[str, str] = {}
    # the tracking server serves its own UI; credentials never reach a link
    assert mlflow_ui_base("https://user:secret@mlflow.corp:5000/", env=env) == (
        "https://mlflow.corp:5000")
    # the profile's UI when the run tracks to the profile's server
    assert mlflow_ui_base("http://mlflow.svc:5000", "http://mlflow.svc:5000/",
                          "https://mlflow.example.com/", env=env) == "https://mlflow.example.com"
    # the pod's environment (the rendered JobSet sets it) wins
    assert mlflow_ui_base("http://x", env={"FTOPS_MLFLOW_UI": "https://ui/"}) == "https://ui"
    assert mlflow_ui_base("file:///tmp/mlruns", env=env) == ""
