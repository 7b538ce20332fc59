"""Pipeline stages (`needs:`): what a stage may start from, and LLaMA-Factory's
semantics of training on an earlier adapter, said where the choice is made.

- The needed experiment exists, is not the stage itself, and needs form no cycle; a
  sweep is needed by the run id of one point (its latest success is no choice).
- `as: adapter_name_or_path` needs a LoRA/OFT stage over a LoRA/OFT input (LLaMA-Factory
  accepts adapters only with finetuning_type lora, hparams/parser.py); `as:
  model_name_or_path` needs an input that is a whole model (full or freeze): a LoRA
  output is an adapter, which must be merged first (`llamafactory-cli export`).
- The stage does not set the argument the input becomes.
- The stage reads central storage (gcsfuse or pvc): an ephemeral-storage pod does not
  mount the input's folder.
- A preference stage (dpo, kto, rm, ppo) on an SFT adapter says `create_new_adapter`
  explicitly: without it LLaMA-Factory keeps training the SFT adapter and the DPO
  reference model is the *base* model (the adapter disabled), not the SFT model
  (model/adapter.py, train/trainer_utils.py); with `create_new_adapter: true` the SFT
  adapter is merged and the reference is the SFT model. ZeRO-3 or quantization
  silently ignore `create_new_adapter: true` (the adapter is resumed).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from render.errors import Finding
from render.propose.experiment import Experiment
from render.propose.needs import declared
from render.propose.rules.context import Context

ADAPTER_TYPES = ("lora", "oft")
MODEL_TYPES = ("full", "freeze")
PREFERENCE_STAGES = ("dpo", "kto", "rm", "ppo")
SEMANTICS = ("LLaMA-Factory semantics: without create_new_adapter, DPO on an SFT adapter "
             "keeps training that adapter and uses the *base* model as reference (the "
             "adapter disabled); with create_new_adapter: true the SFT adapter is merged, "
             "the reference is the SFT model, and inference needs both adapters "
             "(adapter_name_or_path: <sft>,<dpo>)")


def check(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    entries = declared(exp)
    if not entries:
        return
    train = exp.train
    ftype = train.get("finetuning_type", "lora")
    if exp.launch.storage not in ("gcsfuse", "pvc"):
        yield exp.finding(("launch", "storage"), f"a pipeline stage reads its input from "
                          f"central storage, which storage {exp.launch.storage!r} does not "
                          "mount", "use launch.storage: gcsfuse or pvc", "pipeline")
    for i, need in entries:
        where = ("needs", i)
        path, as_ = need["experiment"], need["as"]
        if path == exp.path:
            yield exp.finding((*where, "experiment"), "a stage cannot need itself",
                              "name the earlier experiment", "pipeline")
            continue
        other, _ = ctx.ws.load(ctx.ws.root / path)
        if other is None or not (ctx.ws.root / path).is_file():
            yield exp.finding((*where, "experiment"), f"{path} is not an experiment file",
                              "name an experiment of this repository, from its root",
                              "pipeline")
            continue
        if _cycle(ctx, other, exp.path):
            yield exp.finding((*where, "experiment"), f"{path} needs this experiment "
                              "(directly or through other stages): a cycle never starts",
                              "remove one of the needs", "pipeline")
        if "sweep" in other.merged and need.get("run", "latest-succeeded") == \
                "latest-succeeded":
            yield exp.finding((*where, "run"), f"{path} is a sweep: its latest succeeded "
                              "run is whichever point finished last, not the best one",
                              "name the point's run id (run: <run id>; the plan and the "
                              "index list each point's run id)", "pipeline")
        theirs = other.train.get("finetuning_type", "lora")
        if as_ == "adapter_name_or_path":
            if ftype not in ADAPTER_TYPES:
                yield exp.finding(("train", "finetuning_type"), f"an adapter input needs "
                                  f"finetuning_type lora or oft here, not {ftype!r}",
                                  "train a LoRA over it, or use a merged model "
                                  "(as: model_name_or_path)", "pipeline")
            if theirs not in ADAPTER_TYPES:
                yield exp.finding((*where, "as"), f"{path} trains {theirs!r}: its output is "
                                  "a whole model, not an adapter",
                                  "use as: model_name_or_path", "pipeline")
        elif theirs not in MODEL_TYPES:
            yield exp.finding((*where, "as"), f"{path} trains a {theirs} adapter: its "
                              "output is not a model LLaMA-Factory can load as "
                              "model_name_or_path",
                              "use as: adapter_name_or_path, or merge it first "
                              "(llamafactory-cli export) in an experiment of its own",
                              "pipeline")
        if as_ == "adapter_name_or_path" and as_ in train:
            yield exp.finding(("train", as_), f"{as_} comes from needs[{i}] ({path}); "
                              "do not set it here", f"remove train.{as_}", "pipeline")
        if as_ == "adapter_name_or_path" and train.get("stage") in PREFERENCE_STAGES:
            yield from _preference(exp)


def _preference(exp: Experiment) -> Iterator[Finding]:
    train = exp.train
    if "create_new_adapter" not in train and "ref_model" not in train:
        yield exp.finding(("train",), f"a {train.get('stage')} stage on an SFT adapter: "
                          "say create_new_adapter: true (reference = the SFT model) or "
                          "false (keep training the SFT adapter; reference = the base model)",
                          SEMANTICS, "pipeline")
    zero3 = ((exp.deepspeed_config or {}).get("zero_optimization") or {}).get("stage") == 3
    if train.get("create_new_adapter") is True and (zero3 or train.get("quantization_bit")):
        yield exp.finding(("train", "create_new_adapter"), "LLaMA-Factory ignores "
                          "create_new_adapter with DeepSpeed ZeRO-3 or quantization: it "
                          "resumes the SFT adapter instead", "use ZeRO-2 and no "
                          "quantization, or set it to false and know the reference is the "
                          "base model", "pipeline")


def _cycle(ctx: Context, start: Experiment, target: str, depth: int = 0) -> bool:
    if depth > 8:
        return False
    for _, need in declared(start):
        path = need["experiment"]
        if path == target:
            return True
        nxt, _ = ctx.ws.load(Path(ctx.ws.root) / path)
        if nxt is not None and _cycle(ctx, nxt, target, depth + 1):
            return True
    return False
