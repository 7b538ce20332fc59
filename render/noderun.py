"""`ftops node-run`: the container entry point of every training pod.

Checks the arguments with LLaMA-Factory's own parser first (a configuration error
exits 2, which the Job's podFailurePolicy turns into an immediate failure instead of
restarts), trains, and on rank 0 runs the post-run hook whatever the outcome. The exit
code is the trainer's, so JobSet restarts the group on a retryable failure.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from render import hook, trainer
from render.runspec import CONFIG_ERROR_EXIT


def node_run(spec_path: Path) -> int:
    identity = hook.load_identity(spec_path)
    config = Path(identity["train_config"])
    output_dir = Path(identity["output_dir"])
    rank = int(os.environ.get("NODE_RANK", "0"))
    train_cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    from render.lfschema import deep_check

    problem = deep_check(train_cfg)
    if problem is not None:
        print(f"ftops node-run: LLaMA-Factory rejects the configuration: {problem}",
              file=sys.stderr)
        return CONFIG_ERROR_EXIT
    started = hook.now()
    code = trainer.run(config, output_dir, output_dir / "logs" / f"node-{rank}.log", env={},
                       progress=False, echo=sys.stdout)
    if rank == 0:
        run_hook(identity, output_dir, exit_code=code, started_at=started, train_cfg=train_cfg)
    return code


def run_hook(identity: dict[str, Any], output_dir: Path, *, exit_code: int, started_at: str,
             train_cfg: dict[str, Any]) -> hook.HookResult:
    """The post-run hook as the last step of a cluster job (also `ftops hook`)."""
    record = hook.build_record(
        identity, output_dir, exit_code=exit_code, started_at=started_at,
        finished_at=hook.now(), mode="cluster", report_to=str(train_cfg.get("report_to", "")),
        resolved_config=train_cfg,
        message="" if exit_code == 0 else f"trainer exited with {exit_code}")
    result = hook.finish(record, output_dir, upload=identity.get("storage") == "ephemeral",
                         index_remote=os.environ.get("FTOPS_INDEX_REMOTE") or None)
    print(f"ftops hook: {record.status}; {result.message}", file=sys.stderr)
    return result
