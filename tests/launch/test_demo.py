"""The demo assets: deterministic, idempotent, and a real LLaMA-Factory LoRA SFT on them."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from render.launch.demo import (
    DEMO_TRAIN_ENV,
    MARKER_NAME,
    DemoAssets,
    demo_records,
    demo_train_config,
    make_demo_assets,
)

OUTPUT_FILES = (
    "trainer_log.jsonl",
    "trainer_state.json",
    "train_results.json",
    "all_results.json",
    "training_loss.png",
    "adapter_model.safetensors",
    "adapter_config.json",
)


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> DemoAssets:
    return make_demo_assets(tmp_path_factory.mktemp("demo") / "assets", n_examples=64, seed=0)


def test_records_are_a_function_of_the_seed() -> None:
    a, b = demo_records(32, seed=1), demo_records(32, seed=1)
    assert a == b
    assert a != demo_records(32, seed=2)
    assert len(a) == 32
    assert all(set(r) == {"instruction", "input", "output"} for r in a)
    assert all(r["instruction"] and r["output"] for r in a)


def test_assets_layout(assets: DemoAssets) -> None:
    assert assets.model_dir.is_absolute()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        assert (assets.model_dir / name).is_file(), name
    records = json.loads(assets.dataset_file.read_text())
    assert len(records) == 64
    held_out = json.loads(assets.eval_file.read_text())
    assert len(held_out) == 16 and held_out != records[:16]  # another seed
    info = json.loads(assets.dataset_info.read_text())
    assert info == {"demo": {"file_name": "demo.json"},
                    "demo_eval": {"file_name": "demo_eval.json"}}
    config = json.loads((assets.model_dir / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (
        2, 64, 4)
    assert config["intermediate_size"] == 128 and config["max_position_embeddings"] == 512
    tok_cfg = json.loads((assets.model_dir / "tokenizer_config.json").read_text())
    specials = (tok_cfg["bos_token"], tok_cfg["eos_token"], tok_cfg["pad_token"])
    assert specials == ("<s>", "</s>", "<pad>")
    vocab = json.loads((assets.model_dir / "tokenizer.json").read_text())["model"]["vocab"]
    assert config["vocab_size"] == len(vocab) == 512


def test_assets_are_deterministic_and_idempotent(assets: DemoAssets, tmp_path: Path) -> None:
    dest = assets.model_dir.parent
    before = tree_digest(dest)
    mtimes = {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()}

    # Same parameters: marker matches, nothing is rewritten.
    again = make_demo_assets(dest, n_examples=64, seed=0)
    assert again == assets
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*") if p.is_file()} == mtimes

    # Same parameters elsewhere: byte-identical assets.
    other = make_demo_assets(tmp_path / "other", n_examples=64, seed=0)
    assert tree_digest(other.model_dir.parent) == before

    # Different parameters: the marker no longer matches and the assets are rebuilt.
    rebuilt = make_demo_assets(tmp_path / "other", n_examples=16, seed=3)
    assert json.loads((tmp_path / "other" / MARKER_NAME).read_text())["seed"] == 3
    assert len(json.loads(rebuilt.dataset_file.read_text())) == 16

    # A missing file (or a missing marker) also triggers a rebuild.
    (rebuilt.model_dir / "model.safetensors").unlink()
    make_demo_assets(tmp_path / "other", n_examples=16, seed=3)
    assert (rebuilt.model_dir / "model.safetensors").is_file()


def test_import_is_cheap() -> None:
    code = (
        "import sys, render.launch.demo; "
        "print(sorted(m for m in ('torch', 'transformers', 'tokenizers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- real training


def train_env() -> dict[str, str]:
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)  # llamafactory-cli and torchrun live here
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    for var in ("FORCE_TORCHRUN", "NPROC_PER_NODE", "NNODES", "USE_MCA", "ALLOW_EXTRA_ARGS"):
        env.pop(var, None)
    env.update(DEMO_TRAIN_ENV)
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def run_train(cfg: dict[str, object], workdir: Path) -> subprocess.CompletedProcess[str]:
    cfg_path = workdir / "train.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    cli = Path(sys.executable).parent / "llamafactory-cli"
    return subprocess.run([str(cli), "train", str(cfg_path)], cwd=workdir, env=train_env(),
                          capture_output=True, text=True, timeout=600, check=False)


def read_losses(output_dir: Path) -> list[float]:
    rows = [json.loads(line) for line in (output_dir / "trainer_log.jsonl").read_text().splitlines()
            if line.strip()]
    return [float(r["loss"]) for r in rows if "loss" in r]


@pytest.mark.slow
def test_llamafactory_trains_on_demo_assets(assets: DemoAssets, tmp_path: Path) -> None:
    # A dataset_dir of our own whose dataset_info points at the demo file by absolute path.
    ds_dir = tmp_path / "datasets"
    ds_dir.mkdir()
    (ds_dir / "dataset_info.json").write_text(
        json.dumps({"demo": {"file_name": str(assets.dataset_file)}}))
    out = tmp_path / "out"
    cfg = demo_train_config(assets, out, dataset_dir=str(ds_dir))
    proc = run_train(cfg, tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]

    for name in OUTPUT_FILES:
        assert (out / name).is_file(), name
    # 64 examples / batch 4 = 16 steps per epoch, 2 epochs, a checkpoint every 8 steps.
    assert sorted(p.name for p in out.glob("checkpoint-*")) == [
        "checkpoint-16", "checkpoint-24", "checkpoint-32", "checkpoint-8"]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 32
    losses = read_losses(out)
    assert len(losses) == 32
    assert all(math.isfinite(x) for x in losses)
    results = json.loads((out / "all_results.json").read_text())
    assert math.isfinite(results["train_loss"])


@pytest.mark.slow
def test_llamafactory_resumes_from_last_checkpoint(assets: DemoAssets, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run_train(demo_train_config(assets, out, max_steps=8), tmp_path)
    assert first.returncode == 0, first.stderr[-4000:]
    assert (out / "checkpoint-8").is_dir()

    # Same output_dir, overwrite_output_dir false: LLaMA-Factory picks up checkpoint-8.
    second = run_train(demo_train_config(assets, out, max_steps=16), tmp_path)
    assert second.returncode == 0, second.stderr[-4000:]
    log = second.stdout + second.stderr
    assert "Resuming training from" in log and "checkpoint-8" in log
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 16
    assert (out / "checkpoint-16").is_dir()
    # trainer_log.jsonl is appended to across restarts; the steps continue after 8.
    lines = (out / "trainer_log.jsonl").read_text().splitlines()
    steps = [json.loads(x)["current_steps"] for x in lines if x.strip()]
    assert steps[-1] == 16 and 9 in steps
