"""Names we generate: run ids, JobSet names, pod hostnames, label values.

Every generated name is checked here against the Kubernetes limits (RFC 1123 DNS
labels of at most 63 characters), so lint can refuse an experiment whose names would
not fit before a cluster does.
"""

from __future__ import annotations

import hashlib
import re

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
MAX_LABEL = 63
JOBSET_NAME_MAX = 40  # leaves room for "-node-<job>-<pod>" and the pod name suffix
REPLICATED_JOB = "node"
RUN_ID_LEN = 10


def run_id(experiment_path: str, config_hash: str, commit: str) -> str:
    """Deterministic run id from what the run is: its file, its config and its commit."""
    digest = hashlib.sha256(f"{experiment_path}\n{config_hash}\n{commit}".encode()).hexdigest()
    return digest[:RUN_ID_LEN]


def dns_label(text: str, max_len: int = MAX_LABEL) -> str:
    """Lowercase, '-' for anything else, trimmed to a valid DNS label prefix."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    label = re.sub(r"-{2,}", "-", label).strip("-")[:max_len].rstrip("-")
    return label or "x"


def jobset_name(experiment_name: str, run: str) -> str:
    budget = JOBSET_NAME_MAX - len(run) - 1
    return f"{dns_label(experiment_name, budget)}-{run}"


def pod_hostname(jobset: str, node_index: int) -> str:
    """Hostname of the pod with completion index `node_index` (one Job of N pods)."""
    return f"{jobset}-{REPLICATED_JOB}-0-{node_index}"


def label_value(text: str) -> str:
    """A valid label value (<= 63, alnum ends); the full value goes in an annotation."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:MAX_LABEL]
    value = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)
    return value


def check_dns_label(name: str) -> str | None:
    """None when `name` is a valid DNS label, else why not."""
    if len(name) > MAX_LABEL:
        return f"{name!r} is {len(name)} characters; a DNS label allows at most {MAX_LABEL}"
    if not DNS_LABEL.match(name):
        return f"{name!r} is not a DNS label (lowercase letters, digits and '-')"
    return None
