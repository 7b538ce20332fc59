"""Writing YAML that every reader takes the same way: `dump_yaml`.

Block style, no anchors or aliases, keys in the order they were built, every scalar on
one line (a string with a line break or another control character is double-quoted
with escapes, so no line of the output starts with a user's text), and strings that
YAML 1.2 readers (Kustomize, kubectl, OmegaConf inside LLaMA-Factory) would take for a
number, boolean or null quoted, although PyYAML (YAML 1.1) would write them plain. Data is
dumped, never templated: a user's string stays a YAML string.
"""

from __future__ import annotations

import re
from typing import Any

import yaml


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Block style, no aliases, keys in the order we built them."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# Plain scalars that YAML 1.2 readers (Kustomize, kubectl, OmegaConf) take for numbers,
# booleans or null although PyYAML (YAML 1.1) would write them unquoted: 1e5, 0o17...
_NOT_A_STRING_12 = re.compile(
    r"[-+]?(\.inf|\.nan|[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?|\.[0-9]+([eE][-+]?[0-9]+)?"
    r"|0x[0-9a-fA-F_]+|0o[0-7_]+|0b[01_]+)|true|false|yes|no|on|off|y|n|null|~",
    re.IGNORECASE,
)


# Characters that would make a multi-line or hard-to-read scalar: such a string is written
# double-quoted with escapes ("a\\nb"), on one line.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _represent_str(dumper: Any, value: str) -> Any:
    if _CONTROL.search(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    if _NOT_A_STRING_12.fullmatch(value):
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="'")
    return dumper.represent_str(value)


_Dumper.add_representer(str, _represent_str)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     allow_unicode=False, width=2**31 - 1)  # never fold a scalar
