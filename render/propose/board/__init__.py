"""LLaMA Board (LLaMA-Factory 0.9.5's web UI) element ids <-> LLaMA-Factory arguments.

Three modules: `table` (the Board's widgets), `to_args` (Board -> CLI), `from_args`
(CLI -> Board); this package re-exports their names.

The Board saves its Train tab as a flat mapping of element id -> widget value
("Save arguments": `llamaboard_config/<name>.yaml`; "Start" also writes
`<output_dir>/llamaboard_config.yaml` beside `training_args.yaml`). Numbers typed into
text boxes stay strings ("5e-5"), the stage is its display name ("Supervised
Fine-Tuning"), and the CLI arguments are derived by `Runner._parse_train_args`.

- `board_to_args(state, ...)` is that derivation, rule for rule (stage display names,
  compute type -> bf16/fp16/pure_bf16, booster -> flash_attn/use_unsloth/
  enable_liger_kernel, `lora_target: ""` -> all, use_pissa -> pissa_init + pissa_convert,
  dataset lists, quantization, the `extra_args` JSON, which overrides the base
  arguments and is overridden by every later block). `tests/propose/test_board_mapping.py`
  checks it against LLaMA-Factory's own function on generated Board states.
- `args_to_board(train, ...)` goes the other way: widget values whose derivation gives
  the experiment's arguments, everything else through `extra_args`, and a list of what
  the Board cannot represent (values the later blocks override, or that its "Start"
  drops: it removes every false, null and empty argument before training).
- `lost_fields(state)` names the fields whose values never reach the arguments (a LoRA
  rank while fine-tuning fully, UI-only fields): an import cannot keep them.

Everything about the Board's widgets (ids, defaults, choices, slider ranges, the model
list, the DeepSpeed presets it writes) comes from `schemas/llamaboard-0.9.5.json`,
generated from the Board itself by `scripts/gen_llamaboard_table.py` (CI checks that it
is current). No llamafactory import here: this runs where only lint is installed.
"""

from render.propose.board.from_args import (
    EXPORT_OWNED,
    BoardExport,
    args_to_board,
    effective,
    same_arg,
)
from render.propose.board.table import (
    BOARD_VERSION,
    CACHE_DIR,
    NOT_SAVED,
    SAVE_DIR,
    SEP,
    TABLE_NAME,
    TABLE_PATH,
    UI_ONLY,
    BoardError,
    Element,
    Table,
    defaults,
    lf_defaults,
    table,
)
from render.propose.board.to_args import (
    base_args,
    block_args,
    board_to_args,
    clean,
    extra_args,
    get_save_dir,
    lost_fields,
    same_value,
    validate_state,
)

__all__ = [
    "BOARD_VERSION",
    "BoardError",
    "BoardExport",
    "CACHE_DIR",
    "EXPORT_OWNED",
    "Element",
    "NOT_SAVED",
    "SAVE_DIR",
    "SEP",
    "TABLE_NAME",
    "TABLE_PATH",
    "Table",
    "UI_ONLY",
    "args_to_board",
    "base_args",
    "block_args",
    "board_to_args",
    "clean",
    "defaults",
    "effective",
    "extra_args",
    "get_save_dir",
    "lf_defaults",
    "lost_fields",
    "same_arg",
    "same_value",
    "table",
    "validate_state",
]
