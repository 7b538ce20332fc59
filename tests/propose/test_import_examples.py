"""Every training config of LLaMA-Factory 0.9.5's examples/ imports to a lint-clean
experiment, with no edit beyond the decisions `ftops import` reports.

The configs are test data (tests/propose/data/llamafactory-0.9.5/, Apache-2.0, see its
NOTICE.md). They are imported in order into one repository, as a person converting the
whole folder would: later files reuse the dataset.yaml and DeepSpeed files earlier
ones added, and same-named files become the next _v<N>.

`DECISIONS` lists, per file, (the choices import makes and says, what blocks it). A
blocking decision is settled only by what import names for it: `--drop KEY` for an
argument LLaMA-Factory 0.9.5 does not have, or a dataset_info.json entry for a
dataset LLaMA-Factory's own data/dataset_info.json does not describe ("register X").
Options every import gets: the owner and where the demo data lives.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lint_harness import make_workspace

from render.cli import main
from render.propose.experiment import Workspace
from render.propose.importer import Options, import_config
from render.propose.importsrc import read_source
from render.propose.lint import lint

DATA = Path(__file__).resolve().parent / "data" / "llamafactory-0.9.5"
EXAMPLES = DATA / "examples"
DATASET_INFO = DATA / "data" / "dataset_info.json"
COMMON = {"owner": "team-llm", "dataset_info": DATASET_INFO,
          "data_uri": "gs://my-project-llm/datasets/llamafactory-demo/",
          "data_revision": "v0.9.5"}

# Megatron-Core arguments (LLaMA-Factory reads them only with USE_MCA=1 and mcore_adapter)
_MCORE = ["apply_rope_fusion", "bias_activation_fusion", "pipeline_model_parallel_size",
          "sequence_parallel", "tensor_model_parallel_size", "use_distributed_optimizer"]
MCORE_QWEN2_VL_FULL = _MCORE
MCORE_QWEN3_MOE_FULL = sorted([*_MCORE, "expert_model_parallel_size", "moe_grouped_gemm",
                               "moe_token_dispatcher_type", "overlap_grad_reduce",
                               "overlap_param_gather", "recompute_granularity"])

DECISIONS: dict[str, tuple[str, str]] = {
    "ascend/qwen3_5_full_sft_fsdp2.yaml": ("gpu-type", ""),
    "ascend/qwen3_full_sft_fsdp2.yaml": ("gpu-type", ""),
    "ascend/qwen3moe_full_sft_fsdp.yaml": ("gpu-type", ""),
    "ascend/qwen3vlmoe_full_sft_fsdp2.yaml": ("dataset-folder gpu-type", ""),
    "ascend/qwen3vlmoe_lora_sft_fsdp.yaml": ("dataset-folder gpu-type", ""),
    "extras/adam_mini/qwen2_full_sft.yaml": ("dataset-folder gpu-type", ""),
    "extras/apollo/llama3_full_sft.yaml": ("dataset-folder gpu-type", ""),
    "extras/asft/llama2_full_asft.yaml": ("gpu-type", "register med"),
    "extras/asft/qwen2_full_asft.yaml": ("gpu-type", "register math"),
    "extras/badam/llama3_full_sft.yaml": ("dataset-folder gpu-type name-taken", ""),
    "extras/dft/qwen2_full_sft.yaml": ("dataset-folder gpu-type name-taken", ""),
    "extras/eaft/qwen25_05b_eaft_full.yaml": ("dataset-folder gpu-type", ""),
    "extras/fp8/llama3_fp8_deepspeed_sft.yaml": ("gpu-type", ""),
    "extras/fp8/llama3_fp8_fsdp_sft.yaml": ("gpu-type", "fsdp_transformer_layer_cls_to_wrap"),
    "extras/fsdp_qlora/llama3_lora_sft.yaml": ("dataset-folder gpu-type", ""),
    "extras/galore/llama3_full_sft.yaml": ("dataset-folder gpu-type name-taken", ""),
    "extras/llama_pro/llama3_freeze_sft.yaml": ("dataset-folder gpu-type", ""),
    "extras/loraplus/llama3_lora_sft.yaml": ("dataset-folder gpu-type name-taken", ""),
    "extras/mod/llama3_full_sft.yaml": ("dataset-folder gpu-type name-taken", ""),
    "extras/muon/qwen2_full_sft.yaml": ("dataset-folder gpu-type name-taken", ""),
    "extras/oft/llama3_oft_sft.yaml": ("dataset-folder gpu-type", ""),
    "extras/oft/qwen2_5vl_oft_sft.yaml": ("dataset-folder gpu-type", ""),
    "extras/pissa/llama3_lora_sft.yaml": ("dataset-folder gpu-type name-taken", ""),
    "extras/qoft/llama3_oft_sft_awq.yaml": ("dataset-folder gpu-type", ""),
    "extras/qoft/llama3_oft_sft_bnb_npu.yaml": ("dataset-folder gpu-type", ""),
    "extras/qoft/llama3_oft_sft_gptq.yaml": ("dataset-folder gpu-type", ""),
    "ktransformers/train_lora/deepseek_v2_lora_sft_kt.yaml": ("dataset-folder gpu-type", ""),
    "ktransformers/train_lora/deepseek_v3_lora_sft_kt.yaml": ("dataset-folder gpu-type", ""),
    "ktransformers/train_lora/qwen3_5moe_lora_sft_kt.yaml": ("dataset-folder gpu-type", ""),
    "ktransformers/train_lora/qwen3moe_lora_sft_kt.yaml": ("dataset-folder gpu-type", ""),
    "megatron/qwen2_vl_full.yaml": ("gpu-type", " ".join(MCORE_QWEN2_VL_FULL)),
    "megatron/qwen3_moe_full.yaml": ("gpu-type", " ".join(MCORE_QWEN3_MOE_FULL)),
    "train_full/qwen3_full_sft.yaml": ("dataset-folder gpu-type", ""),
    "train_full/qwen3vl_full_sft.yaml": ("dataset-folder gpu-type", ""),
    "train_lora/qwen3_lora_dpo.yaml": ("gpu-type", ""),
    "train_lora/qwen3_lora_kto.yaml": ("gpu-type", ""),
    "train_lora/qwen3_lora_pretrain.yaml": ("gpu-type", ""),
    "train_lora/qwen3_lora_reward.yaml": ("gpu-type", ""),
    "train_lora/qwen3_lora_sft.yaml": ("dataset-folder gpu-type", ""),
    "train_lora/qwen3_lora_sft_ds3.yaml": ("dataset-folder gpu-type", ""),
    "train_lora/qwen3_lora_sft_ray.yaml": ("dataset-folder gpu-type ray:ray_num_workers", ""),
    "train_lora/qwen3_preprocess.yaml": ("dataset-folder gpu-type", ""),
    "train_lora/qwen3vl_lora_dpo.yaml": ("gpu-type", ""),
    "train_lora/qwen3vl_lora_sft.yaml": ("dataset-folder gpu-type", ""),
    "train_qlora/llama3_lora_sft_aqlm.yaml": ("dataset-folder gpu-type", ""),
    "train_qlora/llama3_lora_sft_awq.yaml": ("dataset-folder gpu-type", ""),
    "train_qlora/llama3_lora_sft_gptq.yaml": ("dataset-folder gpu-type", ""),
    "train_qlora/qwen3_lora_sft_bnb_npu.yaml": ("dataset-folder gpu-type", ""),
    "train_qlora/qwen3_lora_sft_otfq.yaml": ("dataset-folder gpu-type", ""),
}


def _options(**extra: object) -> Options:
    return Options(**{**COMMON, **extra})  # type: ignore[arg-type]


def test_the_list_covers_every_training_config() -> None:
    found = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.yaml")}
    assert found == set(DECISIONS)
    assert len(found) == 49
    assert (DATA / "LICENSE").read_text().startswith("Apache License")


def test_every_example_imports_lint_clean(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    ws = Workspace(root)
    written = []
    for rel, (chosen, blocking) in DECISIONS.items():
        src = EXAMPLES / rel
        res = import_config(ws, read_source(str(src), ws), _options())
        assert sorted(d.key for d in res.decisions if not d.blocking) == chosen.split(), rel
        if not blocking:
            assert res.blocking == [] and res.clean, (rel, [d.text for d in res.blocking])
            written.append(res.path)
            continue
        # blocked: nothing is written, and exactly the listed decisions are reported
        assert res.path == "" and not res.clean
        keys = sorted(d.key for d in res.blocking)
        if blocking.startswith("register "):
            name = blocking.split()[1]
            assert keys == [f"dataset-entry:{name}"], rel
            own = tmp_path / f"{name}_info.json"  # the user describes their own data
            own.write_text(json.dumps({name: {"file_name": f"{name}.json"}}))
            res = import_config(ws, read_source(str(src), ws),
                                _options(dataset_info=own))
        else:
            drop = blocking.split()
            assert keys == sorted(f"unknown-key:{k}" for k in drop), rel
            assert all(d.option == f"--drop {d.key.split(':', 1)[1]}" for d in res.blocking)
            res = import_config(ws, read_source(str(src), ws), _options(drop=tuple(drop)))
        assert res.blocking == [] and res.clean, (rel, [d.text for d in res.blocking])
        written.append(res.path)
    result = lint(Workspace(root))
    assert [f.format() for f in result.findings] == []
    assert len(set(written)) == 49
    # owned keys are gone, DeepSpeed configs are ours, and one JSON per distinct content
    for rel in written:
        train = Workspace(root).load(root / rel)[0].train  # type: ignore[union-attr]
        assert not {"output_dir", "overwrite_output_dir", "resume_from_checkpoint"} & set(train)
        ds = train.get("deepspeed")
        assert ds is None or ds.startswith("experiments/_deepspeed/")
    contents = [json.loads(p.read_text()) for p in (root / "experiments/_deepspeed").glob("*.json")]
    assert len(contents) == len({json.dumps(c, sort_keys=True) for c in contents})


def test_deepspeed_matched_by_content(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    ws = Workspace(root)
    res = import_config(ws, read_source(str(EXAMPLES / "train_lora/qwen3_lora_sft_ds3.yaml"), ws),
                        _options())
    assert res.clean
    train = ws.load(root / res.path)[0].train  # type: ignore[union-attr]
    assert train["deepspeed"] == "experiments/_deepspeed/ds_z3.json"  # ours, same content
    assert any("(same content)" in line for line in res.lines)


def test_cli_reports_each_owned_key_and_what_is_left(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    root = make_workspace(tmp_path)
    src = str(EXAMPLES / "train_lora/qwen3_lora_sft.yaml")
    assert main(["--repo", str(root), "import", src, "--owner", "team-llm"]) == 1
    err = capsys.readouterr().err
    for key in ("output_dir", "overwrite_output_dir", "resume_from_checkpoint"):
        assert sum(line.strip().startswith(f"dropped {key}:") for line in err.splitlines()) == 1
    assert "left to decide (nothing written" in err and "--dataset-info PATH" in err
    assert not (root / "experiments/identity").exists()
    assert main(["--repo", str(root), "import", src, "--owner", "team-llm", "--dataset-info",
                 str(DATASET_INFO)]) == 1
    assert "--data-uri URI --data-revision REV" in capsys.readouterr().err
    assert main(["--repo", str(root), "import", src, "--owner", "team-llm", "--dataset-info",
                 str(DATASET_INFO), "--data-uri", "hf://llamafactory/demo_data",
                 "--data-revision", "main"]) == 0
    out = capsys.readouterr().out
    assert "wrote experiments/identity/qwen3-4b-instruct-2507/qwen3_lora_sft_v1.yaml" in out
    # the same command again is the next version, not an overwrite
    assert main(["--repo", str(root), "import", src, "--owner", "team-llm"]) == 1
    err = capsys.readouterr().err
    assert "same resolved config as" in err and "qwen3_lora_sft_v2" in err
