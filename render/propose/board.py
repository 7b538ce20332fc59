"""LLaMA Board (LLaMA-Factory 0.9.5's web UI) element ids <-> LLaMA-Factory arguments.

The Board saves its Train tab as a flat mapping of element id -> widget value
("Save arguments": `llamaboard_config/<name>.yaml`; "Start" also writes
`<output_dir>/llamaboard_config.yaml` beside `training_args.yaml`). Numbers typed into
text boxes stay strings ("5e-5"), the stage is its display name ("Supervised
Fine-Tuning"), and the CLI arguments are derived by `Runner._parse_train_args`.

- `board_to_args(state, ...)` is that derivation, rule for rule (stage display names,
  compute type -> bf16/fp16/pure_bf16, booster -> flash_attn/use_unsloth/
  enable_liger_kernel, `lora_target: ""` -> all, use_pissa -> pissa_init + pissa_convert,
  dataset lists, quantization, the `extra_args` JSON, which overrides the base
  arguments and is overridden by every later block). `tests/propose/test_board_mapping.py`
  checks it against LLaMA-Factory's own function on generated Board states.
- `args_to_board(train, ...)` goes the other way: widget values whose derivation gives
  the experiment's arguments, everything else through `extra_args`, and a list of what
  the Board cannot represent (values the later blocks override, or that its "Start"
  drops: it removes every false, null and empty argument before training).
- `lost_fields(state)` names the fields whose values never reach the arguments (a LoRA
  rank while fine-tuning fully, UI-only fields): an import cannot keep them.

Everything about the Board's widgets (ids, defaults, choices, slider ranges, the model
list, the DeepSpeed presets it writes) comes from `schemas/llamaboard-0.9.5.json`,
generated from the Board itself by `scripts/gen_llamaboard_table.py` (CI checks that it
is current). No llamafactory import here: this runs where only lint is installed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from render.errors import FatalError
from render.schema import LF_SCHEMA, SCHEMA_DIR, load_schema

BOARD_VERSION = "0.9.5"
TABLE_NAME = f"llamaboard-{BOARD_VERSION}.json"
TABLE_PATH = SCHEMA_DIR / TABLE_NAME

# What "Save arguments" leaves out of its file (LF webui/runner.py _build_config_dict).
NOT_SAVED = ("top.lang", "top.model_path", "train.output_dir", "train.config_path")
# Fields the Board shows but `_parse_train_args` never reads (LF 0.9.5).
UI_ONLY = ("train.project", "train.trackio_space_id", "train.hub_private_repo",
           "train.swanlab_link")
# The Board's paths, relative to the folder `llamafactory-cli webui` runs in.
CACHE_DIR = "llamaboard_cache"
SAVE_DIR = "saves"
SEP = "/"


class BoardError(FatalError):
    """A Board file that the Board itself could not have written or could not run."""


@dataclass(frozen=True)
class Element:
    id: str
    widget: str  # textbox | slider | checkbox | dropdown | markdown
    default: Any
    choices: tuple[Any, ...] | None = None
    multiselect: bool = False
    custom: bool = False  # a dropdown that accepts values outside its choices
    minimum: float | None = None
    maximum: float | None = None

    def accepts(self, value: Any) -> str:
        """'' when the widget can hold `value`, else why not (in words)."""
        if self.widget in ("textbox", "markdown"):  # Gradio shows None as empty
            return "" if isinstance(value, str | None) else "expected text"
        if self.widget == "checkbox":
            return "" if isinstance(value, bool) else "expected true or false"
        if self.widget == "slider":
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                return "expected a number"
            if self.minimum is not None and value < self.minimum:
                return f"below the slider's minimum {self.minimum:g}"
            if self.maximum is not None and value > self.maximum:
                return f"above the slider's maximum {self.maximum:g}"
            return ""
        if self.widget == "dropdown":
            values = value if self.multiselect else [value]
            if self.multiselect and not isinstance(value, list):
                return "expected a list"
            for v in values:
                if self.multiselect and not isinstance(v, str):
                    return "expected a list of names"
                if not self.custom and self.choices is not None and v not in self.choices:
                    return "not one of the Board's choices"
            if not self.multiselect and self.custom and not isinstance(value, str | None):
                return "expected text"
            return ""
        return ""


@dataclass(frozen=True)
class Table:
    elements: dict[str, Element]
    saved: tuple[str, ...]  # element ids in a "Save arguments" file
    stages: dict[str, str]  # display name -> stage
    models: dict[str, str]  # Board model name -> default hub id
    default_templates: dict[str, str]
    multimodal_models: frozenset[str]
    peft_methods: frozenset[str]
    no_skip_keys: frozenset[str]  # arguments "Start" keeps even when false/null/""
    deepspeed_presets: dict[str, dict[str, Any]]  # file name in llamaboard_cache -> JSON

    def stage_name(self, stage: str) -> str | None:
        for name, value in self.stages.items():
            if value == stage:
                return name
        return None

    def model_name(self, path: str) -> str | None:
        """The Board's name for a hub id (the first registered, as its dropdown lists)."""
        for name, hub_id in self.models.items():
            if hub_id == path:
                return name
        return None

    def preset_name(self, config: Mapping[str, Any]) -> str | None:
        for name, preset in self.deepspeed_presets.items():
            if preset == config:
                return name
        return None


@cache
def table() -> Table:
    try:
        raw = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FatalError(f"{TABLE_PATH}: cannot read the Board table ({exc}); regenerate it "
                         "with python scripts/gen_llamaboard_table.py") from None
    elements = {
        eid: Element(eid, e["widget"], e.get("default"),
                     tuple(e["choices"]) if e.get("choices") is not None else None,
                     bool(e.get("multiselect")), bool(e.get("custom")),
                     e.get("minimum"), e.get("maximum"))
        for eid, e in raw["elements"].items()
    }
    return Table(
        elements=elements, saved=tuple(raw["saved"]), stages=dict(raw["stages"]),
        models=dict(raw["models"]), default_templates=dict(raw["default_templates"]),
        multimodal_models=frozenset(raw["multimodal_models"]),
        peft_methods=frozenset(raw["peft_methods"]),
        no_skip_keys=frozenset(raw["no_skip_keys"]),
        deepspeed_presets=dict(raw["deepspeed_presets"]),
    )


@cache
def lf_defaults() -> dict[str, Any]:
    props = load_schema(LF_SCHEMA)["properties"]
    return {k: v.get("default") for k, v in props.items()}


def defaults() -> dict[str, Any]:
    """A Board state as a fresh page holds it (the saved fields)."""
    t = table()
    return {eid: t.elements[eid].default for eid in t.saved}


# --------------------------------------------------------------------------- Board -> CLI


def get_save_dir(*parts: str) -> str:
    """LF webui/common.py get_save_dir: a last part holding a separator is used as is."""
    if SEP in parts[-1]:
        return parts[-1]
    return SEP.join([SAVE_DIR, *(p.replace(" ", "").strip() for p in parts)])


def _pixels(value: str, eid: str) -> int:
    try:
        if "*" in value:
            a, b = value.split("*")[:2]
            return int(a) * int(b)
        return int(value)
    except ValueError:
        raise BoardError(f"{eid}: {value!r} is not a pixel count such as 768*768") from None


def _number(state: Mapping[str, Any], eid: str, kind: type) -> Any:
    value = state[eid]
    try:
        if isinstance(value, bool):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise BoardError(f"{eid}: {value!r} is not {'an integer' if kind is int else 'a number'}"
                         ) from None


def extra_args(state: Mapping[str, Any]) -> dict[str, Any]:
    text = state["train.extra_args"]
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict):
        raise BoardError("train.extra_args: not a JSON object (the Board refuses it too: "
                         "write it as {\"key\": value, ...})")
    return data


def base_args(state: Mapping[str, Any], *, model_path: str, output_dir: str = "",
              cache_dir: str | None = None) -> dict[str, Any]:
    """The arguments `_parse_train_args` builds before it applies extra_args."""
    t = table()
    get = state.__getitem__
    model_name, ftype = get("top.model_name"), get("top.finetuning_type")
    stage_name = get("train.training_stage")
    if stage_name not in t.stages:
        raise BoardError(f"train.training_stage: {stage_name!r} is not one of "
                         + ", ".join(t.stages))
    booster = get("top.booster")
    dataset = get("train.dataset")
    if not isinstance(dataset, list) or not all(isinstance(d, str) for d in dataset):
        raise BoardError("train.dataset: expected a list of dataset names")
    compute = get("train.compute_type")
    return dict(
        stage=t.stages[stage_name],
        do_train=True,
        model_name_or_path=model_path,
        cache_dir=cache_dir,
        preprocessing_num_workers=16,
        finetuning_type=ftype,
        template=get("top.template"),
        rope_scaling=get("top.rope_scaling") if get("top.rope_scaling") != "none" else None,
        flash_attn="fa2" if booster == "flashattn2" else "auto",
        use_unsloth=(booster == "unsloth"),
        enable_liger_kernel=(booster == "liger_kernel"),
        dataset_dir=get("train.dataset_dir"),
        dataset=",".join(dataset),
        cutoff_len=get("train.cutoff_len"),
        learning_rate=_number(state, "train.learning_rate", float),
        num_train_epochs=_number(state, "train.num_train_epochs", float),
        max_samples=_number(state, "train.max_samples", int),
        per_device_train_batch_size=get("train.batch_size"),
        gradient_accumulation_steps=get("train.gradient_accumulation_steps"),
        lr_scheduler_type=get("train.lr_scheduler_type"),
        max_grad_norm=_number(state, "train.max_grad_norm", float),
        logging_steps=get("train.logging_steps"),
        save_steps=get("train.save_steps"),
        warmup_steps=get("train.warmup_steps"),
        neftune_noise_alpha=get("train.neftune_alpha") or None,
        packing=get("train.packing") or get("train.neat_packing"),
        neat_packing=get("train.neat_packing"),
        train_on_prompt=get("train.train_on_prompt"),
        mask_history=get("train.mask_history"),
        resize_vocab=get("train.resize_vocab"),
        use_llama_pro=get("train.use_llama_pro"),
        enable_thinking=get("train.enable_thinking"),
        report_to=get("train.report_to"),
        use_galore=get("train.use_galore"),
        use_apollo=get("train.use_apollo"),
        use_badam=get("train.use_badam"),
        use_swanlab=get("train.use_swanlab"),
        output_dir=get_save_dir(model_name, ftype, output_dir),
        fp16=(compute == "fp16"),
        bf16=(compute == "bf16"),
        pure_bf16=(compute == "pure_bf16"),
        plot_loss=True,
        trust_remote_code=True,
        ddp_timeout=180000000,
        include_num_input_tokens_seen=True,
    )


def block_args(state: Mapping[str, Any], args: Mapping[str, Any], *,
               npu: bool = False) -> dict[str, Any]:
    """The arguments the blocks after extra_args set (they win over extra_args)."""
    t = table()
    get = state.__getitem__
    model_name, ftype = get("top.model_name"), get("top.finetuning_type")
    out: dict[str, Any] = {}
    checkpoint = get("top.checkpoint_path")
    if checkpoint:
        if ftype in t.peft_methods:
            if not isinstance(checkpoint, list):
                raise BoardError("top.checkpoint_path: expected a list for LoRA/OFT")
            out["adapter_name_or_path"] = ",".join(
                get_save_dir(model_name, ftype, str(c)) for c in checkpoint)
        else:
            if not isinstance(checkpoint, str):
                raise BoardError("top.checkpoint_path: expected one path for full or freeze")
            out["model_name_or_path"] = get_save_dir(model_name, ftype, checkpoint)
    if get("top.quantization_bit") != "none":
        out["quantization_bit"] = _number(state, "top.quantization_bit", int)
        out["quantization_method"] = get("top.quantization_method")
        out["double_quantization"] = not npu
    if args["finetuning_type"] == "freeze":
        out["freeze_trainable_layers"] = get("train.freeze_trainable_layers")
        out["freeze_trainable_modules"] = get("train.freeze_trainable_modules")
        out["freeze_extra_modules"] = get("train.freeze_extra_modules") or None
    if args["finetuning_type"] == "lora":
        out["lora_rank"] = get("train.lora_rank")
        out["lora_alpha"] = get("train.lora_alpha")
        out["lora_dropout"] = get("train.lora_dropout")
        out["loraplus_lr_ratio"] = get("train.loraplus_lr_ratio") or None
        out["create_new_adapter"] = get("train.create_new_adapter")
        out["use_rslora"] = get("train.use_rslora")
        out["use_dora"] = get("train.use_dora")
        out["pissa_init"] = get("train.use_pissa")
        out["pissa_convert"] = get("train.use_pissa")
        out["lora_target"] = get("train.lora_target") or "all"
        out["additional_target"] = get("train.additional_target") or None
        if args["use_llama_pro"]:
            out["freeze_trainable_layers"] = get("train.freeze_trainable_layers")
    if args["stage"] == "ppo":
        reward = get("train.reward_model")
        if ftype in t.peft_methods:
            if not isinstance(reward, list):
                raise BoardError("train.reward_model: expected a list for LoRA/OFT")
            out["reward_model"] = ",".join(get_save_dir(model_name, ftype, str(r))
                                           for r in reward)
        else:
            if not isinstance(reward, str):
                raise BoardError("train.reward_model: expected one path for full or freeze")
            out["reward_model"] = get_save_dir(model_name, ftype, reward)
        out["reward_model_type"] = "lora" if ftype == "lora" else "full"
        out["ppo_score_norm"] = get("train.ppo_score_norm")
        out["ppo_whiten_rewards"] = get("train.ppo_whiten_rewards")
        out["top_k"] = 0
        out["top_p"] = 0.9
    elif args["stage"] in ("dpo", "kto"):
        out["pref_beta"] = get("train.pref_beta")
        out["pref_ftx"] = get("train.pref_ftx")
        out["pref_loss"] = get("train.pref_loss")
    if model_name in t.multimodal_models:
        out["freeze_vision_tower"] = get("train.freeze_vision_tower")
        out["freeze_multi_modal_projector"] = get("train.freeze_multi_modal_projector")
        out["freeze_language_model"] = get("train.freeze_language_model")
        for kind in ("image", "video"):
            for end in ("max", "min"):
                eid = f"train.{kind}_{end}_pixels"
                value = get(eid)
                if not isinstance(value, str):
                    raise BoardError(f"{eid}: expected text such as 768*768")
                out[f"{kind}_{end}_pixels"] = _pixels(value, eid)
    for method, keys in (("galore", ("rank", "update_interval", "scale", "target")),
                         ("apollo", ("rank", "update_interval", "scale", "target"))):
        if args[f"use_{method}"]:
            for key in keys:
                out[f"{method}_{key}"] = get(f"train.{method}_{key}")
    if args["use_badam"]:
        for key in ("mode", "switch_mode", "switch_interval", "update_ratio"):
            out[f"badam_{key}"] = get(f"train.badam_{key}")
    if get("train.use_swanlab"):
        for key in ("project", "run_name", "workspace", "api_key", "mode"):
            out[f"swanlab_{key}"] = get(f"train.swanlab_{key}")
    val_size = get("train.val_size")
    if not isinstance(val_size, int | float) or isinstance(val_size, bool):
        raise BoardError("train.val_size: expected a number")
    if val_size > 1e-6 and args["stage"] != "ppo":
        out["val_size"] = val_size
        out["eval_strategy"] = "steps"
        out["eval_steps"] = out.get("save_steps", args["save_steps"])
        out["per_device_eval_batch_size"] = out.get("per_device_train_batch_size",
                                                    args["per_device_train_batch_size"])
    if get("train.ds_stage") != "none":
        offload = "offload_" if get("train.ds_offload") else ""
        out["deepspeed"] = f"{CACHE_DIR}/ds_z{get('train.ds_stage')}_{offload}config.json"
    return out


def board_to_args(state: Mapping[str, Any], *, model_path: str, output_dir: str = "",
                  cache_dir: str | None = None, npu: bool = False) -> dict[str, Any]:
    """LF 0.9.5 `Runner._parse_train_args` on a Board state (element id -> value)."""
    missing = [eid for eid in table().saved if eid not in state]
    if missing:
        raise BoardError("not a complete Board state: missing " + ", ".join(missing[:8])
                         + (" ..." if len(missing) > 8 else ""))
    args = base_args(state, model_path=model_path, output_dir=output_dir,
                     cache_dir=cache_dir)
    args.update(extra_args(state))
    args.update(block_args(state, args, npu=npu))
    return args


def _dropped(key: str, value: Any) -> bool:
    return key not in table().no_skip_keys and (value is None or value is False or value == "")


def clean(args: Mapping[str, Any]) -> dict[str, Any]:
    """LF webui/common.py `_clean_cmd`: what "Start" writes to training_args.yaml."""
    keep = table().no_skip_keys
    return {k: v for k, v in args.items()
            if k in keep or (v is not None and v is not False and v != "")}


def validate_state(state: Any, name: str) -> dict[str, Any]:
    """A Board file's mapping, checked the way the Board would load and use it."""
    if not isinstance(state, dict):
        raise BoardError(f"{name}: a Board file holds a mapping of element ids")
    t = table()
    problems = []
    for key, value in state.items():
        element = t.elements.get(key) if isinstance(key, str) else None
        if element is None or key not in t.saved:
            problems.append(f"{str(key)[:80]!r} is not a field of the Board's Train tab")
            continue
        why = element.accepts(value)
        if why:
            problems.append(f"{key}: {why} (got {json.dumps(value, default=str)[:60]})")
    if problems:
        raise BoardError(f"{name}: " + "; ".join(problems[:10])
                         + (f"; and {len(problems) - 10} more" if len(problems) > 10 else ""))
    merged = defaults()
    merged.update(state)
    return merged


def lost_fields(state: Mapping[str, Any]) -> dict[str, str]:
    """Fields whose values do not reach the arguments, with why (LF 0.9.5 rules)."""
    t = table()
    get = state.__getitem__
    out: dict[str, str] = {eid: "the Board does not use it for training" for eid in UI_ONLY}
    out["train.dataset_dir"] = "ftops registers the data in experiments/<dataset>/dataset.yaml"
    try:
        args = dict(base_args(state, model_path="", output_dir=""))
        args.update(extra_args(state))
    except BoardError:
        return out
    ftype, stage = args["finetuning_type"], args["stage"]
    if get("top.quantization_bit") == "none":
        out["top.quantization_method"] = "quantization is off"
    if get("train.neat_packing"):
        out["train.packing"] = "neat packing turns packing on"
    if get("train.ds_stage") == "none":
        out["train.ds_offload"] = "DeepSpeed is off"
    if ftype != "freeze":
        for key in ("freeze_trainable_modules", "freeze_extra_modules"):
            out[f"train.{key}"] = "finetuning_type is not freeze"
        if not (ftype == "lora" and args["use_llama_pro"]):
            out["train.freeze_trainable_layers"] = "finetuning_type is not freeze"
    if ftype != "lora":
        for key in ("lora_rank", "lora_alpha", "lora_dropout", "loraplus_lr_ratio",
                    "create_new_adapter", "use_rslora", "use_dora", "use_pissa",
                    "lora_target", "additional_target"):
            out[f"train.{key}"] = "finetuning_type is not lora"
    if stage != "ppo":
        for key in ("reward_model", "ppo_score_norm", "ppo_whiten_rewards"):
            out[f"train.{key}"] = "the stage is not PPO"
    elif get("train.val_size"):
        out["train.val_size"] = "PPO does not evaluate"
    if stage not in ("dpo", "kto"):
        for key in ("pref_beta", "pref_ftx", "pref_loss"):
            out[f"train.{key}"] = "the stage is not DPO or KTO"
    if get("top.model_name") not in t.multimodal_models:
        for key in ("freeze_vision_tower", "freeze_multi_modal_projector",
                    "freeze_language_model", "image_max_pixels", "image_min_pixels",
                    "video_max_pixels", "video_min_pixels"):
            out[f"train.{key}"] = "the model is not multimodal"
    for method, keys in (("galore", ("rank", "update_interval", "scale", "target")),
                         ("apollo", ("rank", "update_interval", "scale", "target")),
                         ("badam", ("mode", "switch_mode", "switch_interval",
                                    "update_ratio"))):
        if not args[f"use_{method}"]:
            for key in keys:
                out[f"train.{method}_{key}"] = f"{method} is off"
    if not get("train.use_swanlab"):
        for key in ("project", "run_name", "workspace", "api_key", "mode"):
            out[f"train.swanlab_{key}"] = "SwanLab is off"
    lf = lf_defaults()
    for key in ("swanlab_project", "swanlab_run_name", "swanlab_workspace", "galore_target",
                "apollo_target", "freeze_trainable_modules"):
        eid = f"train.{key}"
        if eid not in out and get(eid) in ("", None) and lf.get(key) not in ("", None):
            out[eid] = f"empty: training uses LLaMA-Factory's default, {lf[key]}"
    return out


def same_value(element: Element, a: Any, b: Any) -> bool:
    """Equal as the Board reads them: "5e-5" and "5e-05" are the same learning rate."""
    if element.widget in ("textbox", "markdown"):  # Gradio shows and saves None as ""
        a, b = ("" if a is None else a), ("" if b is None else b)
    if element.id == "train.lora_target":  # the Board reads an empty target as all
        a, b = (a or "all"), (b or "all")
    if a == b and type(a) is type(b):
        return True
    if element.id.endswith("_pixels") and isinstance(a, str) and isinstance(b, str):
        try:
            return _pixels(a, element.id) == _pixels(b, element.id)
        except BoardError:
            return False
    if element.widget == "textbox" and isinstance(a, str) and isinstance(b, str):
        try:
            return float(a) == float(b)
        except ValueError:
            return False
    if element.widget == "slider" and not isinstance(a, bool) and not isinstance(b, bool):
        return isinstance(a, int | float) and isinstance(b, int | float) and a == b
    return False


# --------------------------------------------------------------------------- CLI -> Board


@dataclass
class BoardExport:
    state: dict[str, Any]  # the saved fields, ready for yaml.safe_dump
    model_path: str  # what top.model_path must hold (the Board does not load it)
    unrepresentable: list[str] = field(default_factory=list)  # argument: why
    notes: list[str] = field(default_factory=list)  # what to do after loading


def same_arg(key: str, a: Any, b: Any) -> bool:
    """Equal as LLaMA-Factory reads them (3 == 3.0; True is not 1)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if key in ("dataset", "lora_target", "additional_target", "freeze_trainable_modules",
               "galore_target", "apollo_target", "adapter_name_or_path") \
            and isinstance(a, str) and isinstance(b, str):
        return [p.strip() for p in a.split(",")] == [p.strip() for p in b.split(",")]
    return bool(a == b)


def effective(args: Mapping[str, Any]) -> dict[str, Any]:
    """Arguments as LLaMA-Factory will hold them, less those equal to its defaults."""
    lf = lf_defaults()
    out = dict(args)
    # LF's own post-init rule (FinetuningArguments): lora_alpha or twice the rank
    rank = out.get("lora_rank", lf["lora_rank"])
    if not out.get("lora_alpha") and isinstance(rank, int) and not isinstance(rank, bool):
        out["lora_alpha"] = 2 * rank
    return {k: v for k, v in out.items()
            if not (k in lf and same_arg(k, v, lf[k]))}


# Arguments an export never carries: ftops sets them per run, or the Board does.
EXPORT_OWNED = ("output_dir", "dataset_dir", "overwrite_output_dir", "resume_from_checkpoint")


def args_to_board(train: Mapping[str, Any], *, dataset_dir: str,
                  deepspeed_config: Mapping[str, Any] | None = None) -> BoardExport:
    """Widget values that make the Board derive `train`, the rest in extra_args."""
    t = table()
    lf = lf_defaults()
    want = {k: v for k, v in train.items() if k not in EXPORT_OWNED and k != "deepspeed"}
    state = defaults()
    out = BoardExport(state=state, model_path=str(train.get("model_name_or_path") or ""))
    el = t.elements

    def put(eid: str, value: Any) -> bool:
        if el[eid].accepts(value):
            return False
        state[eid] = value
        return True

    def arg(key: str) -> Any:
        return want.get(key, lf.get(key))

    # the top bar
    stage = str(arg("stage"))
    stage_name = t.stage_name(stage)
    if stage_name is not None:
        state["train.training_stage"] = stage_name
    ftype = str(arg("finetuning_type"))
    put("top.finetuning_type", ftype)
    model_name = t.model_name(out.model_path)
    if model_name is None:
        state["top.model_name"] = "Custom"
        out.notes.append(f"top.model_path: type {out.model_path} into Model path after "
                         "loading (the Board does not load it from a file)")
    else:
        state["top.model_name"] = model_name
        out.notes.append(f"top.model_path: the Board fills in {out.model_path} for "
                         f"{model_name} unless you have set your own path for it")
    model_name = state["top.model_name"]
    if isinstance(want.get("template"), str):
        put("top.template", want["template"])
    if isinstance(want.get("rope_scaling"), str):
        put("top.rope_scaling", want["rope_scaling"])
    if want.get("flash_attn") == "fa2":
        state["top.booster"] = "flashattn2"
    elif want.get("use_unsloth") is True:
        state["top.booster"] = "unsloth"
    elif want.get("enable_liger_kernel") is True:
        state["top.booster"] = "liger_kernel"
    # the train tab's base fields
    from render.experiment import dataset_names

    state["train.dataset"] = dataset_names(want.get("dataset"))
    state["train.dataset_dir"] = dataset_dir
    for key, eid, kind in (("learning_rate", "train.learning_rate", float),
                           ("num_train_epochs", "train.num_train_epochs", float),
                           ("max_grad_norm", "train.max_grad_norm", float),
                           ("max_samples", "train.max_samples", int)):
        value = arg(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and \
                math.isfinite(value) and (kind is float or float(value).is_integer()):
            state[eid] = repr(kind(value)) if kind is float else str(int(value))
    for key, eid in (("cutoff_len", "train.cutoff_len"),
                     ("per_device_train_batch_size", "train.batch_size"),
                     ("gradient_accumulation_steps", "train.gradient_accumulation_steps"),
                     ("logging_steps", "train.logging_steps"),
                     ("save_steps", "train.save_steps"),
                     ("warmup_steps", "train.warmup_steps"),
                     ("lr_scheduler_type", "train.lr_scheduler_type"),
                     ("train_on_prompt", "train.train_on_prompt"),
                     ("mask_history", "train.mask_history"),
                     ("resize_vocab", "train.resize_vocab"),
                     ("use_llama_pro", "train.use_llama_pro"),
                     ("enable_thinking", "train.enable_thinking"),
                     ("neat_packing", "train.neat_packing"),
                     ("use_galore", "train.use_galore"),
                     ("use_apollo", "train.use_apollo"),
                     ("use_badam", "train.use_badam"),
                     ("use_swanlab", "train.use_swanlab")):
        put(eid, arg(key))
    put("train.packing", bool(arg("packing")))
    if isinstance(arg("report_to"), str):
        put("train.report_to", arg("report_to"))
    noise = arg("neftune_noise_alpha")
    put("train.neftune_alpha", 0 if noise is None else noise)
    compute = [c for c in ("pure_bf16", "bf16", "fp16") if arg(c) is True]
    state["train.compute_type"] = compute[0] if compute else "fp32"
    # the blocks after extra_args: only their widgets can set these
    adapters = want.get("adapter_name_or_path")
    if isinstance(adapters, str) and adapters and ftype in t.peft_methods:
        names = [_board_path(model_name, ftype, a.strip()) for a in adapters.split(",")]
        if all(names):
            state["top.checkpoint_path"] = names
    bit = want.get("quantization_bit")
    if isinstance(bit, int) and not isinstance(bit, bool):
        put("top.quantization_bit", str(bit))
        put("top.quantization_method", arg("quantization_method"))
    elif isinstance(want.get("quantization_method"), str):
        put("top.quantization_method", want["quantization_method"])
    # a block that runs must derive the experiment's value (LLaMA-Factory's default when
    # the experiment has none); a block that does not run keeps the Board's defaults
    state["train.extra_args"] = "{}"
    active = set(block_args(state, base_args(state, model_path=out.model_path)))

    def wanted(key: str) -> bool:
        return key in want or key in active

    for key in ("freeze_trainable_layers", "freeze_trainable_modules", "lora_rank",
                "lora_dropout", "create_new_adapter", "use_rslora", "use_dora",
                "ppo_score_norm", "ppo_whiten_rewards", "pref_beta", "pref_ftx", "pref_loss",
                "freeze_vision_tower", "freeze_multi_modal_projector", "freeze_language_model",
                "galore_rank", "galore_update_interval", "galore_scale", "galore_target",
                "apollo_rank", "apollo_update_interval", "apollo_scale", "apollo_target",
                "badam_mode", "badam_switch_mode", "badam_switch_interval",
                "badam_update_ratio", "swanlab_project", "swanlab_run_name",
                "swanlab_workspace", "swanlab_mode"):
        if wanted(key):
            put(f"train.{key}", arg(key))
    if wanted("freeze_extra_modules"):
        put("train.freeze_extra_modules", arg("freeze_extra_modules") or "")
    if wanted("lora_alpha"):
        alpha = arg("lora_alpha")
        put("train.lora_alpha", 2 * int(arg("lora_rank")) if alpha is None else alpha)
    if wanted("loraplus_lr_ratio"):
        ratio = arg("loraplus_lr_ratio")
        put("train.loraplus_lr_ratio", 0 if ratio is None else ratio)
    if arg("pissa_init") is True:
        state["train.use_pissa"] = True
    if wanted("lora_target"):
        target = arg("lora_target")
        put("train.lora_target", "" if target == "all" else target)
    if wanted("additional_target"):
        put("train.additional_target", arg("additional_target") or "")
    reward = want.get("reward_model")
    if isinstance(reward, str) and reward and stage == "ppo":
        if ftype in t.peft_methods:
            names = [_board_path(model_name, ftype, r.strip()) for r in reward.split(",")]
            if all(names):
                state["train.reward_model"] = names
        else:
            name = _board_path(model_name, ftype, reward)
            if name:
                state["train.reward_model"] = name
    for media in ("image", "video"):
        for end in ("max", "min"):
            pixels = f"{media}_{end}_pixels"
            value = arg(pixels)
            if wanted(pixels) and isinstance(value, int) and not isinstance(value, bool):
                side = math.isqrt(value) if value >= 0 else -1
                state[f"train.{pixels}"] = f"{side}*{side}" if side * side == value \
                    else str(value)
    val_size = want.get("val_size")
    if isinstance(val_size, int | float) and not isinstance(val_size, bool) \
            and 1e-6 < val_size <= 1 and stage != "ppo" \
            and arg("eval_strategy") == "steps" \
            and same_arg("eval_steps", arg("eval_steps"), arg("save_steps")) \
            and arg("per_device_eval_batch_size") == arg("per_device_train_batch_size"):
        put("train.val_size", val_size)
    extra: dict[str, Any] = {}
    if deepspeed_config is not None:
        preset = t.preset_name(deepspeed_config)
        if preset is not None:
            stage_part = preset.split("_")[1]  # ds_z3_offload_config.json -> z3
            state["train.ds_stage"] = stage_part[1:]
            state["train.ds_offload"] = "offload" in preset
        else:
            extra["deepspeed"] = dict(deepspeed_config)
    # extra_args carries every base argument the widgets could not give
    state["train.extra_args"] = "{}"
    base = base_args(state, model_path=out.model_path)
    forced = block_args(state, {**base, **extra})
    for key in sorted(set(want) | set(base)):
        if key in forced or key in EXPORT_OWNED or key in ("cache_dir", "deepspeed"):
            continue
        desired = want.get(key, lf.get(key))
        if key in base and same_arg(key, desired, base[key]):
            continue
        if key in base and _dropped(key, base[key]) and key in lf and \
                same_arg(key, desired, lf[key]):
            continue  # "Start" drops the base value: LLaMA-Factory's default applies
        if key not in base and key in lf and same_arg(key, desired, lf[key]):
            continue
        extra[key] = desired
    state["train.extra_args"] = json.dumps(extra, sort_keys=True, ensure_ascii=False)
    # what the Board will derive, against what the experiment says
    got = clean(board_to_args(state, model_path=out.model_path))
    got_eff = effective({k: v for k, v in got.items() if k not in EXPORT_OWNED
                         and k != "deepspeed"})
    want_eff = effective(want)
    for key in sorted(set(got_eff) | set(want_eff)):
        a, b = want_eff.get(key, lf.get(key)), got_eff.get(key, lf.get(key))
        if not same_arg(key, a, b):
            out.unrepresentable.append(
                f"{key}: the experiment has {json.dumps(a, default=str)}, the Board would "
                f"train with {json.dumps(b, default=str)}")
    return out


def _board_path(model_name: str, ftype: str, path: str) -> str | None:
    """The checkpoint-dropdown value whose get_save_dir is `path`, None if there is none."""
    prefix = get_save_dir(model_name, ftype, "x")[:-1]
    if path.startswith(prefix) and SEP not in path[len(prefix):] and path[len(prefix):]:
        return path[len(prefix):]
    return path if SEP in path else None

