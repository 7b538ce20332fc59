"""Synthetic experiment trees for the benchmarks: N experiments spread over folders."""

from __future__ import annotations

import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

TEMPLATE = """\
# yaml-language-server: $schema=../../../schemas/experiment.schema.json
metadata:
  owner: bench
  description: Synthetic experiment {i} for the benchmark.
  tags: [bench]
launch:
  nodes: {nodes}
  gpus_per_node: 8
  gpu_type: h100-80gb
  max_restarts: 2
  time_limit: 6h
train:
  model_name_or_path: meta-llama/Llama-3.1-8B
  stage: sft
  do_train: true
  finetuning_type: lora
  lora_rank: {rank}
  lora_target: all
  dataset: ds{d}
  template: llama3
  cutoff_len: 2048
  per_device_train_batch_size: 4
  gradient_accumulation_steps: 2
  learning_rate: {lr}
  num_train_epochs: 3.0
  lr_scheduler_type: cosine
  warmup_ratio: 0.1
  logging_steps: 10
  save_steps: 200
  bf16: true
"""

DATASET = """\
description: Synthetic dataset {d}.
source:
  uri: gs://my-project-llm/datasets/ds{d}/
  revision: "2024-01-01"
dataset_info:
  ds{d}:
    file_name: data.json
    num_samples: 10000
"""


def make_tree(root: Path, n: int, per_folder: int = 20) -> list[Path]:
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(REPO / "k8s-base", root / "k8s-base")
    (root / "experiments").mkdir(parents=True)
    (root / "outputs-index").mkdir()
    paths = []
    for i in range(n):
        d = i // per_folder
        folder = root / "experiments" / f"ds{d}" / "llama-3.1-8b"
        if not folder.exists():
            folder.mkdir(parents=True)
            (folder.parent / "dataset.yaml").write_text(DATASET.format(d=d))
        path = folder / f"sft_lora_{i}_v1.yaml"
        path.write_text(TEMPLATE.format(i=i, d=d, nodes=1 + i % 2, rank=8 + i,
                                        lr=f"{1 + i % 9}.0e-5"))
        paths.append(path)
    return paths


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
