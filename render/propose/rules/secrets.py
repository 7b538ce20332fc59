"""No secrets in experiment files: known token shapes anywhere, and literal values in
fields whose names say they hold one. Messages never repeat the secret."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from render.errors import Finding
from render.propose.experiment import Experiment
from render.propose.rules.context import Context

HINT = ("put the value in a Kubernetes Secret and reference it under "
        "launch.env_from_secrets (e.g. HF_TOKEN: hf-token/token); then revoke it, "
        "since it is in git history")

PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("a Hugging Face token", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")),
    ("an AWS access key id", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("an AWS secret access key", re.compile(
        r"aws_secret_access_key\s*[:=]\s*['\"]?[A-Za-z0-9/+=]{40}\b", re.I)),
    ("a private key", re.compile(r"-----BEGIN (?:[A-Z ]+ )?PRIVATE KEY-----")),
    ("a GCP service-account key", re.compile(r"\"?private_key_id\"?\s*:\s*\"?[a-f0-9]{40}")),
    ("a Google API key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b")),
    ("a GitHub token",
     re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{60,})\b")),
    ("a Weights & Biases API key", re.compile(r"\bwandb_api_key\s*[:=]\s*['\"]?[a-f0-9]{40}\b",
                                              re.I)),
)

SECRET_FIELD = re.compile(
    r"(^|_)(password|passwd|token|secret|api_key|apikey|access_key|private_key|credentials?)$",
    re.I,
)


def scan_text(text: str, file: str) -> Iterator[Finding]:
    """Known secret shapes anywhere in the file, comments included."""
    for lineno, line in enumerate(text.splitlines(), 1):
        for what, pattern in PATTERNS:
            match = pattern.search(line)
            if match:
                yield Finding(file, lineno, match.start() + 1, "$",
                              f"this looks like {what}; secrets never go in experiment files",
                              HINT, "secrets")


def check_fields(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    """Fields named like secrets must not hold a literal value."""
    yield from _walk(exp, exp.merged, ())


def _walk(exp: Experiment, value: Any, path: tuple[str | int, ...]) -> Iterator[Finding]:
    if isinstance(value, dict):
        for key, sub in value.items():
            sub_path = (*path, key)
            if path[:2] == ("launch", "env_from_secrets"):
                continue  # references, not values
            if (isinstance(key, str) and SECRET_FIELD.search(key)
                    and isinstance(sub, str | int) and str(sub).strip()):
                yield exp.finding(sub_path, f"{key} holds a literal value", HINT, "secrets")
            else:
                yield from _walk(exp, sub, sub_path)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(exp, item, (*path, i))
