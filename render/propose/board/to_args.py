"""Board -> CLI: LLaMA-Factory's `Runner._parse_train_args`, rule for rule, and what of a
Board state never reaches the arguments (`lost_fields`)."""



from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from render.propose.board.table import (
    CACHE_DIR,
    SAVE_DIR,
    SEP,
    UI_ONLY,
    BoardError,
    Element,
    defaults,
    lf_defaults,
    table,
)


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
