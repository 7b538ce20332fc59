"""Names we generate: run ids, JobSet names, pod hostnames.

Every generated name has its length limit beside it and is checked against Kubernetes'
rules (`render.k8snames`), so lint can refuse an experiment whose names would not fit
before a cluster does.
"""

from __future__ import annotations

import hashlib

from render.k8snames import dns_label

JOBSET_NAME_MAX = 40  # leaves room for "-node-<job>-<pod>" and the pod name suffix
REPLICATED_JOB = "node"
RUN_ID_LEN = 10


def run_id(experiment_path: str, config_hash: str, commit: str) -> str:
    """Deterministic run id from what the run is: its file, its config and its commit."""
    digest = hashlib.sha256(f"{experiment_path}\n{config_hash}\n{commit}".encode()).hexdigest()
    return digest[:RUN_ID_LEN]


def jobset_name(experiment_name: str, run: str) -> str:
    budget = JOBSET_NAME_MAX - len(run) - 1
    return f"{dns_label(experiment_name, budget)}-{run}"


def pod_hostname(jobset: str, node_index: int) -> str:
    """Hostname of the pod with completion index `node_index` (one Job of N pods)."""
    return f"{jobset}-{REPLICATED_JOB}-0-{node_index}"
