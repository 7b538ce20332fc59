"""Tiny, offline demo assets: a random-weight Llama, a BPE tokenizer and alpaca data.

`make_demo_assets(dest)` writes everything LLaMA-Factory needs to run a real LoRA SFT on
a CPU in seconds, with no model or dataset hub:

    dest/
      .ftops-demo.json          marker: version + parameters (idempotence)
      tiny-llama/               LlamaForCausalLM (safetensors) + PreTrainedTokenizerFast
      data/demo.json            alpaca records (instruction / input / output)
      data/demo_eval.json       held-out records of the same kinds (the demo evaluates on them)
      data/dataset_info.json    {"demo": {"file_name": "demo.json"}, "demo_eval": {...}}

Everything is derived from `seed`, so two calls with the same parameters produce the
same bytes. torch, transformers and tokenizers are imported inside the function only:
importing this module is cheap.
"""

from __future__ import annotations

import importlib
import json
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Bump when the generated assets change in any way, so stale caches are rebuilt.
DEMO_ASSETS_VERSION = 2
MARKER_NAME = ".ftops-demo.json"
DATASET_NAME = "demo"
EVAL_DATASET_NAME = "demo_eval"
EVAL_EXAMPLES = 16
_EVAL_SEED_OFFSET = 1000  # held-out records come from another seed

BOS_TOKEN = "<s>"  # noqa: S105 - a vocabulary token, not a secret
EOS_TOKEN = "</s>"  # noqa: S105
PAD_TOKEN = "<pad>"  # noqa: S105
UNK_TOKEN = "<unk>"  # noqa: S105
SPECIAL_TOKENS = (PAD_TOKEN, BOS_TOKEN, EOS_TOKEN, UNK_TOKEN)  # ids 0..3, in this order

# Environment for `llamafactory-cli train` on the demo assets (CPU, offline). OMP_NUM_THREADS=1
# matters on a busy CPU: with torch's default thread pool a loaded 2-core box trained ~7x slower.
# experiments/demo/tiny-llama/*.yaml train `.demo/tiny-llama`: the folder is the model slug.
MODEL_DIR_NAME = "tiny-llama"

DEMO_TRAIN_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "OMP_NUM_THREADS": "1",
}

TOKENIZER_VOCAB_SIZE = 512
MODEL_SHAPE: dict[str, int] = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "intermediate_size": 128,
    "max_position_embeddings": 512,
}

# Same prompt layout as LLaMA-Factory's `default` template, so `chat` and `apply_chat_template`
# agree with what training saw.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] + eos_token + '\\n' }}"
    "{% elif message['role'] == 'user' %}"
    "{{ 'Human: ' + message['content'] + eos_token + '\\nAssistant:' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token + '\\n' }}"
    "{% endif %}{% endfor %}"
)

_WORDS = (
    "apple", "banana", "cherry", "dragon", "eagle", "forest", "garden", "harbor", "island",
    "jungle", "kettle", "lemon", "mountain", "needle", "orange", "pepper", "quartz", "river",
    "silver", "tiger", "umbrella", "velvet", "window", "yellow", "zebra", "anchor", "bridge",
    "candle", "desert", "engine", "falcon", "glacier", "hammer", "meadow", "planet", "rocket",
    "shadow", "thunder", "valley", "wizard",
)


@dataclass(frozen=True)
class DemoAssets:
    """Where the demo assets live (all absolute paths)."""

    model_dir: Path
    data_dir: Path
    dataset_file: Path
    dataset_name: str = DATASET_NAME

    @property
    def eval_file(self) -> Path:
        return self.data_dir / f"{EVAL_DATASET_NAME}.json"

    @property
    def dataset_info(self) -> Path:
        return self.data_dir / "dataset_info.json"


def demo_records(n_examples: int = 64, seed: int = 0) -> list[dict[str, str]]:
    """Alpaca records (instruction/input/output), a deterministic function of the seed."""
    rng = random.Random(seed)  # noqa: S311 - test data, not crypto
    records: list[dict[str, str]] = []
    for _ in range(n_examples):
        kind = rng.randrange(4)
        if kind == 0:
            a, b = rng.randint(0, 99), rng.randint(0, 99)
            rec = {"instruction": f"What is {a} + {b}?", "input": "", "output": str(a + b)}
        elif kind == 1:
            a, b = rng.randint(10, 99), rng.randint(0, 9)
            rec = {"instruction": "Subtract the second number from the first.",
                   "input": f"{a} {b}", "output": str(a - b)}
        elif kind == 2:
            word = rng.choice(_WORDS)
            rec = {"instruction": "Reverse the letters of the word.", "input": word,
                   "output": word[::-1]}
        else:
            words = rng.sample(_WORDS, 3)
            rec = {"instruction": "Sort these words alphabetically.", "input": " ".join(words),
                   "output": " ".join(sorted(words))}
        records.append(rec)
    return records


def demo_train_config(
    assets: DemoAssets, output_dir: str | Path, **overrides: Any
) -> dict[str, Any]:
    """A flat LLaMA-Factory config that trains a LoRA SFT on the demo assets on a CPU."""
    cfg: dict[str, Any] = {
        "model_name_or_path": str(assets.model_dir),
        "trust_remote_code": False,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "dataset": assets.dataset_name,
        "dataset_dir": str(assets.data_dir),
        "template": "default",
        "cutoff_len": 128,
        "overwrite_cache": True,
        "preprocessing_num_workers": 1,
        "dataloader_num_workers": 0,
        "per_device_train_batch_size": 4,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-3,
        "num_train_epochs": 2.0,
        "lr_scheduler_type": "cosine",
        "logging_steps": 1,
        "save_steps": 8,
        "plot_loss": True,
        "report_to": "none",
        "output_dir": str(output_dir),
        "overwrite_output_dir": False,
        "bf16": False,
        "fp16": False,
        "seed": 42,
    }
    cfg.update(overrides)
    return cfg


def _marker_payload(n_examples: int, seed: int) -> dict[str, Any]:
    return {
        "version": DEMO_ASSETS_VERSION,
        "n_examples": n_examples,
        "n_eval_examples": EVAL_EXAMPLES,
        "seed": seed,
        "tokenizer_vocab_size": TOKENIZER_VOCAB_SIZE,
        "model": dict(MODEL_SHAPE),
    }


def _assets_for(dest: Path) -> DemoAssets:
    data_dir = dest / "data"
    return DemoAssets(model_dir=dest / MODEL_DIR_NAME, data_dir=data_dir,
                      dataset_file=data_dir / "demo.json")


def _is_complete(assets: DemoAssets, marker: Path, payload: dict[str, Any]) -> bool:
    try:
        current = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if current != payload:
        return False
    needed = [
        assets.dataset_file,
        assets.eval_file,
        assets.dataset_info,
        assets.model_dir / "config.json",
        assets.model_dir / "model.safetensors",
        assets.model_dir / "tokenizer.json",
        assets.model_dir / "tokenizer_config.json",
    ]
    return all(p.is_file() for p in needed)


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _heavy(name: str) -> Any:
    """Import a training-stack module lazily, typed as Any (it may be absent for mypy)."""
    return importlib.import_module(name)


def _train_tokenizer(records: list[dict[str, str]], model_dir: Path) -> Any:
    tk = _heavy("tokenizers")
    Tokenizer, decoders, models = tk.Tokenizer, tk.decoders, tk.models
    pre_tokenizers, processors, trainers = tk.pre_tokenizers, tk.processors, tk.trainers
    PreTrainedTokenizerFast = _heavy("transformers").PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=TOKENIZER_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # Include the template's literal text so the prompt scaffolding gets merges too.
    corpus = ["Human: ", "\nAssistant:", "System: "] + [
        " ".join(v for v in (r["instruction"], r["input"], r["output"]) if v) for r in records
    ]
    tok.train_from_iterator(corpus, trainer=trainer, length=len(corpus))

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=MODEL_SHAPE["max_position_embeddings"],
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(model_dir))
    return fast


def _build_model(tokenizer: Any, model_dir: Path, seed: int) -> None:
    torch = _heavy("torch")
    transformers = _heavy("transformers")
    LlamaConfig, LlamaForCausalLM = transformers.LlamaConfig, transformers.LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_act="silu",
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **MODEL_SHAPE,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.to(torch.float32)
    model.save_pretrained(str(model_dir), safe_serialization=True)


def make_demo_assets(dest: Path, *, n_examples: int = 64, seed: int = 0) -> DemoAssets:
    """Write (or reuse) the demo model, tokenizer and data under `dest`.

    Idempotent: when `dest/.ftops-demo.json` matches this version and these parameters
    and the files are present, nothing is rewritten.
    """
    if n_examples < 1:
        raise ValueError("n_examples must be at least 1")
    dest = Path(dest).resolve()
    assets = _assets_for(dest)
    marker = dest / MARKER_NAME
    payload = _marker_payload(n_examples, seed)
    if _is_complete(assets, marker, payload):
        return assets

    # Rebuild from scratch; the marker is written last, so a crash leaves no marker.
    marker.unlink(missing_ok=True)
    for d in (assets.model_dir, assets.data_dir):
        if d.exists():
            shutil.rmtree(d)
    assets.model_dir.mkdir(parents=True)
    assets.data_dir.mkdir(parents=True)

    records = demo_records(n_examples, seed)
    _write_json(assets.dataset_file, records)
    _write_json(assets.eval_file, demo_records(EVAL_EXAMPLES, seed + _EVAL_SEED_OFFSET))
    _write_json(assets.dataset_info, {
        DATASET_NAME: {"file_name": assets.dataset_file.name},
        EVAL_DATASET_NAME: {"file_name": assets.eval_file.name},
    })

    tokenizer = _train_tokenizer(records, assets.model_dir)
    _build_model(tokenizer, assets.model_dir, seed)

    _write_json(marker, payload)
    return assets


DEMO_EXPERIMENT = "experiments/demo/tiny-llama/sft_lora_v1.yaml"
DEMO_ASSETS_DIR = ".demo"
# The demo's own index, beside its assets (ignored by git): the demo never changes the
# tracked outputs-index/, so a checkout stays clean after it and `rm -rf .demo` undoes it.
DEMO_INDEX_DIR = f"{DEMO_ASSETS_DIR}/outputs-index"


def run_demo(ws: Any, *, work: Path, nproc: int, say: Any) -> Any:
    """The local demo end to end, telling `say` each step: make the tiny model and data
    (offline), lint the demo experiment, render its cluster manifests, train it locally,
    and record it in the demo's own index, `.demo/outputs-index/` (never the tracked
    outputs-index/). Returns the finished run (`render.launch.local.Delivered`);
    AlreadyDone when it succeeded before."""
    from render.launch.local import launch_local
    from render.manifests.overlay import render
    from render.manifests.runspec import RunSpec, git_commit
    from render.propose.lint import require_clean
    from render.record.destination import IndexDestination

    say(f"1/4 making the tiny demo model and data in {DEMO_ASSETS_DIR}/ (offline)")
    make_demo_assets(ws.root / DEMO_ASSETS_DIR)
    say(f"2/4 lint {DEMO_EXPERIMENT}")
    (exp,) = require_clean(ws, [Path(DEMO_EXPERIMENT)])
    (rendered,) = render([RunSpec(exp, git_commit(ws.root))], ws.root / ".rendered", ws.root)
    say(f"3/4 rendered the cluster manifests to {ws.rel(rendered.folder)}/")
    say("4/4 training locally with llamafactory-cli, then the post-run hook "
        f"(recorded in {DEMO_INDEX_DIR}/)")
    return launch_local(ws, exp, work=work, nproc=nproc,
                        destination=IndexDestination(root=ws.root / DEMO_INDEX_DIR, repo=ws.root))
