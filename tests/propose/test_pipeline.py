"""Pipelines (render.propose.needs, rules/pipeline.py): a stage names the experiment it
starts from; it waits until that experiment's record says succeeded, then its train
config reads the input's output folder and its launch identity includes the input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from lint_harness import make_workspace, record_run

from render.cli import main
from render.manifests.overlay import render
from render.manifests.plan import plan
from render.manifests.runspec import STORAGE_MOUNT, RunSpec
from render.propose.experiment import Experiment, Workspace
from render.propose.lint import lint, require_clean
from render.record.runrecord import RunRecord

SFT = "experiments/ultrafeedback_sft/llama-3.1-8b-instruct/sft_lora_v1.yaml"
DPO = "experiments/ultrafeedback/llama-3.1-8b-instruct/dpo_on_sft_v1.yaml"
ROOT_URI = "gs://my-project-llm"


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


def stage(root: Path, path: str = DPO) -> Experiment:
    (exp,) = require_clean(Workspace(root), [Path(path)])
    return exp


def sft_run(root: Path, run_id: str, status: str = "succeeded", when: str = "01") -> str:
    exp = stage(root, SFT)
    uri = f"{ROOT_URI}/experiments/ultrafeedback_sft/llama-3.1-8b-instruct/sft_lora_v1/{run_id}"
    record_run(root, SFT, run_id, exp.config_hash, status=status, artifacts_uri=uri,
               started_at=f"2026-01-{when}T00:00:00Z", finished_at=f"2026-01-{when}T01:00:00Z")
    return uri


def edit(root: Path, path: str, old: str, new: str) -> None:
    text = (root / path).read_text()
    assert old in text, old
    (root / path).write_text(text.replace(old, new, 1))


def messages(root: Path, path: str = DPO) -> list[str]:
    return [f.format() for f in lint(Workspace(root), [root / path]).findings]


def test_a_stage_without_a_succeeded_input_waits(root: Path) -> None:
    exp = stage(root)
    assert exp.waiting == f"waits for {SFT}: it has no run yet"
    text = plan(Workspace(root), [RunSpec(exp, "1" * 40)])
    assert "1 pipeline stage(s) wait for their input" in text
    assert f"This stage waits for {SFT}: it has no run yet" in text


def test_render_and_apply_leave_a_waiting_stage_out(root: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--repo", str(root), "render", DPO, SFT, "--out", "out"]) == 0
    captured = capsys.readouterr()
    assert "sft_lora_v1" in captured.out and "dpo_on_sft_v1" not in captured.out
    assert f"waiting  {DPO}: waits for {SFT}" in captured.err
    assert not (root / "out/ultrafeedback").exists()
    assert main(["--repo", str(root), "apply", "--waiting", "--list"]) == 0
    assert "ready" not in capsys.readouterr().out


def test_a_succeeded_input_becomes_the_adapter_and_part_of_the_identity(
        root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    waiting = stage(root)
    uri = sft_run(root, "a" * 10)
    exp = stage(root)
    assert exp.waiting is None
    assert exp.config_hash != waiting.config_hash
    spec = RunSpec(exp, "1" * 40)
    (r,) = render([spec], tmp_path / "out", root)
    cm = next(m for m in r.manifests if m["kind"] == "ConfigMap")
    train = yaml.safe_load(cm["data"]["train.yaml"])
    want = f"{STORAGE_MOUNT}/{uri[len(ROOT_URI) + 1:]}"
    assert train["adapter_name_or_path"] == want
    assert train["create_new_adapter"] is True
    # the record says what the stage started from
    data = json.loads(RunRecord.launched(spec.identity()).to_json())
    assert data["needs"] == [{"experiment": SFT, "run": "latest-succeeded",
                              "as": "adapter_name_or_path", "run_id": "a" * 10,
                              "artifacts_uri": uri}]
    text = plan(Workspace(root), [spec])
    assert f"run `{'a' * 10}` of `{SFT}`" in text and want in text
    # `apply --waiting --list`: the stage is ready (no cluster needed to say so)
    assert main(["--repo", str(root), "apply", "--waiting", "--list"]) == 0
    assert f"ready    {DPO} (run {spec.run_id})" in capsys.readouterr().out
    # once it has a record, it is no longer waiting to be applied
    record_run(root, DPO, spec.run_id, exp.config_hash, status="launched")
    assert main(["--repo", str(root), "apply", "--waiting", "--list"]) == 0
    assert "ready" not in capsys.readouterr().out


def test_latest_succeeded_is_the_newest_success_and_a_new_input_is_a_new_run(
        root: Path) -> None:
    sft_run(root, "a" * 10, when="01")
    first = stage(root)
    record_run(root, DPO, RunSpec(first, "1" * 40).run_id, first.config_hash,
               needs=[i.record() for i in first.inputs])
    sft_run(root, "b" * 10, "failed", when="03")
    assert stage(root).inputs[0].run_id == "a" * 10  # a failed later run is not used
    sft_run(root, "c" * 10, when="05")
    newer = stage(root)
    assert newer.inputs[0].run_id == "c" * 10
    assert RunSpec(newer, "1" * 40).run_id != RunSpec(first, "1" * 40).run_id
    # the stage ran on the older input: that is no edit of a run
    assert messages(root) == []


def test_a_failed_input_leaves_the_stage_waiting_with_the_reason(root: Path) -> None:
    sft_run(root, "f" * 10, "failed")
    assert stage(root).waiting == (f"waits for {SFT}: its latest run {'f' * 10} failed, and "
                                   "none has succeeded (fix it and re-run that stage, or "
                                   "name a run)")


def test_a_named_run_must_be_recorded_and_succeeded(root: Path) -> None:
    edit(root, DPO, "run: latest-succeeded", "run: abcdef0123")
    assert stage(root).waiting == f"waits for run abcdef0123 of {SFT}: not recorded"
    sft_run(root, "abcdef0123", "failed")
    assert stage(root).waiting == (f"waits for run abcdef0123 of {SFT}: it is failed and "
                                   "will not succeed: name another run")
    sft_run(root, "0123456789")
    edit(root, DPO, "run: abcdef0123", "run: '0123456789'")
    assert stage(root).inputs[0].run_id == "0123456789"


def test_dpo_on_an_adapter_must_choose_create_new_adapter(root: Path) -> None:
    edit(root, DPO, "  create_new_adapter: true\n", "")
    (finding,) = messages(root)
    assert "say create_new_adapter: true (reference = the SFT model) or false" in finding
    assert "uses the *base* model as reference" in finding


@pytest.mark.parametrize(("old", "new", "expected"), [
    (f"experiment: {SFT}", f"experiment: {DPO}", "a stage cannot need itself"),
    (f"experiment: {SFT}", "experiment: experiments/ultrafeedback_sft/x/nope_v1.yaml",
     "is not an experiment file"),
    ("as: adapter_name_or_path", "as: model_name_or_path",
     "trains a lora adapter: its output is not a model"),
])
def test_needs_that_cannot_work_are_refused(root: Path, old: str, new: str,
                                            expected: str) -> None:
    edit(root, DPO, old, new)
    out = messages(root)
    assert any(expected in f and f.startswith(f"{DPO}:") for f in out), out


def test_a_stage_needs_central_storage(root: Path) -> None:
    edit(root, DPO, "  time_limit: 10h\n", "  time_limit: 10h\n  storage: ephemeral\n")
    assert any("storage 'ephemeral' does not mount" in f for f in messages(root))


def test_a_cycle_is_refused(root: Path) -> None:
    edit(root, SFT, "launch:\n", f"needs:\n  - experiment: {DPO}\n    as: "
                                  "adapter_name_or_path\nlaunch:\n")
    out = messages(root)
    assert any("needs this experiment (directly or through other stages)" in f
               for f in out), out


def test_needing_a_sweep_names_a_point(root: Path) -> None:
    sweep = "experiments/ultrafeedback_sft/llama-3.1-8b-instruct/sft_lora_sweep_v1.yaml"
    text = (root / SFT).read_text() + "sweep:\n  grid:\n    train.lora_rank: [8, 16]\n"
    (root / sweep).write_text(text)
    edit(root, DPO, f"experiment: {SFT}", f"experiment: {sweep}")
    assert any("is a sweep: its latest succeeded run is whichever point finished last" in f
               for f in messages(root)), messages(root)
    edit(root, DPO, "run: latest-succeeded", "run: abcdef0123")
    assert not any("is a sweep" in f for f in messages(root))
