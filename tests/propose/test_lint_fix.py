"""`ftops lint --fix`: owned keys out, equal spellings normalized, every change printed,
comments and layout kept, and a second run changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lint_harness import make_workspace

from render.cli import main
from render.propose.fix import fix_text

MESSY = """\
# yaml-language-server: $schema=../../../schemas/experiment.schema.json
# A hand-converted LLaMA-Factory example.
metadata:
  owner: demo
  description: Converted by hand from a LLaMA-Factory example.
launch: {nodes: 1, gpus_per_node: 0, gpu_type: cpu}
train:
  model_name_or_path: .demo/tiny-llama   # the demo model
  stage: sft
  do_train: true
  finetuning_type: lora
  lora_target: "q_proj, v_proj"
  dataset: [demo]

  ### output
  output_dir: saves/tiny/lora/sft   # LLaMA-Factory's example path
  overwrite_output_dir: yes
  resume_from_checkpoint: ~
  # the schedule
  template: default
  learning_rate: 1e-3
  weight_decay: 1E-2
  plot_loss: True
  report_to: none
"""


def test_fix_text_changes_only_what_it_says() -> None:
    fixed, changes = fix_text(MESSY, "x.yaml")
    assert [c.format() for c in changes] == [
        "x.yaml:12: $.train.lora_target: 'q_proj, v_proj' -> 'q_proj,v_proj' (LLaMA-Factory "
        "strips the spaces)",
        "x.yaml:13: $.train.dataset: list -> 'demo' (LLaMA-Factory reads a comma list)",
        "x.yaml:16: $.train.output_dir: removed (ftops writes each run to its own folder under "
        "the storage root)",
        "x.yaml:17: $.train.overwrite_output_dir: removed (every run has its own output folder "
        "and resumes from it)",
        "x.yaml:18: $.train.resume_from_checkpoint: removed (a relaunched run resumes from its "
        "last checkpoint by itself)",
        "x.yaml:21: $.train.learning_rate: 1e-3 -> 1.0e-3 (the same float, read as one by "
        "every YAML reader)",
        "x.yaml:22: $.train.weight_decay: 1E-2 -> 1.0E-2 (the same float, read as one by every "
        "YAML reader)",
        "x.yaml:23: $.train.plot_loss: True -> true",
    ]
    # every other line is kept byte for byte: comments, blank lines, flow mappings
    kept = [line for line in MESSY.splitlines()
            if not line.strip().startswith(("output_dir", "overwrite_output_dir",
                                             "resume_from_checkpoint", "lora_target",
                                             "dataset", "learning_rate", "weight_decay",
                                             "plot_loss"))]
    assert [line for line in fixed.splitlines() if line in kept] == kept
    assert "  ### output\n  # the schedule\n" in fixed
    # the values mean what they meant, for LLaMA-Factory and for any YAML reader
    before, after = yaml.safe_load(MESSY)["train"], yaml.safe_load(fixed)["train"]
    assert after["learning_rate"] == 1e-3 and after["weight_decay"] == 1e-2
    assert after["dataset"] == "demo" and after["lora_target"] == "q_proj,v_proj"
    assert {k: v for k, v in before.items() if k not in after} == {
        "output_dir": "saves/tiny/lora/sft", "overwrite_output_dir": True,
        "resume_from_checkpoint": None}
    # idempotent
    assert fix_text(fixed, "x.yaml") == (fixed, [])


def test_fix_leaves_broken_and_foreign_files_alone() -> None:
    assert fix_text("train: [\n", "x.yaml") == ("train: [\n", [])
    assert fix_text("train: 3\n", "x.yaml") == ("train: 3\n", [])
    flow = "train: {output_dir: x, stage: sft}\n"
    fixed, changes = fix_text(flow, "x.yaml")
    assert fixed == "train: {stage: sft}\n" and len(changes) == 1


def test_cli_fix_then_lint_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_workspace(tmp_path)
    exp = root / "experiments/demo/tiny-llama/converted_v1.yaml"
    exp.write_text(MESSY)
    defaults = root / "experiments/demo/_defaults.yaml"
    defaults.write_text("train:\n  output_dir: saves/everything  # shared\n")
    assert main(["--repo", str(root), "lint", str(exp)]) == 1
    capsys.readouterr()
    assert main(["--repo", str(root), "lint", "--fix", str(exp), str(defaults)]) == 0
    err = capsys.readouterr().err
    assert "fixed experiments/demo/_defaults.yaml:2: $.train.output_dir: removed" in err
    assert err.count("fixed experiments/demo/tiny-llama/converted_v1.yaml:") == 8
    assert "fix: 9 change(s)" in err
    assert defaults.read_text() == "train:\n"
    assert main(["--repo", str(root), "lint", "--fix", str(exp), str(defaults)]) == 0
    assert "fix: 0 change(s)" in capsys.readouterr().err
