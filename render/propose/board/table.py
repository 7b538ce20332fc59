"""The Board's widgets, as generated from the Board itself: `schemas/llamaboard-0.9.5.json`
(`scripts/gen_llamaboard_table.py`; CI checks it is current): element ids, defaults,
choices, slider ranges, the model list, the DeepSpeed presets. No llamafactory import."""



from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from render.errors import FatalError
from render.propose.schema import LF_SCHEMA, SCHEMA_DIR, load_schema

BOARD_VERSION = "0.9.5"
TABLE_NAME = f"llamaboard-{BOARD_VERSION}.json"
TABLE_PATH = SCHEMA_DIR / TABLE_NAME

# What "Save arguments" leaves out of its file (LF webui/runner.py _build_config_dict).
NOT_SAVED = ("top.lang", "top.model_path", "train.output_dir", "train.config_path")
# Fields the Board shows but `_parse_train_args` never reads (LF 0.9.5).
UI_ONLY = ("train.project", "train.trackio_space_id", "train.hub_private_repo",
           "train.swanlab_link")
# The Board's paths, relative to the folder `llamafactory-cli webui` runs in.
CACHE_DIR = "llamaboard_cache"
SAVE_DIR = "saves"
SEP = "/"


class BoardError(FatalError):
    """A Board file that the Board itself could not have written or could not run."""


@dataclass(frozen=True)
class Element:
    id: str
    widget: str  # textbox | slider | checkbox | dropdown | markdown
    default: Any
    choices: tuple[Any, ...] | None = None
    multiselect: bool = False
    custom: bool = False  # a dropdown that accepts values outside its choices
    minimum: float | None = None
    maximum: float | None = None

    def accepts(self, value: Any) -> str:
        """'' when the widget can hold `value`, else why not (in words)."""
        if self.widget in ("textbox", "markdown"):  # Gradio shows None as empty
            return "" if isinstance(value, str | None) else "expected text"
        if self.widget == "checkbox":
            return "" if isinstance(value, bool) else "expected true or false"
        if self.widget == "slider":
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value):
                return "expected a number"
            if self.minimum is not None and value < self.minimum:
                return f"below the slider's minimum {self.minimum:g}"
            if self.maximum is not None and value > self.maximum:
                return f"above the slider's maximum {self.maximum:g}"
            return ""
        if self.widget == "dropdown":
            values = value if self.multiselect else [value]
            if self.multiselect and not isinstance(value, list):
                return "expected a list"
            for v in values:
                if self.multiselect and not isinstance(v, str):
                    return "expected a list of names"
                if not self.custom and self.choices is not None and v not in self.choices:
                    return "not one of the Board's choices"
            if not self.multiselect and self.custom and not isinstance(value, str | None):
                return "expected text"
            return ""
        return ""


@dataclass(frozen=True)
class Table:
    elements: dict[str, Element]
    saved: tuple[str, ...]  # element ids in a "Save arguments" file
    stages: dict[str, str]  # display name -> stage
    models: dict[str, str]  # Board model name -> default hub id
    default_templates: dict[str, str]
    multimodal_models: frozenset[str]
    peft_methods: frozenset[str]
    no_skip_keys: frozenset[str]  # arguments "Start" keeps even when false/null/""
    deepspeed_presets: dict[str, dict[str, Any]]  # file name in llamaboard_cache -> JSON

    def stage_name(self, stage: str) -> str | None:
        for name, value in self.stages.items():
            if value == stage:
                return name
        return None

    def model_name(self, path: str) -> str | None:
        """The Board's name for a hub id (the first registered, as its dropdown lists)."""
        for name, hub_id in self.models.items():
            if hub_id == path:
                return name
        return None

    def preset_name(self, config: Mapping[str, Any]) -> str | None:
        for name, preset in self.deepspeed_presets.items():
            if preset == config:
                return name
        return None


@cache
def table() -> Table:
    try:
        raw = json.loads(TABLE_PATH.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise FatalError(f"{TABLE_PATH}: cannot read the Board table ({exc}); regenerate it "
                         "with python scripts/gen_llamaboard_table.py") from None
    elements = {
        eid: Element(eid, e["widget"], e.get("default"),
                     tuple(e["choices"]) if e.get("choices") is not None else None,
                     bool(e.get("multiselect")), bool(e.get("custom")),
                     e.get("minimum"), e.get("maximum"))
        for eid, e in raw["elements"].items()
    }
    return Table(
        elements=elements, saved=tuple(raw["saved"]), stages=dict(raw["stages"]),
        models=dict(raw["models"]), default_templates=dict(raw["default_templates"]),
        multimodal_models=frozenset(raw["multimodal_models"]),
        peft_methods=frozenset(raw["peft_methods"]),
        no_skip_keys=frozenset(raw["no_skip_keys"]),
        deepspeed_presets=dict(raw["deepspeed_presets"]),
    )


@cache
def lf_defaults() -> dict[str, Any]:
    props = load_schema(LF_SCHEMA)["properties"]
    return {k: v.get("default") for k, v in props.items()}


def defaults() -> dict[str, Any]:
    """A Board state as a fresh page holds it (the saved fields)."""
    t = table()
    return {eid: t.elements[eid].default for eid in t.saved}
