"""Names other trainers use for LLaMA-Factory arguments, and type names in words.

`SYNONYMS` maps a key people bring from axolotl, TRL, PEFT or older Hugging Face
`transformers` to the LLaMA-Factory 0.9.5 argument that means the same, with what to
write instead. Lint's "unknown key" hint reads it before falling back to "did you mean"
(which guesses by spelling: `epochs` would suggest `ppo_epochs`). Only pairs whose
meaning matches are listed; a value that needs converting says how.

`expected_words` and `value_words` turn JSON Schema types and values into the words a
person reads ("expected an integer or null, got the string 'eight'").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Synonym:
    target: str  # the LLaMA-Factory argument
    source: str  # who uses the foreign name
    how: str = ""  # how to convert the value, when it is not a plain rename

    def hint(self, key: str) -> str:
        text = f"`{key}` ({self.source}) is LLaMA-Factory's `{self.target}`"
        return f"{text}: {self.how}" if self.how else f"{text}: rename it"


SYNONYMS: dict[str, Synonym] = {
    # epochs, steps, batches
    "epochs": Synonym("num_train_epochs", "used elsewhere"),
    "num_epochs": Synonym("num_train_epochs", "axolotl"),
    "micro_batch_size": Synonym("per_device_train_batch_size", "axolotl"),
    "batch_size": Synonym("per_device_train_batch_size", "used elsewhere",
                          "the per-GPU batch; the global batch is it times "
                          "gradient_accumulation_steps times the GPU count"),
    "per_gpu_train_batch_size": Synonym("per_device_train_batch_size", "older transformers"),
    "per_gpu_eval_batch_size": Synonym("per_device_eval_batch_size", "older transformers"),
    "eval_batch_size": Synonym("per_device_eval_batch_size", "axolotl"),
    "gradient_accumulation": Synonym("gradient_accumulation_steps", "used elsewhere"),
    # optimizer and schedule
    "lr": Synonym("learning_rate", "used elsewhere"),
    "optimizer": Synonym("optim", "axolotl"),
    "lr_scheduler": Synonym("lr_scheduler_type", "axolotl"),
    "scheduler": Synonym("lr_scheduler_type", "used elsewhere"),
    "warmup": Synonym("warmup_ratio", "used elsewhere",
                      "use warmup_ratio for a fraction of the steps or warmup_steps for a count"),
    # sequence length and data
    "max_seq_length": Synonym("cutoff_len", "TRL SFTConfig"),
    "max_seq_len": Synonym("cutoff_len", "used elsewhere"),
    "sequence_len": Synonym("cutoff_len", "axolotl"),
    "seq_length": Synonym("cutoff_len", "used elsewhere"),
    "model_max_length": Synonym("cutoff_len", "transformers tokenizers"),
    "datasets": Synonym("dataset", "axolotl",
                        "a comma-separated list of names registered in dataset.yaml"),
    "dataset_name": Synonym("dataset", "TRL",
                            "a name registered in experiments/<dataset>/dataset.yaml"),
    "train_on_inputs": Synonym("train_on_prompt", "axolotl"),
    "sample_packing": Synonym("packing", "axolotl"),
    "val_set_size": Synonym("val_size", "axolotl"),
    "chat_template": Synonym("template", "axolotl",
                             "a LLaMA-Factory template name such as llama3 or qwen3"),
    # model and quantization
    "base_model": Synonym("model_name_or_path", "axolotl"),
    "model_name": Synonym("model_name_or_path", "used elsewhere"),
    "model_id": Synonym("model_name_or_path", "used elsewhere"),
    "model": Synonym("model_name_or_path", "used elsewhere"),
    "load_in_4bit": Synonym("quantization_bit", "bitsandbytes",
                            "write quantization_bit: 4 (QLoRA, with finetuning_type: lora)"),
    "load_in_8bit": Synonym("quantization_bit", "bitsandbytes",
                            "write quantization_bit: 8 (with finetuning_type: lora)"),
    "bnb_4bit_quant_type": Synonym("quantization_type", "bitsandbytes"),
    "bnb_4bit_use_double_quant": Synonym("double_quantization", "bitsandbytes"),
    "flash_attention": Synonym("flash_attn", "axolotl", "write flash_attn: fa2 (or auto)"),
    "attn_implementation": Synonym("flash_attn", "transformers",
                                   "one of auto, disabled, sdpa, fa2, fa3"),
    "liger_kernel": Synonym("enable_liger_kernel", "used elsewhere"),
    "use_liger": Synonym("enable_liger_kernel", "axolotl"),
    # LoRA / PEFT
    "adapter": Synonym("finetuning_type", "axolotl", "write finetuning_type: lora"),
    "use_peft": Synonym("finetuning_type", "TRL", "write finetuning_type: lora"),
    "lora_r": Synonym("lora_rank", "axolotl, PEFT"),
    "r": Synonym("lora_rank", "PEFT"),
    "rank": Synonym("lora_rank", "used elsewhere"),
    "lora_target_modules": Synonym("lora_target", "axolotl",
                                   "a comma-separated string, or all"),
    "target_modules": Synonym("lora_target", "PEFT", "a comma-separated string, or all"),
    "lora_modules_to_save": Synonym("additional_target", "axolotl"),
    "modules_to_save": Synonym("additional_target", "PEFT"),
    # preference training
    "beta": Synonym("pref_beta", "TRL DPOConfig"),
    "dpo_beta": Synonym("pref_beta", "axolotl"),
    "loss_type": Synonym("pref_loss", "TRL DPOConfig"),
    "rpo_alpha": Synonym("pref_ftx", "TRL DPOConfig"),
    # transformers renames
    "evaluation_strategy": Synonym("eval_strategy", "transformers, removed in 5.0"),
    "no_cuda": Synonym("use_cpu", "transformers, removed in 5.0"),
    "push_to_hub_model_id": Synonym("hub_model_id", "transformers, removed in 5.0"),
    "fsdp_transformer_layer_cls_to_wrap": Synonym(
        "fsdp_config", "transformers, removed in 5.0",
        "move the value into fsdp_config: {transformer_layer_cls_to_wrap: [...]}"),
    "wandb_project": Synonym("report_to", "axolotl",
                             "write report_to: wandb; the project comes from WANDB_PROJECT"),
}


_TYPE_WORDS = {
    "integer": "an integer", "number": "a number", "string": "a string",
    "boolean": "true or false", "array": "a list", "object": "a mapping", "null": "null",
}


def expected_words(want: Any) -> str:
    """['integer', 'null'] -> 'an integer or null'."""
    names = [want] if isinstance(want, str) else list(want) if isinstance(want, list) else []
    words = [_TYPE_WORDS.get(str(n), str(n)) for n in names]
    if "a number" in words and "an integer" in words:
        words.remove("an integer")
    if not words:
        return str(want)
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + " or " + words[-1]


def value_words(value: Any, limit: int = 60) -> str:
    """A value as a person reads it: the string 'eight', the number 3.5, a list of 2."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"the integer {value}"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= limit else value[: limit - 3] + "..."
        escaped = json.dumps(shown, ensure_ascii=False)[1:-1].replace('\\"', '"')
        return f"the string '{escaped}'"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} key{'s' if len(value) != 1 else ''}"
    return f"a {type(value).__name__}"
