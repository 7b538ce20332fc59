"""The committed LLaMA-Factory argument schema: no drift, right shapes, and the deep check."""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
from pathlib import Path
from typing import Literal, Optional, Union

import jsonschema
import pytest

from render.propose import lfschema
from render.propose.deepcheck import deep_check
from render.propose.lfschema import SCHEMA_PATH
from render.propose.schema import LF_SCHEMA, load_schema

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def schema() -> dict[str, object]:
    return load_schema(LF_SCHEMA)


def test_committed_schema_matches_regeneration(tmp_path: Path) -> None:
    # Regenerate in a child process: importing llamafactory configures logging and torch
    # globally, which must not leak into the other tests.
    fresh = tmp_path / "schema.json"
    script = REPO / "scripts" / "gen_llamafactory_schema.py"
    proc = subprocess.run([sys.executable, str(script), "--out", str(fresh)],
                          capture_output=True, text=True, check=False, timeout=300,
                          cwd=str(REPO), env=_clean_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fresh.read_bytes() == SCHEMA_PATH.read_bytes(), (
        "schemas/llamafactory-0.9.5.schema.json is stale: "
        "run python scripts/gen_llamafactory_schema.py"
    )


def _clean_env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items()
            if k not in ("USE_MCA", "ALLOW_EXTRA_ARGS", "USE_RAY", "USE_KT", "USE_V1")}


def test_schema_is_valid_draft_2020_12(schema: dict[str, object]) -> None:
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"] == "llamafactory-0.9.5.schema.json"
    assert schema["additionalProperties"] is False


def test_spot_checks(schema: dict[str, object]) -> None:
    props = schema["properties"]
    assert isinstance(props, dict)
    assert props["learning_rate"]["type"] == "number"
    assert props["num_train_epochs"]["type"] == "number"
    assert props["cutoff_len"]["type"] == "integer"
    assert props["do_train"]["type"] == "boolean"
    assert {"sft", "dpo", "pt", "rm", "ppo", "kto"} <= set(props["stage"]["enum"])
    assert {"lora", "full", "freeze"} <= set(props["finetuning_type"]["enum"])
    assert props["template"]["type"] == ["string", "null"]
    assert "deepspeed" in props
    assert "output_dir" in props
    assert props["lora_target"]["type"] == "string"
    assert "null" in props["report_to"]["type"] and "string" in props["report_to"]["type"]
    assert "cosine" in props["lr_scheduler_type"]["enum"]
    assert "compute_dtype" not in props  # init=False fields are not arguments
    x = schema["x-llamafactory"]
    assert isinstance(x, dict)
    assert x["version"] == "0.9.5"
    assert {"default", "llama3", "empty", "qwen"} <= set(x["templates"])
    assert x["templates"] == sorted(x["templates"])
    assert set(x["stages"]) == {"pt", "sft", "rm", "ppo", "dpo", "kto"}
    assert "lora" in x["finetuning_types"]
    assert x["dataclasses"]["learning_rate"] == "TrainingArguments"
    assert x["dataclasses"]["template"] == "DataArguments"
    assert x["dataclasses"]["model_name_or_path"] == "ModelArguments"
    assert x["dataclasses"]["stage"] == "FinetuningArguments"
    assert x["dataclasses"]["temperature"] == "GeneratingArguments"
    assert set(x["dataclasses"]) == set(props)


def test_schema_accepts_a_real_config_and_rejects_mistakes(schema: dict[str, object]) -> None:
    validator = jsonschema.Draft202012Validator(schema)
    good = {
        "model_name_or_path": "meta-llama/Llama-3.1-8B", "stage": "sft", "do_train": True,
        "finetuning_type": "lora", "lora_rank": 8, "lora_target": "all", "dataset": "alpaca_en",
        "template": "llama3", "cutoff_len": 2048, "output_dir": "/mnt/output",
        "per_device_train_batch_size": 1, "gradient_accumulation_steps": 8,
        "learning_rate": 1.0e-4, "num_train_epochs": 3, "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.1, "bf16": True, "report_to": "none", "save_steps": 500,
        "deepspeed": "examples/deepspeed/ds_z3_config.json",
    }
    assert list(validator.iter_errors(good)) == []
    for bad in ({"lerning_rate": 1e-4}, {"stage": "sftt"}, {"learning_rate": "1e-4"},
                {"cutoff_len": 1.5}, {"do_train": "yes"}, {"lr_scheduler_type": "cosin"}):
        assert list(validator.iter_errors(bad)), bad


# --------------------------------------------------------------------------- type mapping


class _Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (int, ["integer"]),
        (float, ["number"]),
        (Optional[str], ["string", "null"]),  # noqa: UP045 - the old spelling on purpose
        (int | None, ["integer", "null"]),
        (Union[int, float], ["number"]),  # noqa: UP007
        (list[str], ["array", "string"]),
        (str | list[str] | None, ["array", "string", "null"]),
        (dict | str | None, ["object", "string", "null"]),
    ],
)
def test_map_type(annotation: object, expected: list[str]) -> None:
    types_, enum_ = lfschema._map_type(annotation)
    assert lfschema._dedupe(types_) == expected
    assert enum_ is None


def test_map_literal_and_enum() -> None:
    assert lfschema._map_type(Literal["a", "b"])[1] == ["a", "b"]
    assert lfschema._map_type(Optional[Literal["a"]])[1] == ["a", None]  # noqa: UP045
    assert lfschema._map_type(_Color | str)[1] == ["red", "blue"]
    assert lfschema._map_type(_Color | None)[1] == ["red", "blue", None]
    with pytest.raises(lfschema._Unmappable):
        lfschema._map_type(object)


def test_property_omits_type_when_unmappable() -> None:
    @dataclasses.dataclass
    class D:
        x: object = dataclasses.field(default=None, metadata={"help": "  some\n help  "})
        y: list[str] = dataclasses.field(default_factory=list)

    fx, fy = dataclasses.fields(D)
    assert lfschema._property(fx, object) == {"default": None, "description": "some help"}
    assert lfschema._property(fy, list[str]) == {"type": ["array", "string"]}


# --------------------------------------------------------------------------- deep check


def test_deep_check_never_raises_when_the_child_cannot_run() -> None:
    result = deep_check([{"stage": "sft"}], python="/nonexistent/python")[0]
    assert result.error is not None and "could not start" in result.error
    assert deep_check([]) == []


@pytest.mark.slow
def test_deep_check_uses_llamafactorys_parser() -> None:
    base = {
        "model_name_or_path": "/models/tiny", "stage": "sft", "do_train": True,
        "finetuning_type": "lora", "lora_target": "all", "dataset": "demo",
        "template": "default", "output_dir": "/mnt/output", "report_to": "none",
    }
    ok, bf16, extra, ppo, bad_sched, ds, not_a_dict = deep_check([
        base,
        {**base, "bf16": True},
        {**base, "lerning_rate": 1e-4},
        {**base, "stage": "ppo"},
        {**base, "lr_scheduler_type": "nope"},
        {**base, "deepspeed": "examples/deepspeed/ds_z3_config.json"},
        ["not", "a", "dict"],
    ])
    assert ok.error is None, ok.error
    assert bf16.error is None and any("bf16" in n for n in bf16.notes)
    assert extra.error is not None and "lerning_rate" in extra.error
    assert "HfArgumentParser" in extra.error
    assert ppo.error is not None and "reward_model" in ppo.error
    assert bad_sched.error is not None and "SchedulerType" in bad_sched.error
    assert ds.error is None and any("deepspeed" in n for n in ds.notes)
    assert not_a_dict.error is not None
    for r in (ok, extra, ppo, bad_sched):
        assert r.error is None or "\n" not in r.error
    json.dumps([r.error for r in (ok, extra)])  # plain strings


def test_dataclass_fields_reads_a_source_without_importing_it() -> None:
    source = (
        "import not_installed_anywhere\n"
        "@dataclass\n"
        "class TrainingArguments(Base):\n"
        "    tensor_model_parallel_size: int = 1\n"
        "    _private: int = 0\n"
        "    derived: int = field(init=False)\n"
        "    sequence_parallel: bool = field(default=False, metadata={'help': 'x'})\n"
        "class Other:\n"
        "    ignored: int = 0\n"
    )
    assert lfschema.dataclass_fields(source, ["TrainingArguments"]) == [
        "tensor_model_parallel_size", "sequence_parallel"]


def test_other_modes_file_lists_only_keys_our_parser_lacks(schema: dict[str, object]) -> None:
    """Each key in other-modes.json is unknown to LLaMA-Factory 0.9.5 as ftops runs it
    (a key in both would get a wrong hint), and the file says how it was made."""
    data = json.loads(lfschema.OTHER_MODES_PATH.read_text())
    assert "scripts/gen_other_modes.py" in data["$comment"]
    ours = set(schema["properties"])  # type: ignore[call-overload]
    for mode in ("transformers4", "megatron"):
        assert data[mode] and data[mode] == sorted(set(data[mode]))
        assert not ours & set(data[mode]), mode
    assert not set(data["transformers4"]) & set(data["megatron"])
    assert "no_cuda" in data["transformers4"]
    assert "tensor_model_parallel_size" in data["megatron"]
