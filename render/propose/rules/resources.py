"""Resources within what the cluster profile (k8s-base/cluster-profile.yaml) offers."""

from __future__ import annotations

from collections.abc import Iterator

from render.errors import Finding
from render.propose.experiment import Experiment
from render.propose.profile import PROFILE_PATH
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
