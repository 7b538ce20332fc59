"""The evaluations after training as rendered: each `evaluate:` entry's predict config
(RunSpec.eval_configs), the files the ConfigMap carries to the pod, the MLflow UI in
the pod's environment, and the plan that shows what the nearest earlier run achieved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from lint_harness import make_workspace, record_run

from render.cli import main
from render.manifests.jobset import build
from render.manifests.overlay import cluster_train_config, render, report_to
from render.manifests.runspec import RunSpec
from render.propose.experiment import Workspace
from render.record.evaluation import Evaluation

COMMIT = "1" * 40
DEMO = "experiments/demo/tiny-llama/sft_lora_v1.yaml"
ALPACA = "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"


def spec(root: Path, path: str) -> RunSpec:
    exp, findings = Workspace(root).load(root / path)
    assert exp is not None and not findings
    return RunSpec(exp, COMMIT)


def with_evaluate(root: Path, path: str, block: str, train_extra: str = "") -> None:
    file = root / path
    text = file.read_text()
    if train_extra:
        text = text.replace("train:\n", f"train:\n{train_extra}", 1)
    file.write_text(text + block)


def eval_config(root: Path, path: str, name: str = "val") -> dict[str, Any]:
    s = spec(root, path)
    return s.eval_configs(cluster_train_config(s))[name]


def test_a_lora_run_is_evaluated_as_its_adapter(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    s = spec(root, DEMO)
    train = cluster_train_config(s)
    cfg = s.eval_configs(train)["holdout"]
    assert cfg == {
        "template": "default", "cutoff_len": 128, "eval_dataset": "demo_eval",
        "max_samples": 8, "max_new_tokens": 16, "per_device_eval_batch_size": 8,
        "stage": "sft", "do_predict": True, "predict_with_generate": True,
        "finetuning_type": "lora", "dataset_dir": "/etc/ftops",
        "output_dir": f"{train['output_dir']}/eval/holdout", "report_to": "none",
        "model_name_or_path": ".demo/tiny-llama", "adapter_name_or_path": train["output_dir"],
    }
    # the eval dataset travels with the run's dataset_info.json
    assert set(s.dataset_info()) == {"demo", "demo_eval"}


def test_a_full_run_is_evaluated_from_its_output_and_the_validation_split(
        tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    path = "experiments/alpaca_en/llama-3.1-8b/sft_full_ds3_lr1e-5_v1.yaml"
    (root / path).write_text((root / path).read_text().replace(
        "deepspeed: experiments/_deepspeed/ds_z3.json", "bf16: true"))
    with_evaluate(root, path, "evaluate:\n  val:\n    max_new_tokens: 64\n")
    s = spec(root, path)
    train = cluster_train_config(s)
    cfg = s.eval_configs(train)["val"]
    assert cfg["model_name_or_path"] == train["output_dir"]  # the saved full model
    assert "adapter_name_or_path" not in cfg
    # the split training held out: the same data, val_size, max_samples (and seed)
    assert (cfg["dataset"], cfg["val_size"], cfg["max_samples"]) == ("alpaca_en", 0.02, 52000)
    assert cfg["bf16"] is True and "deepspeed" not in cfg and "learning_rate" not in cfg
    assert "eval_strategy" not in cfg and "num_train_epochs" not in cfg


def test_a_new_adapter_over_earlier_ones(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    with_evaluate(root, ALPACA, "evaluate:\n  val: {}\n",
                  "  adapter_name_or_path: org/earlier-adapter\n  create_new_adapter: true\n")
    train = cluster_train_config(spec(root, ALPACA))
    cfg = eval_config(root, ALPACA)
    assert cfg["adapter_name_or_path"] == f"org/earlier-adapter,{train['output_dir']}"


def test_the_pod_gets_each_eval_config_and_the_mlflow_ui(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    with_evaluate(root, ALPACA, "evaluate:\n  val:\n    max_new_tokens: 64\n"
                                "  short:\n    max_new_tokens: 8\n")
    s = spec(root, ALPACA)
    [rendered] = render([s], root / ".rendered", root)
    configmap, jobset = rendered.manifests
    assert configmap["kind"] == "ConfigMap"
    data = configmap["data"]
    node_spec = yaml.safe_load(data["spec.json"])
    assert node_spec["evaluate"] == {"short": "/etc/ftops/eval-short.yaml",
                                     "val": "/etc/ftops/eval-val.yaml"}
    assert yaml.safe_load(data["eval-val.yaml"])["max_new_tokens"] == 64
    env = {e["name"]: e.get("value") for e in
           jobset["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
               "containers"][0]["env"]}
    assert env["FTOPS_MLFLOW_UI"] == "https://mlflow.example.com"  # the profile's mlflow_ui
    assert env["MLFLOW_TRACKING_URI"] == "http://mlflow.mlops.svc.cluster.local:5000"
    # no tracker, no tracker environment
    s_none = spec(root, DEMO)
    names = [e["name"] for e in build(s_none, report_to(s_none))["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert "FTOPS_MLFLOW_UI" not in names


def test_evaluate_is_part_of_what_a_run_computes(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    before = spec(root, ALPACA).exp.config_hash
    with_evaluate(root, ALPACA, "evaluate:\n  val: {}\n")
    assert spec(root, ALPACA).exp.config_hash != before


def test_plan_shows_what_the_nearest_experiment_achieved(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_workspace(tmp_path)
    record_run(root, ALPACA, "aaaa000001", "x", started_at="2026-10-01T00:00:00Z",
               duration_s=5400.0, nodes=1, gpus_per_node=8, gpu_type="h100-80gb",
               metrics={"final_train_loss": 0.91, "eval_loss": 1.02},
               evaluations={"val": Evaluation("succeeded", 0, "split", 100,
                                              {"bleu-4": 17.25, "rouge-l": 30.5})})
    record_run(root, ALPACA, "aaaa000000", "x", status="failed", exit_code=1,
               started_at="2026-09-01T00:00:00Z")
    path = "experiments/alpaca_en/llama-3.1-8b/sft_full_ds3_lr1e-5_v1.yaml"
    assert main(["--repo", str(root), "plan", "--commit", COMMIT, path]) == 0
    out = capsys.readouterr().out
    assert "Its latest run `aaaa000001` (2026-10-01T00:00:00Z):" in out
    for row in ("| status | succeeded |", "| eval loss | 1.02 |", "| final train loss | 0.91 |",
                "| BLEU-4 (val) | 17.25 |", "| ROUGE-L (val) | 30.5 |",
                "| duration | 1.5 h |", "| GPU-hours | 12.0 |"):
        assert row in out, row
    # where the nearest experiment has never run, the plan says so
    fresh = make_workspace(tmp_path / "fresh")
    assert main(["--repo", str(fresh), "plan", "--commit", COMMIT, ALPACA]) == 0
    assert f"`{path}` has no recorded run yet." in capsys.readouterr().out
