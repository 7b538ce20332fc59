"""`ftops lint --fix`: rewrite what has one right spelling, and nothing else.

In the `train:` block of experiment and `_defaults.yaml` files it
- removes the keys ftops owns (`output_dir`, `dataset_dir`, `overwrite_output_dir`,
  `resume_from_checkpoint`: see `render.propose.rules.train.OWNED`);
- normalizes spellings LLaMA-Factory's parser reads as the same value:
  `1e-4` -> `1.0e-4` (a float for every YAML reader, not only for LLaMA-Factory's),
  `yes`/`on`/`True` -> `true`, `~`/`Null` -> `null`, comma lists written as YAML lists
  or with spaces (`dataset: [a, b]`, `"a, b"`) -> `a,b`, `./experiments/...` ->
  `experiments/...` for `deepspeed`.
Every change is reported with file, line and why; the edits are made in the text
(`textedit`), so comments, blank lines and key order stay; running it twice changes
nothing the second time. A file that does not parse is left alone (lint reports it).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from render.propose import layout, textedit
from render.propose.experiment import Workspace
from render.propose.rules.train import OWNED
from render.propose.yamlsource import YamlError, parse

# Arguments LLaMA-Factory splits on commas and strips (hparams: split_arg / .split(",")).
COMMA_LISTS = ("dataset", "eval_dataset", "lora_target", "additional_target",
               "freeze_trainable_modules", "freeze_extra_modules", "galore_target",
               "apollo_target", "adapter_name_or_path", "oft_target")

_EXP_FLOAT = re.compile(r"^([-+]?)([0-9][0-9_]*)(\.[0-9_]*)?[eE]([-+]?)([0-9]+)$")
_BOOL_TEXT = {"true", "false"}


@dataclass(frozen=True)
class Change:
    file: str
    line: int
    path: str
    what: str

    def format(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.what}"


def _float_text(text: str) -> str | None:
    """`1e-4` -> `1.0e-4`, `2E5` -> `2.0E+5`; None when it needs no change."""
    m = _EXP_FLOAT.match(text)
    if not m:
        return None
    sign, whole, frac, esign, exp = m.groups()
    echar = "E" if "E" in text else "e"
    fixed = f"{sign}{whole}{frac or '.0'}{echar}{esign or '+'}{exp}"
    return None if fixed == text else fixed


def fix_text(text: str, file: str) -> tuple[str, list[Change]]:
    """The fixed text of one file and what changed (the same text when nothing does)."""
    try:
        doc = parse(text, file)
    except YamlError:
        return text, []
    pair = textedit.find(doc.node, "train")
    if pair is None or not isinstance(pair[1], yaml.MappingNode):
        return text, []
    train = pair[1]
    edits: list[textedit.Edit] = []
    changes: list[Change] = []

    def change(node: yaml.Node, key: str, what: str) -> None:
        changes.append(Change(file, node.start_mark.line + 1, f"$.train.{key}", what))

    for knode, vnode in train.value:
        if not isinstance(knode, yaml.ScalarNode):
            continue
        key = knode.value
        if key in OWNED:
            edit = textedit.remove_key(text, train, key)
            if edit is not None:
                edits.append(edit)
                change(knode, key, f"removed ({OWNED[key]})")
            continue
        if isinstance(vnode, yaml.SequenceNode) and key in COMMA_LISTS and all(
                isinstance(v, yaml.ScalarNode) and v.value.strip() for v in vnode.value):
            joined = ",".join(v.value.strip() for v in vnode.value)
            edits.append(textedit.replace_scalar(vnode, textedit.scalar_text(joined)))  # type: ignore[arg-type]
            change(knode, key, f"list -> {joined!r} (LLaMA-Factory reads a comma list)")
            continue
        if not isinstance(vnode, yaml.ScalarNode):
            continue
        new = _scalar_fix(key, vnode)
        if new is not None:
            edits.append(textedit.replace_scalar(vnode, new[0]))
            change(knode, key, new[1])
    if not edits:
        return text, []
    return textedit.apply(text, edits), changes


def _scalar_fix(key: str, node: yaml.ScalarNode) -> tuple[str, str] | None:
    raw, plain = node.value, not node.style  # the C composer gives "" for plain
    if plain and node.tag == "tag:yaml.org,2002:float":
        fixed = _float_text(raw)
        if fixed is not None:
            return fixed, f"{raw} -> {fixed} (the same float, read as one by every YAML reader)"
    if plain and node.tag == "tag:yaml.org,2002:bool" and raw not in _BOOL_TEXT:
        value = raw.lower() in ("yes", "true", "on", "y")
        text = "true" if value else "false"
        return text, f"{raw} -> {text}"
    if plain and node.tag == "tag:yaml.org,2002:null" and raw not in ("null", ""):
        return "null", f"{raw} -> null"
    if node.tag == "tag:yaml.org,2002:str" and key in COMMA_LISTS and "," in raw:
        parts = [p.strip() for p in raw.split(",")]
        joined = ",".join(parts)
        if joined != raw and all(parts):
            return textedit.scalar_text(joined), f"{raw!r} -> {joined!r} (LLaMA-Factory " \
                "strips the spaces)"
    if node.tag == "tag:yaml.org,2002:str" and key == "deepspeed" and raw.startswith("./"):
        fixed = os.path.normpath(raw).replace(os.sep, "/")
        return textedit.scalar_text(fixed), f"{raw} -> {fixed}"
    return None


def fix(ws: Workspace, paths: Iterable[Path] | None) -> list[Change]:
    """Fix the experiment and defaults files lint would check; write the changed ones."""
    from render.propose.lint import select

    rels, _, _ = select(ws, paths)  # problems with the selection: lint, run next, reports them
    out: list[Change] = []
    for rel in rels:
        if layout.classify(rel) not in ("experiment", "defaults"):
            continue
        path = ws.root / rel
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue  # lint reports it
        fixed, changes = fix_text(text, rel)
        if changes:
            tmp = path.with_name(f".{path.name}.ftops-fix")
            tmp.write_text(fixed, encoding="utf-8")
            os.replace(tmp, path)
            out.extend(changes)
    return out
