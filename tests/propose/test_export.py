"""`ftops export`: --cli is a config `llamafactory-cli train` runs as is (trained here, on
the tiny demo model); --board lists on stderr what the Board cannot represent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from lint_harness import REPO, make_workspace
from local_repo import make_repo

from render.cli import main
from render.propose import board

DEMO = "experiments/demo/tiny-llama/sft_lora_v1.yaml"


@pytest.mark.slow
def test_cli_export_trains_with_llamafactory_cli(tmp_path: Path, demo_assets: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = make_repo(tmp_path, demo_assets)
    out = tmp_path / "export"
    assert main(["--repo", str(repo), "export", DEMO, "--cli", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"run it: llamafactory-cli train {out.resolve() / 'train.yaml'}" in printed
    cfg = yaml.safe_load((out / "train.yaml").read_text())
    assert Path(cfg["model_name_or_path"]).is_absolute()
    assert cfg["dataset_dir"] == str(out.resolve())
    info = json.loads((out / "dataset_info.json").read_text())
    assert Path(info["demo"]["file_name"]).is_file()
    # a workstation: another folder, nothing of ftops, LLaMA-Factory's own command
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "DISABLE_VERSION_CHECK": "1"}
    cli = Path(sys.executable).with_name("llamafactory-cli")
    proc = subprocess.run([str(cli), "train", str(out / "train.yaml")], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = Path(cfg["output_dir"])
    assert (trained / "adapter_model.safetensors").is_file()
    assert (trained / "trainer_log.jsonl").read_text().strip()


def test_board_export_lists_what_the_board_cannot_hold(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    root = make_workspace(tmp_path)
    exp = root / "experiments/demo/tiny-llama/pissa_v1.yaml"
    text = (REPO / DEMO).read_text().replace("  report_to: none", "  report_to: none\n"
                                             "  pissa_init: true\n  pissa_convert: false")
    text = text.replace("  lora_rank: 8", "  lora_rank: 2048")
    exp.write_text(text)
    assert main(["--repo", str(root), "lint", str(exp)]) == 0
    out = tmp_path / "board"
    assert main(["--repo", str(root), "export", str(exp), "--board", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    listed = [line for line in err.splitlines() if "the Board cannot represent" in line]
    assert {line.split("represent ")[1].split(":")[0] for line in listed} == {
        "lora_rank", "lora_alpha", "pissa_convert"}
    assert "type " in err and "into Model path" in err  # a local model: type its path
    state = yaml.safe_load((out / "pissa_v1.yaml").read_text())
    assert board.validate_state(state, "export") == state
    assert state["top.model_name"] == "Custom"
    assert state["train.dataset_dir"] == str(out.resolve())


def test_every_shipped_experiment_exports(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    for exp in sorted((root / "experiments").rglob("*_v*.yaml")):
        rel = exp.relative_to(root).as_posix()
        sweep = "sweep:" in exp.read_text()  # one file, many runs: refused, said why
        for how in ("--cli", "--board"):
            assert main(["--repo", str(root), "export", rel, how, "--out",
                         str(tmp_path / how / exp.stem)]) == int(sweep), (rel, how)
