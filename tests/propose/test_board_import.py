"""Importing what the Board writes: a "Save arguments" file and an output folder
(`training_args.yaml` as LLaMA-Factory's own `_clean_cmd` writes it, beside
`llamaboard_config.yaml`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from lint_harness import make_workspace

from render.cli import main
from render.propose import board
from render.propose.experiment import Workspace

pytestmark = pytest.mark.slow

DATASET_INFO = Path(__file__).resolve().parent / "data" / "llamafactory-0.9.5" / "data" / \
    "dataset_info.json"
FLAGS = ["--owner", "team", "--dataset-info", str(DATASET_INFO), "--data-uri",
         "hf://llamafactory/demo", "--data-revision", "main"]


def _state() -> dict[str, Any]:
    state = board.defaults()
    state.update({
        "top.model_name": "Qwen3-4B-Instruct-2507", "top.template": "qwen3_nothink",
        "train.dataset": ["identity", "alpaca_en_demo"], "train.learning_rate": "1e-4",
        "train.ds_stage": "2", "train.ds_offload": True, "train.use_swanlab": True,
        "train.swanlab_api_key": "sk-plain-text-key", "train.galore_rank": 64,
        "train.lora_target": "", "train.extra_args": '{"optim": "adamw_torch"}',
    })
    return state


def test_save_arguments_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_workspace(tmp_path)
    src = tmp_path / "llamaboard_config" / "2025-06-01-10-00-00.yaml"
    src.parent.mkdir()
    src.write_text(yaml.safe_dump(_state()))
    assert main(["--repo", str(root), "import", str(src), *FLAGS]) == 0
    out, err = capsys.readouterr()
    assert "sk-plain-text-key" not in out + err
    rel = next(line.split()[1] for line in out.splitlines() if line.endswith("(lints clean)"))
    assert rel == "experiments/identity/qwen3-4b-instruct-2507/2025-06-01-10-00-00_v1.yaml"
    exp = Workspace(root).load(root / rel)[0]
    assert exp is not None
    t = exp.train
    assert t["stage"] == "sft" and t["learning_rate"] == 1e-4
    assert t.get("lora_target", "all") == "all"  # "" in the Board; LLaMA-Factory's default
    assert t["bf16"] is True and t["optim"] == "adamw_torch" and t["use_swanlab"] is True
    assert "swanlab_api_key" not in t and "output_dir" not in t and "dataset_dir" not in t
    assert exp.launch.env_from_secrets == {"SWANLAB_API_KEY": "swanlab-api-key/value"}
    # the Board's DeepSpeed preset became a file of ours, with the same content
    preset = board.table().deepspeed_presets["ds_z2_offload_config.json"]
    assert exp.deepspeed_config == preset
    assert t["deepspeed"] == "experiments/_deepspeed/ds_z2_offload_config.json"
    assert "not kept: train.galore_rank = 64 (galore is off" in err
    assert "kubectl create secret generic swanlab-api-key" in err


def test_output_folder(tmp_path: Path, lf_oracle: Any,
                       capsys: pytest.CaptureFixture[str]) -> None:
    root = make_workspace(tmp_path)
    state = _state()
    folder = tmp_path / "saves" / "Qwen3-4B-Instruct-2507" / "lora" / "train_1"
    folder.mkdir(parents=True)
    output_dir = "saves/Qwen3-4B-Instruct-2507/lora/train_1"
    trained = lf_oracle.clean(lf_oracle.parse(state, "Qwen/Qwen3-4B-Instruct-2507",
                                              "train_1")["args"])
    assert trained["output_dir"] == output_dir
    trained["learning_rate"] = 3e-4  # someone edited training_args.yaml afterwards
    (folder / "training_args.yaml").write_text(yaml.safe_dump(trained))
    (folder / "llamaboard_config.yaml").write_text(yaml.safe_dump(state))
    assert main(["--repo", str(root), "import", str(folder), *FLAGS]) == 0
    out, err = capsys.readouterr()
    assert "disagree on learning_rate (0.0003 vs 0.0001); imported what trained" in err
    assert f'dropped output_dir: "{output_dir}"' in err
    rel = next(line.split()[1] for line in out.splitlines() if line.endswith("(lints clean)"))
    assert rel.endswith("/train_1_v1.yaml")
    exp = Workspace(root).load(root / rel)[0]
    assert exp is not None and exp.train["learning_rate"] == 3e-4
    assert json.dumps(exp.deepspeed_config, sort_keys=True) == json.dumps(
        board.table().deepspeed_presets["ds_z2_offload_config.json"], sort_keys=True)
