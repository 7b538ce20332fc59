"""Names we generate: run ids, JobSet names, pod hostnames.

Every generated name has its length limit beside it and is checked against Kubernetes'
rules (`render.k8snames`), so lint can refuse an experiment whose names would not fit
before a cluster does.
"""

from __future__ import annotations

import hashlib
import re

from render.k8snames import dns_label

JOBSET_NAME_MAX = 40  # leaves room for "-node-<job>-<pod>" and the pod name suffix
REPLICATED_JOB = "node"
RUN_ID_LEN = 10
RUN_ID = re.compile(rf"[0-9a-f]{{{RUN_ID_LEN}}}")


def run_id(experiment_path: str, config_hash: str, rerun: int = 0) -> str:
    """Deterministic run id from what the run is: its file and its launch identity
    (`Experiment.config_hash`, plus `launch.rerun` for a deliberate re-run). Not the
    commit: merging a metadata edit names the same run, which therefore launches once."""
    text = f"{experiment_path}\n{config_hash}" + (f"\nrerun={rerun}" if rerun else "")
    return hashlib.sha256(text.encode()).hexdigest()[:RUN_ID_LEN]


def is_run_id(text: str) -> bool:
    """Whether `text` has the shape of a run id (checked before any cluster call)."""
    return bool(RUN_ID.fullmatch(text))


def jobset_name(experiment_name: str, run: str) -> str:
    budget = JOBSET_NAME_MAX - len(run) - 1
    return f"{dns_label(experiment_name, budget)}-{run}"


def pod_hostname(jobset: str, node_index: int) -> str:
    """Hostname of the pod with completion index `node_index` (one Job of N pods)."""
    return f"{jobset}-{REPLICATED_JOB}-0-{node_index}"
