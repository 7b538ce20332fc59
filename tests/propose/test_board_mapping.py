"""Our Board <-> argument mapping against LLaMA-Factory 0.9.5's own functions.

`board_to_args` must be `Runner._parse_train_args`, and `clean` its `_clean_cmd`, on any
Board state: hypothesis draws states from the Board table and the real functions run
in a child process (see conftest.Oracle). `args_to_board` must make the Board derive
the experiment's arguments, checked by the same real function.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from board_states import board_states
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from render.propose import board
from render.propose.board import BoardError, args_to_board, board_to_args, clean

pytestmark = pytest.mark.slow

SETTINGS = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def _json(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


@SETTINGS
@given(state=board_states(),
       model_path=st.sampled_from(["Qwen/Qwen3-4B-Instruct-2507", "/models/llama", "x"]),
       output_dir=st.sampled_from(["train_2025", "runs/a", "my run"]))
def test_board_to_args_is_parse_train_args(lf_oracle: Any, state: dict[str, Any],
                                           model_path: str, output_dir: str) -> None:
    answer = lf_oracle.parse(state, model_path, output_dir)
    if "error" in answer:
        with pytest.raises(BoardError):
            board_to_args(state, model_path=model_path, output_dir=output_dir)
        return
    ours = board_to_args(state, model_path=model_path, output_dir=output_dir)
    assert _json(ours) == answer["args"]
    assert list(ours) == list(answer["args"])  # same order: extra_args then the blocks


@SETTINGS
@given(state=board_states())
def test_clean_is_clean_cmd(lf_oracle: Any, state: dict[str, Any]) -> None:
    try:
        args = board_to_args(state, model_path="m", output_dir="o")
    except BoardError:
        return
    assert _json(clean(args)) == lf_oracle.clean(_json(args))


def test_known_derivations(lf_oracle: Any) -> None:
    """The rules the issue names, spelled out once on a concrete state."""
    state = board.defaults()
    state.update({
        "top.model_name": "Qwen3-4B-Instruct-2507", "top.finetuning_type": "lora",
        "top.booster": "liger_kernel", "top.quantization_bit": "4",
        "train.training_stage": "DPO", "train.compute_type": "pure_bf16",
        "train.dataset": ["dpo_en_demo", "identity"], "train.lora_target": "",
        "train.use_pissa": True, "train.learning_rate": "1e-4",
        "train.extra_args": json.dumps({"optim": "adamw_torch", "lora_rank": 64,
                                        "flash_attn": "sdpa"}),
    })
    args = board_to_args(state, model_path="Qwen/Qwen3-4B-Instruct-2507")
    assert args["stage"] == "dpo" and args["pure_bf16"] is True and args["bf16"] is False
    assert args["enable_liger_kernel"] is True and args["flash_attn"] == "sdpa"
    assert args["lora_target"] == "all"
    assert args["pissa_init"] is True and args["pissa_convert"] is True
    assert args["dataset"] == "dpo_en_demo,identity" and args["learning_rate"] == 1e-4
    assert args["quantization_bit"] == 4 and args["double_quantization"] is True
    assert args["lora_rank"] == 8  # the LoRA block overrides extra_args
    assert args["optim"] == "adamw_torch"
    assert _json(args) == lf_oracle.parse(state, "Qwen/Qwen3-4B-Instruct-2507", "")["args"]


_EXPERIMENTS = [
    {"model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507", "stage": "sft", "do_train": True,
     "finetuning_type": "lora", "lora_rank": 8, "lora_target": "all",
     "dataset": "identity,alpaca_en_demo", "template": "qwen3_nothink", "cutoff_len": 2048,
     "max_samples": 1000, "preprocessing_num_workers": 16, "dataloader_num_workers": 4,
     "logging_steps": 10, "save_steps": 500, "plot_loss": True, "save_only_model": False,
     "report_to": "none", "per_device_train_batch_size": 1,
     "gradient_accumulation_steps": 8, "learning_rate": 1.0e-4, "num_train_epochs": 3.0,
     "lr_scheduler_type": "cosine", "warmup_ratio": 0.1, "bf16": True,
     "ddp_timeout": 180000000},
    {"model_name_or_path": "/data/models/tiny", "stage": "dpo", "do_train": True,
     "finetuning_type": "lora", "lora_rank": 16, "lora_alpha": 8, "pref_beta": 0.2,
     "pref_loss": "sigmoid", "dataset": "dpo_en_demo", "template": "llama3",
     "learning_rate": 5.0e-6, "quantization_bit": 4, "flash_attn": "sdpa",
     "val_size": 0.1, "eval_strategy": "steps", "eval_steps": 100, "save_steps": 100,
     "per_device_eval_batch_size": 8},
    {"model_name_or_path": "meta-llama/Meta-Llama-3-8B-Instruct", "stage": "sft",
     "do_train": True, "finetuning_type": "full", "use_galore": True, "galore_rank": 128,
     "galore_layerwise": True, "galore_target": "mlp,self_attn", "pure_bf16": True,
     "dataset": "identity", "template": "llama3", "max_samples": None, "seed": 7},
    {"model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507", "stage": "pt", "do_train": True,
     "finetuning_type": "freeze", "freeze_trainable_layers": 4, "dataset": "c4_demo",
     "packing": None, "report_to": ["mlflow", "tensorboard"], "logging_steps": 0.1},
]


@pytest.mark.parametrize("train", _EXPERIMENTS, ids=["sft", "dpo", "galore", "pt"])
def test_exported_state_makes_the_board_train_the_experiment(lf_oracle: Any,
                                                            train: dict[str, Any]) -> None:
    """LLaMA-Factory's own derivation of the exported state gives the experiment back."""
    out = args_to_board(train, dataset_dir="/exp/data")
    assert out.unrepresentable == []
    assert board.validate_state(out.state, "export") == out.state
    derived = lf_oracle.parse(out.state, out.model_path, "train_x")["args"]
    derived = lf_oracle.clean(derived)
    want = board.effective(train)
    got = board.effective({k: v for k, v in derived.items()
                           if k not in ("output_dir", "dataset_dir")})
    assert _json(want) == _json({k: got[k] for k in want})
    assert set(got) == set(want), sorted(set(got) ^ set(want))


def test_what_the_board_cannot_train_is_listed() -> None:
    train = {"model_name_or_path": "Qwen/Qwen3-4B-Instruct-2507", "stage": "sft",
             "do_train": True, "finetuning_type": "lora", "lora_rank": 4096,
             "pissa_init": True, "use_fast_tokenizer": False, "dataset": "identity",
             "template": "qwen3"}
    out = args_to_board(train, dataset_dir="d")
    listed = {line.split(":")[0] for line in out.unrepresentable}
    # above the rank slider (and so its default alpha); pissa_init without
    # pissa_convert; a false value that "Start" drops (its default is true)
    assert listed == {"lora_rank", "lora_alpha", "pissa_convert", "use_fast_tokenizer"}
