"""A two-stage pipeline trained for real on this machine: stage A is the demo's LoRA SFT
on the tiny model; stage B (`needs:` A, as adapter_name_or_path, create_new_adapter)
cannot start before A's record says succeeded, then LLaMA-Factory trains B over A's
adapter, read from A's output folder, and B's record names the run it started from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from local_repo import git, make_repo

from render.cli import main
from render.launch.local import CONFIG_SUBDIR
from render.manifests.runspec import RunSpec, git_commit
from render.propose.experiment import Workspace
from render.propose.lint import require_clean
from render.record.runrecord import RunRecord

A = "experiments/demo/tiny-llama/sft_lora_v1.yaml"
B = "experiments/demo/tiny-llama/sft_on_sft_v1.yaml"
pytestmark = pytest.mark.slow


def stage_b(work: Path) -> None:
    data = yaml.safe_load((work / A).read_text())
    data["metadata"]["description"] = "A second SFT stage over stage A's adapter (test)."
    data["needs"] = [{"experiment": A, "run": "latest-succeeded",
                      "as": "adapter_name_or_path"}]
    data["launch"]["storage"] = "pvc"
    data["train"].update(create_new_adapter=True, num_train_epochs=1.0, learning_rate=5.0e-4)
    del data["evaluate"]
    (work / B).write_text(yaml.safe_dump(data, sort_keys=False))
    git(work, "add", B)
    git(work, "commit", "-qm", "stage B")


def test_stage_b_trains_on_stage_a_adapter(tmp_path: Path, demo_assets: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    work, _ = make_repo(tmp_path, demo_assets)
    stage_b(work)
    outputs = work / "outputs"
    launch = ["--repo", str(work), "launch", "--local", "--work", str(outputs),
              "--no-progress"]
    # B first: it waits for A, nothing runs
    assert main([*launch, B]) == 1
    assert f"waits for {A}: it has no run yet" in capsys.readouterr().err
    assert not (outputs / "experiments/demo/tiny-llama/sft_on_sft_v1").exists()
    # A trains; its succeeded record lands in the checkout's outputs-index/
    assert main([*launch, A]) == 0, capsys.readouterr()
    capsys.readouterr()
    (a,) = require_clean(Workspace(work), [Path(A)])
    a_dir = outputs / RunSpec(a, git_commit(work)).run_path
    assert (a_dir / "adapter_model.safetensors").is_file()
    # B now resolves to A's run and trains over its adapter
    (b,) = require_clean(Workspace(work), [Path(B)])
    a_run = RunSpec(a, git_commit(work)).run_id
    assert b.waiting is None and b.inputs[0].run_id == a_run
    assert main([*launch, B]) == 0, capsys.readouterr()
    b_dir = outputs / RunSpec(b, git_commit(work)).run_path
    cfg = yaml.safe_load((b_dir / CONFIG_SUBDIR / "train.yaml").read_text())
    assert Path(cfg["adapter_name_or_path"]) == a_dir
    assert (b_dir / "adapter_model.safetensors").is_file()
    record = RunRecord.from_json((b_dir / "run.json").read_text())
    assert record.status == "succeeded"
    assert record.needs == [{"experiment": A, "run": "latest-succeeded",
                             "as": "adapter_name_or_path", "run_id": a_run,
                             "artifacts_uri": a_dir.as_uri()}]
    # B's adapter is new (A's was merged under it): its weights differ from A's
    a_cfg = json.loads((a_dir / "adapter_config.json").read_text())
    b_cfg = json.loads((b_dir / "adapter_config.json").read_text())
    assert a_cfg["r"] == b_cfg["r"] == 8
    assert (a_dir / "adapter_model.safetensors").read_bytes() != \
        (b_dir / "adapter_model.safetensors").read_bytes()
