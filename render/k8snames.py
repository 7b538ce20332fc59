"""Kubernetes' rules for names and label values, for every stage that makes or checks one.

RFC 1123 DNS labels (object names, hostnames: at most 63 characters of [a-z0-9-]) and
label values (at most 63 characters, alphanumeric at both ends), and the ConfigMap size
limit. Names ftops generates from these rules are in `render.propose.naming`.
"""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
MAX_LABEL = 63
# The API server refuses a ConfigMap whose data (keys and values) exceeds 1 MiB.
CONFIGMAP_MAX_BYTES = 1024 * 1024


def dns_label(text: str, max_len: int = MAX_LABEL) -> str:
    """Lowercase, '-' for anything else, trimmed to a valid DNS label prefix."""
    label = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    label = re.sub(r"-{2,}", "-", label).strip("-")[:max_len].rstrip("-")
    return label or "x"


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
