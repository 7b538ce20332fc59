"""CLI -> Board: widget values whose derivation gives an experiment's arguments, the rest
through `extra_args`, and what the Board cannot represent (`args_to_board`)."""



from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from render.propose.board.table import (
    SEP,
    defaults,
    lf_defaults,
    table,
)
from render.propose.board.to_args import (
    _dropped,
    base_args,
    block_args,
    board_to_args,
    clean,
    get_save_dir,
)


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
    from render.propose.experiment import dataset_names

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
