"""No secrets in anything that reaches the cluster: experiment files, `_defaults.yaml`,
`dataset.yaml` and DeepSpeed configs (all end up in git, and the last two in the run's
ConfigMap). Messages never repeat the secret.

Three checks, each over every one of those files:
- `scan_text`: known token shapes anywhere in the text, comments included;
- `scan_values`: the same shapes in the parsed strings, where the text cannot show them
  whole (a token split by a YAML escaped line break or folded over lines);
- `scan_fields`: a literal value (string or number) in a field whose name says it holds
  a secret (`hf_token`, `api_key`, `wandb_key`, `private_key`, ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from render.errors import Finding
from render.propose.experiment import Experiment
from render.propose.rules.context import Context
from render.propose.yamlsource import PathPart

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

ANY_PATTERN = re.compile("|".join(f"(?:{p.pattern})" for _, p in PATTERNS), re.I)

# Field names that say they hold a secret: *_token, *password, api_key, wandb_key, ...
SECRET_FIELD = re.compile(
    r"(^|_)(password|passwd|token|secret|api_?key|access_?key|private_?key|secret_?key"
    r"|auth_?key|wandb_?key|hf_?key|credentials?)$",
    re.I,
)

Locate = Callable[[tuple[PathPart, ...], str], Finding]


def scan_text(text: str, file: str) -> Iterator[Finding]:
    """Known secret shapes anywhere in the file, comments included."""
    if not ANY_PATTERN.search(text):
        return  # the common case: one regex pass over the whole text
    for lineno, line in enumerate(text.splitlines(), 1):
        for what, pattern in PATTERNS:
            match = pattern.search(line)
            if match:
                yield Finding(file, lineno, match.start() + 1, "$",
                              f"this looks like {what}; secrets never go in experiment files",
                              HINT, "secrets")


def scan_values(data: Any, text: str, locate: Locate) -> Iterator[Finding]:
    """Known secret shapes in parsed strings (keys and values) that the text does not
    hold verbatim: what `scan_text` cannot see."""
    strings = [(path, s) for path, key, value in _walk(data, ())
               for s in (key, value) if isinstance(s, str)]
    if not ANY_PATTERN.search("\n".join(s for _, s in strings)):
        return  # the common case: one regex pass over every string at once
    for path, string in strings:
        for what, pattern in PATTERNS:
            match = pattern.search(string)
            if match and match.group() not in text:
                yield locate(path, f"this value holds what looks like {what} (written "
                             "across lines or escaped); secrets never go in experiment "
                             "files")


def scan_fields(data: Any, locate: Locate,
                skip: Callable[[tuple[PathPart, ...]], bool] = lambda p: False
                ) -> Iterator[Finding]:
    """Fields named like secrets must not hold a literal string or number."""
    for path, key, value in _walk(data, (), skip):
        if (isinstance(key, str) and SECRET_FIELD.search(key) and value is not None
                and not isinstance(value, bool | dict | list) and str(value).strip()):
            yield locate(path, f"{key} holds a literal value")


def _walk(value: Any, path: tuple[PathPart, ...],
          skip: Callable[[tuple[PathPart, ...]], bool] = lambda p: False
          ) -> Iterator[tuple[tuple[PathPart, ...], PathPart | None, Any]]:
    """(path, key, value) of every value under `value` (iteratively: inputs are bounded,
    but this must not recurse on a deep one)."""
    stack: list[tuple[tuple[PathPart, ...], PathPart | None, Any]] = [(path, None, value)]
    while stack:
        here, key, current = stack.pop()
        if here and skip(here):
            continue
        if here:
            yield here, key, current
        if isinstance(current, dict):
            stack.extend(((*here, k), k, v) for k, v in current.items())
        elif isinstance(current, list):
            stack.extend(((*here, i), i, v) for i, v in enumerate(current))


def _is_reference(path: tuple[PathPart, ...]) -> bool:
    return len(path) > 2 and path[:2] == ("launch", "env_from_secrets")


def check_fields(exp: Experiment, ctx: Context) -> Iterator[Finding]:
    """The merged experiment: secret-named fields, and token shapes the text hides
    (each reported in the file that set the value)."""
    def locate(path: tuple[PathPart, ...], message: str) -> Finding:
        return exp.finding(path, message, HINT, "secrets")

    texts = "\n".join(doc.text for doc in {exp.doc, *exp.origins.values()})
    yield from scan_fields(exp.merged, locate, _is_reference)
    yield from scan_values(exp.merged, texts, locate)
