"""The `evaluate:` block: what LLaMA-Factory's predict step can run after training.

Each entry is a predict step (`do_predict` with `predict_with_generate`) on the trained
model. LLaMA-Factory 0.9.5 allows it for stage sft only, refuses it with DeepSpeed ZeRO-3
and with `compute_accuracy`, and needs an `eval_dataset` or a validation split
(`hparams/parser.py`); ftops sets the model, the output folder and the switches itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from render.errors import Finding
from render.propose import schema
from render.propose.experiment import DATASET_NAME, Experiment, dataset_names
from render.propose.rules.context import Context

# Set by ftops for every predict step (render.manifests.runspec.RunSpec.eval_configs).
OWNED = {
    "output_dir": "each evaluation writes to <run>/eval/<name>/",
    "dataset_dir": "ftops builds dataset_dir from experiments/<dataset>/dataset.yaml",
    "do_predict": "an evaluation is a predict step",
    "predict_with_generate": "an evaluation generates and scores predictions",
    "do_train": "an evaluation runs after training, on the trained model",
    "do_eval": "the predict step already scores the predictions",
    "stage": "an evaluation runs stage sft",
    "model_name_or_path": "an evaluation loads the model this run trained",
    "adapter_name_or_path": "an evaluation loads the adapter this run trained",
    "finetuning_type": "it is the trained model's (train.finetuning_type)",
    "overwrite_output_dir": "each evaluation has its own folder",
    "resume_from_checkpoint": "a predict step has nothing to resume",
    "deepspeed": "the predict step runs without DeepSpeed (its inference needs ZeRO-3, "
                 "which cannot generate)",
    "report_to": "ftops adds the scores to the training run's tracker run",
    "dataset": "name the data to evaluate as eval_dataset (or use train.val_size's split)",
    "val_size": "the validation split is the one train.val_size held out from training",
}


def check(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    entries = exp.evaluate
    if not entries:
        return
    t = exp.train
    stage = t.get("stage", "sft")
    if stage != "sft":
        yield exp.finding(("evaluate",), f"evaluate: needs stage sft; this experiment trains "
                          f"stage {stage!r}", "LLaMA-Factory generates predictions "
                          "(predict_with_generate) for SFT only: remove evaluate:", "evaluate")
    if _zero3(exp.deepspeed_config):
        yield exp.finding(("evaluate",), "evaluate: cannot follow DeepSpeed ZeRO-3 training",
                          "LLaMA-Factory's predict_with_generate is incompatible with ZeRO-3: "
                          "train with ZeRO-2, or generate separately (LLaMA-Factory's "
                          "scripts/vllm_infer.py)", "evaluate")
    info = exp.registration.get("dataset_info")
    registered = set(info) if isinstance(info, dict) else set()
    for name, entry in entries.items():
        yield from _entry(exp, name, entry, registered)


def _entry(exp: Experiment, name: str, entry: dict[str, Any],
           registered: set[str]) -> Iterator[Finding]:
    here = ("evaluate", name)
    for key, why in OWNED.items():
        if key in entry:
            yield exp.finding((*here, key), f"{key} is set by ftops in an evaluation",
                              f"remove it: {why}", "evaluate")
    if entry.get("compute_accuracy"):
        yield exp.finding((*here, "compute_accuracy"),
                          "compute_accuracy cannot be used with predict_with_generate",
                          "remove it: the predict step scores BLEU-4 and ROUGE", "evaluate")
    names = dataset_names(entry.get("eval_dataset"))
    folder = f"experiments/{exp.dataset}/{DATASET_NAME}"
    for ds in names:
        if ds not in registered:
            hint = schema.did_you_mean(ds, registered)
            yield exp.finding((*here, "eval_dataset"), f"eval dataset {ds!r} is not registered",
                              hint or f"add it under dataset_info: in {folder}", "evaluate")
    if names:
        return
    val_size = exp.train.get("val_size")
    if not (isinstance(val_size, int | float) and not isinstance(val_size, bool)
            and val_size > 0):
        yield exp.finding(here, f"evaluation {name!r} has no data to evaluate on",
                          f"set eval_dataset to a dataset registered in {folder}, or set "
                          "train.val_size to evaluate on the split training held out",
                          "evaluate")
    elif "max_samples" in entry:
        yield exp.finding((*here, "max_samples"),
                          "max_samples would change the validation split (LLaMA-Factory "
                          "cuts the data before it splits), so the evaluation would see "
                          "training examples", "remove it, or evaluate a registered "
                          "eval_dataset with its own max_samples", "evaluate")


def _zero3(config: Any) -> bool:
    if not isinstance(config, dict):
        return False
    zero = config.get("zero_optimization")
    return isinstance(zero, dict) and zero.get("stage") == 3
