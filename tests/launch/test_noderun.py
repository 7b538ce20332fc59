"""The pod side: `ftops node-run` (config errors exit 2 for the podFailurePolicy) and
`ftops hook` (the post-run hook as its own command), with a real git remote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from local_repo import git

from render.cli import main
from render.launch.noderun import outcome
from render.manifests.runspec import CONFIG_ERROR_EXIT
from render.record.identity import SPEC_JSON, NodeSpec, RunIdentity
from render.record.runrecord import RunRecord


def _spec(tmp: Path, train: dict[str, object]) -> Path:
    cfg = tmp / "etc" / "train.yaml"
    cfg.parent.mkdir(parents=True)
    out = tmp / "output"
    cfg.write_text(yaml.safe_dump({**train, "output_dir": str(out)}))
    spec = tmp / "etc" / SPEC_JSON
    identity = RunIdentity(
        run_id="abc123def0", experiment="sft_lora_v1",
        experiment_path="experiments/demo/tiny-llama/sft_lora_v1.yaml", dataset="demo",
        model="tiny-llama", config_hash="f" * 64, git_sha="1" * 40, owner="demo",
        image="img:1", nodes=2, gpus_per_node=8, gpu_type="h100-80gb",
        jobset="sft-lora-v1-abc123def0", artifacts_uri=str(out), storage="gcsfuse",
        hyperparameters={"learning_rate": 0.001})
    spec.write_text(NodeSpec(identity, mode="cluster", train_config=str(cfg),
                             output_dir=str(out)).to_json())
    return spec


def test_a_malformed_spec_is_a_clear_error(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / SPEC_JSON
    spec.write_text(json.dumps({"run_id": "abc", "nodes": "two"}))
    assert main(["hook", "--spec", str(spec), "--exit-code", "0"]) == 1
    assert "not an ftops run spec (no experiment)" in capsys.readouterr().err


@pytest.mark.slow
def test_node_run_exits_2_on_a_configuration_error(tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"model_name_or_path": "x", "stage": "sft", "do_train": True,
                            "finetuning_type": "lora", "template": "default",
                            "dataset": "demo", "not_an_argument": 1})
    assert main(["node-run", "--spec", str(spec)]) == CONFIG_ERROR_EXIT
    # rank 0 records the failure at once: JobSet will not restart a configuration error
    record = RunRecord.from_json((tmp_path / "output" / "run.json").read_text())
    assert record.status == "failed" and record.exit_code == CONFIG_ERROR_EXIT
    assert "LLaMA-Factory rejects the configuration" in record.message
    assert "not_an_argument" in record.message


@pytest.mark.parametrize(("code", "signals", "attempt", "max_restarts", "status", "words"), [
    (0, [], 1, 2, None, ""),  # success is final, on any attempt
    (1, [], 0, 2, "running", "JobSet restarts the group (restart 1 of 2)"),
    (1, [], 2, 2, None, "trainer exited with 1 after 2 restart(s)"),
    (-15, [15], 0, 0, "running", "stopped by SIGTERM"),  # cancel, restart or preemption
    (1, [], 0, 0, None, "trainer exited with 1"),
])
def test_hook_status_is_final_only_when_the_pod_knows_the_run_is_over(
        code: int, signals: list[int], attempt: int, max_restarts: int, status: str | None,
        words: str) -> None:
    got_status, message = outcome(code, signals, attempt, max_restarts)
    assert got_status == status and words in message


def test_hook_command_records_and_publishes(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path, {"report_to": "none"})
    out = tmp_path / "output"
    out.mkdir()
    (out / "trainer_log.jsonl").write_text("".join(
        json.dumps({"current_steps": s, "total_steps": 4, "loss": 2.0 - s / 10}) + "\n"
        for s in range(1, 5)))
    (out / "all_results.json").write_text(json.dumps(
        {"train_runtime": 12.5, "train_samples_per_second": 40.0, "epoch": 1.0}))
    remote = tmp_path / "remote.git"
    seed = tmp_path / "seed"
    git(tmp_path, "init", "-q", "-b", "main", str(seed))
    (seed / "outputs-index").mkdir()
    (seed / "outputs-index" / "README.md").write_text("seed\n")
    git(seed, "add", "-A")
    git(seed, "commit", "-qm", "seed")
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(remote))
    git(seed, "push", "-q", str(remote), "main")
    monkeypatch.setenv("FTOPS_INDEX_REMOTE", str(remote))
    assert main(["hook", "--spec", str(spec), "--exit-code", "1",
                 "--started-at", "2026-11-26T10:00:00Z"]) == 0
    record = RunRecord.from_json((out / "run.json").read_text())
    assert record.status == "failed" and record.exit_code == 1
    assert record.metrics.final_train_loss == pytest.approx(1.6)
    assert record.metrics.best_train_loss == pytest.approx(1.6)
    assert record.metrics.train_samples_per_second == 40.0
    assert (out / "loss_curve.png").is_file()
    tree = git(remote, "ls-tree", "-r", "--name-only", "main").split()
    assert f"outputs-index/{record.index_key}" in tree
