"""Train arguments as LLaMA-Factory reads them, so that equal configs hash equal.

`normalize_train(train)` maps the flat `train:` mapping to the values LLaMA-Factory
0.9.5 ends up with, using the generated argument schema
(`schemas/llamafactory-0.9.5.schema.json`: each argument's type and default) and the
parser's own splitting of comma lists:

* a number argument holds a float (`num_train_epochs: 3` is `3.0`), an integer
  argument an int (`lora_rank: 8.0` is `8`);
* an argument written with its default is the same as the argument left out;
* the comma-list arguments (`dataset`, `eval_dataset`, `lora_target`, ...) are split
  and stripped as the parser does (`'alpaca_en, x'` is `['alpaca_en', 'x']`), empty
  items dropped (`'alpaca_en,'` is `['alpaca_en']`, the file names the dataset once).

Unknown keys and values of the wrong type are kept as written (lint reports them).
The result feeds the launch identity (`Experiment.launch_identity`): the duplicate
rule, the immutability rule and the run id all compare normalized configs.
"""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from render.propose.schema import LF_SCHEMA, load_schema

# Arguments LLaMA-Factory's __post_init__ splits on commas (hparams/data_args.py,
# hparams/finetuning_args.py: `split_arg`).
COMMA_LISTS = frozenset({
    "dataset", "eval_dataset", "lora_target", "oft_target", "additional_target",
    "galore_target", "apollo_target", "freeze_trainable_modules", "freeze_extra_modules",
})


@cache
def _arguments() -> dict[str, tuple[frozenset[str], Any, bool]]:
    """argument -> (JSON types, normalized default, has a default)."""
    out: dict[str, tuple[frozenset[str], Any, bool]] = {}
    for key, spec in load_schema(LF_SCHEMA)["properties"].items():
        kinds = spec.get("type", [])
        types = frozenset([kinds] if isinstance(kinds, str) else kinds)
        has_default = "default" in spec
        out[key] = (types, None, has_default)
        if has_default:
            out[key] = (types, _value(key, types, spec["default"]), True)
    return out


def _value(key: str, types: frozenset[str], value: Any) -> Any:
    if key in COMMA_LISTS and isinstance(value, str | list):
        items = value.split(",") if isinstance(value, str) else value
        return [s for s in (str(v).strip() for v in items) if s]
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and "number" in types and "integer" not in types:
        return float(value)
    if (isinstance(value, float) and "integer" in types and "number" not in types
            and math.isfinite(value) and value.is_integer()):
        return int(value)
    return value


def normalize_train(train: dict[str, Any]) -> dict[str, Any]:
    """The train arguments as LLaMA-Factory reads them (see the module docstring)."""
    arguments = _arguments()
    out: dict[str, Any] = {}
    for key, value in train.items():
        known = arguments.get(key)
        if known is None:
            out[key] = value
            continue
        types, default, has_default = known
        value = _value(key, types, value)
        if has_default and _same(value, default):
            continue
        out[key] = value
    return out


def _same(a: Any, b: Any) -> bool:
    """Equal as values of the same JSON type (so `True == 1` does not count)."""
    return type(a) is type(b) and a == b
