"""Hypothesis strategies for LLaMA Board states: every saved field with a value its
widget can hold, drawn from the Board table (schemas/llamaboard-0.9.5.json)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

from render.propose.board import Element, table

_NUMBER_TEXT = {
    "train.learning_rate": st.sampled_from(["5e-5", "1e-4", "2.0e-5", "0.0003", "1E-6", "3"]),
    "train.num_train_epochs": st.sampled_from(["3.0", "1", "0.5", "10.0"]),
    "train.max_grad_norm": st.sampled_from(["1.0", "0.3", "2"]),
    "train.max_samples": st.sampled_from(["100000", "1000", "7"]),
}
_PIXELS = st.sampled_from(["768*768", "32*32", "256*256", "16*16", "4096", "1024*2"])
_TEXT = st.sampled_from(["", "all", "q_proj,v_proj", "mlp", "embed_tokens,lm_head",
                         "my project", "run-1"])
_NAMES = st.lists(st.sampled_from(["alpaca_en_demo", "identity", "dpo_en_demo", "c4_demo"]),
                  max_size=3, unique=True)
_CHECKPOINTS = st.lists(st.sampled_from(["train_2025-01-01", "train_b", "/abs/ckpt",
                                         "org/adapter"]), max_size=2, unique=True)

# Keys extra_args may hold: base arguments (extra_args wins) and block arguments (the
# blocks win), plus ones the Board has no field for.
_EXTRA = st.dictionaries(
    st.sampled_from(["optim", "flash_attn", "lora_rank", "use_galore", "use_badam",
                     "warmup_ratio", "seed", "packing", "report_to", "learning_rate",
                     "finetuning_type", "stage", "template", "val_size", "deepspeed",
                     "quantization_bit", "pref_beta", "save_steps", "max_samples"]),
    st.sampled_from([None, True, False, 0, 1, 7, 0.1, "adamw_torch", "sdpa", "lora",
                     "full", "dpo", "ppo", "sft", "mlflow", "ds.json"]),
    max_size=4)


def _slider(e: Element) -> st.SearchStrategy[Any]:
    lo, hi = e.minimum or 0, e.maximum or 1
    if float(lo).is_integer() and float(hi).is_integer() and isinstance(e.default, int):
        return st.integers(int(lo), int(min(hi, lo + 300)))
    return st.sampled_from(sorted({lo, hi, e.default, (lo + hi) / 2, 0.0, 0.1} & {
        v for v in (lo, hi, e.default, (lo + hi) / 2, 0.0, 0.1) if lo <= v <= hi}))


def _field(e: Element) -> st.SearchStrategy[Any]:
    t = table()
    if e.id in _NUMBER_TEXT:
        return _NUMBER_TEXT[e.id]
    if e.id.endswith("_pixels"):
        return _PIXELS
    if e.id == "train.extra_args":
        return _EXTRA.map(lambda d: json.dumps(d))
    if e.id == "top.model_name":
        return st.sampled_from(["Custom", "Qwen3-4B-Instruct-2507", "Llama-3-8B-Instruct",
                                sorted(t.multimodal_models)[0], "Qwen2-VL-7B-Instruct"])
    if e.id == "top.checkpoint_path":
        return _CHECKPOINTS
    if e.id == "train.dataset":
        return _NAMES
    if e.id == "train.reward_model":
        return _CHECKPOINTS
    if e.widget == "checkbox":
        return st.booleans()
    if e.widget == "slider":
        return _slider(e)
    if e.widget == "markdown":
        return st.just(e.default)
    if e.widget == "dropdown":
        choices = list(e.choices or [])
        if e.id == "top.template":
            choices = choices[:20] + ["default", "qwen3", "llama3"]
        if e.custom and not e.multiselect:
            choices = choices + ["custom-value"] if e.id != "top.quantization_bit" else choices
        return st.sampled_from(choices or [e.default])
    return _TEXT


def board_states() -> st.SearchStrategy[dict[str, Any]]:
    t = table()
    return st.fixed_dictionaries({eid: _field(t.elements[eid]) for eid in t.saved})
