"""LLaMA-Factory arguments beyond their types: what ftops owns, names, combinations."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from render.errors import Finding
from render.propose import schema
from render.propose.experiment import Experiment, dataset_names, uses_torchrun
from render.propose.rules.context import Context

# Set by ftops for every run; a user value would break run isolation or resume.
OWNED = {
    "output_dir": "ftops writes each run to its own folder under the storage root",
    "dataset_dir": "ftops builds dataset_dir from experiments/<dataset>/dataset.yaml",
    "overwrite_output_dir": "every run has its own output folder and resumes from it",
    "resume_from_checkpoint": "a relaunched run resumes from its last checkpoint by itself",
}
LORA_ONLY = ("lora_rank", "lora_alpha", "lora_dropout", "lora_target", "use_dora",
             "use_rslora", "loraplus_lr_ratio", "pissa_init")
PREF_ONLY = ("pref_beta", "pref_loss", "pref_ftx", "dpo_label_smoothing", "simpo_gamma")
RANKING_STAGES = ("rm", "dpo")


def check(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    t = exp.train
    for key, why in OWNED.items():
        if key in t:
            yield exp.finding(("train", key), f"{key} is set by ftops", f"remove it: {why}",
                              "train")
    if t.get("do_train") is not True:
        yield exp.finding(("train", "do_train") if "do_train" in t else ("train",),
                          "do_train must be true for a training experiment",
                          "add do_train: true", "train")
    yield from _template(exp, t)
    yield from _combinations(exp, t)
    yield from _launcher(exp, t)


def _template(exp: Experiment, t: dict[str, Any]) -> Iterator[Finding]:
    template = t.get("template")
    templates = schema.lf_meta().get("templates", [])
    if isinstance(template, str) and templates and template not in templates:
        yield exp.finding(("train", "template"),
                          f"unknown template {template!r} in LLaMA-Factory "
                          f"{schema.LLAMAFACTORY_VERSION}",
                          schema.did_you_mean(template, templates)
                          or "see llamafactory.data.template.TEMPLATES", "train")
    if template is None and t.get("stage", "sft") != "pt":
        yield exp.finding(("train",), "template is required for this stage",
                          "set the chat template of the model, e.g. template: llama3", "train")


def _combinations(exp: Experiment, t: dict[str, Any]) -> Iterator[Finding]:
    stage = t.get("stage", "sft")
    ftype = t.get("finetuning_type", "lora")
    if ftype not in ("lora", "oft"):
        for key in LORA_ONLY:
            if key in t:
                yield exp.finding(("train", key),
                                  f"{key} has no effect with finetuning_type {ftype!r}",
                                  "remove it, or set finetuning_type: lora", "train")
        if t.get("quantization_bit") is not None:
            yield exp.finding(("train", "quantization_bit"),
                              "quantization (QLoRA) needs finetuning_type lora",
                              "set finetuning_type: lora or remove quantization_bit", "train")
    if stage not in ("dpo", "kto"):
        for key in PREF_ONLY:
            if key in t:
                yield exp.finding(("train", key), f"{key} applies to stage dpo or kto only",
                                  f"remove it (stage is {stage!r})", "train")
    if stage == "ppo" and not t.get("reward_model"):
        yield exp.finding(("train", "stage"), "stage ppo needs a reward_model",
                          "set reward_model to a trained reward model (stage rm)", "train")
    if t.get("predict_with_generate") and (t.get("do_train") or stage != "sft"):
        yield exp.finding(("train", "predict_with_generate"),
                          "predict_with_generate cannot be used while training",
                          "remove it; run prediction as its own experiment", "train")
    if t.get("bf16") and t.get("fp16"):
        yield exp.finding(("train", "fp16"), "bf16 and fp16 are both true",
                          "keep one of them", "train")
    if stage in RANKING_STAGES:
        info = exp.registration.get("dataset_info") or {}
        for name in dataset_names(t.get("dataset")):
            entry = info.get(name) if isinstance(info, dict) else None
            if isinstance(entry, dict) and not entry.get("ranking"):
                yield exp.finding(("train", "stage"),
                                  f"stage {stage} needs a preference dataset; {name!r} is not "
                                  "marked ranking: true",
                                  f"set ranking: true for {name} in dataset.yaml or choose a "
                                  "pairwise dataset", "train")
    launch = exp.launch
    if t.get("deepspeed") and launch.gpus_per_node == 0:
        yield exp.finding(("train", "deepspeed"), "DeepSpeed needs GPUs",
                          "remove deepspeed or set launch.gpus_per_node", "train")
    if (t.get("bf16") or t.get("fp16")) and launch.gpus_per_node == 0:
        yield exp.finding(("train", "bf16" if t.get("bf16") else "fp16"),
                          "mixed precision needs GPUs; this experiment trains on CPU",
                          "remove it or set launch.gpus_per_node", "train")


def _zero_stage(exp: Experiment) -> object:
    ds = exp.deepspeed_config
    zero = ds.get("zero_optimization") if isinstance(ds, dict) else None
    return zero.get("stage") if isinstance(zero, dict) else None


def _launcher(exp: Experiment, t: dict[str, Any]) -> Iterator[Finding]:
    """What LLaMA-Factory refuses under the launcher the layout gets (`uses_torchrun`):
    in a distributed run, layer-wise GaLore or APOLLO, ratio BAdam, and layer-wise BAdam
    without ZeRO-3; with DeepSpeed, GaLore and APOLLO at all."""
    deepspeed = t.get("deepspeed") is not None
    if deepspeed and (t.get("use_galore") or t.get("use_apollo")):
        key = "use_galore" if t.get("use_galore") else "use_apollo"
        yield exp.finding(("train", key), f"{key} cannot be combined with DeepSpeed "
                          "(LLaMA-Factory refuses it)", "remove deepspeed or " + key, "train")
    processes = exp.launch.processes
    if not uses_torchrun(processes, deepspeed):
        return
    why = (f"this layout runs {processes} processes (nodes × GPUs per node), a distributed "
           "run" if processes > 1 else "DeepSpeed starts a distributed run, even on one GPU")
    one = "or train on one GPU without DeepSpeed (nodes: 1, gpus_per_node: 1)"
    for method in ("galore", "apollo"):
        if t.get(f"use_{method}") and t.get(f"{method}_layerwise"):
            yield exp.finding(("train", f"{method}_layerwise"),
                              f"layer-wise {method.upper() if method == 'apollo' else 'GaLore'}"
                              f" cannot run distributed: {why}",
                              f"set {method}_layerwise: false, {one}", "train")
    if t.get("use_badam"):
        if t.get("badam_mode", "layer") == "ratio":
            yield exp.finding(("train", "badam_mode"), f"ratio BAdam cannot run distributed: "
                              f"{why}", f"use badam_mode: layer with DeepSpeed ZeRO-3, {one}",
                              "train")
        elif _zero_stage(exp) != 3:
            yield exp.finding(("train", "use_badam"), "layer-wise BAdam in a distributed run "
                              f"needs DeepSpeed ZeRO-3: {why}",
                              f"set deepspeed to a ZeRO-3 config (e.g. "
                              f"experiments/_deepspeed/ds_z3.json), {one}", "train")
