"""Resources within what the cluster profile (k8s-base/cluster-profile.yaml) offers and
Kueue's quotas (k8s-base/components/kueue/) can ever admit; the time limit, the image
registry and the Secrets within the profile's limits."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from render.errors import Finding
from render.k8snames import CONFIGMAP_MAX_BYTES
from render.propose.experiment import Experiment, used_datasets
from render.propose.profile import PROFILE_PATH
from render.propose.quotas import KUEUE_DIR
from render.propose.rules.context import Context
from render.propose.schema import did_you_mean


def check(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    raw = exp.merged.get("launch")
    if not isinstance(raw, dict):
        return
    p = exp.profile
    launch = exp.launch
    if "gpu_type" in raw and launch.gpu_type not in p.gpu_types:
        yield exp.finding(("launch", "gpu_type"), f"unknown GPU type {launch.gpu_type!r}",
                          did_you_mean(launch.gpu_type, p.gpu_types)
                          or f"one of {', '.join(sorted(p.gpu_types))} ({PROFILE_PATH})",
                          "resources")
    else:
        gpu = p.gpu_types.get(launch.gpu_type)
        if gpu is not None and launch.gpus_per_node > gpu.gpus_per_node:
            yield exp.finding(("launch", "gpus_per_node"),
                              f"{launch.gpu_type} nodes have {gpu.gpus_per_node} GPUs, "
                              f"{launch.gpus_per_node} asked",
                              f"use at most {gpu.gpus_per_node} per node and more nodes",
                              "resources")
        if gpu is not None and gpu.gpus_per_node > 0 and launch.gpus_per_node == 0:
            yield exp.finding(("launch", "gpus_per_node"),
                              f"gpu_type {launch.gpu_type} with 0 GPUs per node",
                              "ask for GPUs or use gpu_type: cpu", "resources")
    if launch.nodes > p.max_nodes:
        yield exp.finding(("launch", "nodes"), f"{launch.nodes} nodes asked; the cluster "
                          f"allows {p.max_nodes}", f"see max_nodes in {PROFILE_PATH}",
                          "resources")
    for field, value, allowed in (("queue", launch.queue, p.queues),
                                  ("priority", launch.priority, p.priorities),
                                  ("storage", launch.storage, p.storage_profiles)):
        if field in raw and value not in allowed:
            yield exp.finding(("launch", field), f"unknown {field} {value!r}",
                              did_you_mean(value, allowed) or f"one of {', '.join(allowed)}",
                              "resources")
    yield from _limits(exp, raw)
    gpu = p.gpu_types.get(launch.gpu_type)
    local_queues = ctx.quotas.local_queues
    if launch.queue in p.queues and launch.queue not in local_queues:
        yield exp.finding(("launch", "queue") if "queue" in raw else ("launch",),
                          f"queue {launch.queue!r} has no LocalQueue in {KUEUE_DIR}/",
                          f"add it to {KUEUE_DIR}/local-queues.yaml, or use one of "
                          + ", ".join(sorted(local_queues)), "resources")
    elif gpu is not None and launch.queue in p.queues:
        problem = ctx.admission_problem(launch.queue, launch.gpu_type,
                                        gpu.pod_requests(launch.gpus_per_node), launch.nodes)
        if problem:
            yield exp.finding(("launch", "nodes") if "nodes" in raw else ("launch",),
                              problem, f"use fewer nodes or GPUs, or raise the quota in "
                              f"{KUEUE_DIR}/", "resources")


# What the run's ConfigMap holds besides the train config, dataset entries and DeepSpeed
# config: spec.json (identity, key hyperparameters, paths) and the keys ftops adds.
CONFIGMAP_OVERHEAD = 16 * 1024
COMPACT_ENOUGH = 8 * 1024


def configmap_size(exp: Experiment) -> tuple[int, tuple[str, ...]]:
    """An upper estimate of the run's ConfigMap (bytes), and the train key whose content
    is the largest part of it (where a finding points)."""
    info = exp.registration.get("dataset_info")
    info = info if isinstance(info, dict) else {}
    parts: dict[tuple[str, ...], Any] = {
        ("train",): exp.train,
        ("train", "dataset"): {n: info.get(n) for n in used_datasets(exp.train)},
        ("train", "deepspeed"): exp.deepspeed_config or {},
    }
    # Compact JSON (the C encoder) first; indentation can add at most ~66 bytes a value
    # (32 levels), so below COMPACT_ENOUGH it cannot reach the limit: the exact indented
    # size is only worked out for the rare large config.
    sizes = {where: len(json.dumps(value, separators=(",", ":"))) for where, value in
             parts.items()}
    if sum(sizes.values()) > COMPACT_ENOUGH:
        sizes = {where: len(json.dumps(value, indent=2, sort_keys=True).encode())
                 for where, value in parts.items()}
    return sum(sizes.values()) + CONFIGMAP_OVERHEAD, max(sizes, key=lambda k: sizes[k])


def check_size(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    """The run's ConfigMap within what the API server accepts (it would refuse it only at
    apply, after merge)."""
    size, where = configmap_size(exp)
    if size > CONFIGMAP_MAX_BYTES:
        yield exp.finding(where, f"the run's ConfigMap would hold about {size:,} bytes (train "
                          "config, dataset_info entries, DeepSpeed config); Kubernetes refuses "
                          f"more than {CONFIGMAP_MAX_BYTES:,}",
                          "keep data in storage: dataset_info entries name files, they do not "
                          "hold them", "resources")


def _limits(exp: Experiment, raw: dict[str, object]) -> Iterator[Finding]:
    p, launch = exp.profile, exp.launch
    if "time_limit" in raw and launch.time_limit_seconds > p.max_time_limit_s:
        yield exp.finding(("launch", "time_limit"), f"time limit {launch.time_limit} is longer "
                          f"than the cluster allows ({p.max_time_limit})",
                          f"use at most {p.max_time_limit}, and resume from checkpoints "
                          f"(limits.max_time_limit in {PROFILE_PATH})", "resources")
    if "image" in raw and not p.image_allowed(launch.image):
        yield exp.finding(("launch", "image"), "image is not from an allowed repository",
                          "use an image under " + ", ".join(p.allowed_images)
                          + f" (limits.allowed_images in {PROFILE_PATH})", "resources")
    for env, ref in launch.env_from_secrets.items():
        secret = ref.split("/", 1)[0]
        if "/" in ref and secret not in p.allowed_secrets:  # else the schema says it
            yield exp.finding(("launch", "env_from_secrets", env),
                              f"Secret {secret!r} is not one runs may read",
                              did_you_mean(secret, p.allowed_secrets)
                              or "one of " + ", ".join(p.allowed_secrets)
                              + f" (limits.allowed_secrets in {PROFILE_PATH})", "resources")
