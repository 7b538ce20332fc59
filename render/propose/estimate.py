"""How long a run will take and how many GPU-hours it costs, before it runs: from the
throughput of the latest succeeded run of the same dataset, model and GPU type in
outputs-index/ when there is one, else from a FLOPs formula (or a CPU rate). Read by
`ftops plan` (its estimate rows) and by the budget rule of lint
(`render.propose.budget`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from render.markdown import esc
from render.propose.experiment import Experiment, dataset_names
from render.record.index import INDEX_DIR, model_runs

# The utilisation we assume of a GPU type's peak (the profile's peak_tflops) when no run
# measured a throughput.
ASSUMED_MFU = 0.35
CPU_SAMPLES_PER_S = 20.0


@dataclass(frozen=True)
class Estimate:
    gpu_hours: float | None
    wall_hours: float | None
    how: str


def _samples(exp: Experiment) -> int | None:
    t = exp.train
    if isinstance(t.get("max_samples"), int):
        return int(t["max_samples"])
    info = exp.registration.get("dataset_info") or {}
    total = 0
    for name in dataset_names(t.get("dataset")):
        entry = info.get(name) if isinstance(info, dict) else None
        if not isinstance(entry, dict) or not isinstance(entry.get("num_samples"), int):
            return None
        total += entry["num_samples"]
    return total or None


def _params_billion(model: str) -> float | None:
    m = re.search(r"(\d+(?:\.\d+)?)\s*[bB](?![a-zA-Z])", model.rsplit("/", 1)[-1])
    return float(m.group(1)) if m else None


def measured_throughput(root: Path, exp: Experiment) -> tuple[float, str] | None:
    """Samples per second per GPU of the latest succeeded run on the same dataset,
    model and GPU type in outputs-index/ (`root` is the repository root), and which run
    measured it (escaped Markdown)."""
    best: tuple[str, float, str] | None = None
    for rec in model_runs(root / INDEX_DIR, exp.dataset, exp.model):
        sps = rec.metrics.train_samples_per_second
        if rec.status != "succeeded" or rec.gpu_type != exp.launch.gpu_type:
            continue
        if not isinstance(sps, int | float) or not 0 < sps < float("inf"):
            continue
        try:
            gpus = max(int(rec.nodes) * int(rec.gpus_per_node), 1)
        except (TypeError, ValueError):
            continue
        stamp = str(rec.finished_at or "")
        if best is None or stamp >= best[0]:
            best = (stamp, float(sps) / gpus, f"{esc(rec.experiment)} run {esc(rec.run_id)}")
    return (best[1], best[2]) if best else None


def estimate(root: Path, exp: Experiment) -> Estimate:
    launch, t = exp.launch, exp.train
    samples = _samples(exp)
    epochs = float(t.get("num_train_epochs", 3.0))
    gpus = max(launch.total_gpus, 1)
    if samples is None:
        return Estimate(None, None, "unknown: set max_samples or num_samples in dataset.yaml")
    work = samples * epochs
    measured = measured_throughput(root, exp)
    if measured is not None:
        per_gpu, source = measured
        wall = work / (per_gpu * gpus) / 3600
        return Estimate(wall * launch.total_gpus, wall,
                        f"measured: {per_gpu:.2f} samples/s per GPU in {source}")
    if launch.gpus_per_node == 0:
        wall = work / CPU_SAMPLES_PER_S / 3600
        return Estimate(0.0, wall, f"formula: CPU at ~{CPU_SAMPLES_PER_S:g} samples/s")
    params = _params_billion(str(t.get("model_name_or_path", "")))
    gpu = exp.profile.gpu_types.get(launch.gpu_type)
    peak = gpu.peak_tflops if gpu is not None else None
    if params is None or peak is None:
        return Estimate(None, None, "unknown: no earlier run and no model size in its name")
    tokens = work * int(t.get("cutoff_len", 1024))
    # 6·N·tokens for full training; LoRA skips most weight gradients (~4·N·tokens).
    factor = 6.0 if t.get("finetuning_type", "lora") == "full" else 4.0
    flops = factor * params * 1e9 * tokens
    wall = flops / (peak * 1e12 * ASSUMED_MFU * gpus) / 3600
    return Estimate(wall * gpus, wall,
                    f"formula: {factor:g}·N·tokens at {ASSUMED_MFU:.0%} of {peak:g} TFLOP/s, "
                    "tokens = samples × epochs × cutoff_len (an upper bound)")
