"""`ftops node-run`: the container entry point of every training pod (and `ftops hook`,
the post-run hook on its own).

Checks the arguments with LLaMA-Factory's own parser first (a configuration error
exits 2, which the Job's podFailurePolicy turns into an immediate failure instead of
restarts), trains, and on rank 0 runs the evaluations after training (`evaluate:`, once
training succeeded) and then the post-run hook whatever the outcome. The exit code is
the trainer's, so JobSet restarts the group on a retryable failure (a failed evaluation
is recorded, never retried).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from render.launch import trainer
from render.launch.evaluate import run_evaluations
from render.manifests.runspec import CONFIG_ERROR_EXIT
from render.propose.deepcheck import Launcher, deep_check
from render.record import hook
from render.record.destination import Delivery, IndexDestination
from render.record.evaluation import EvalRun
from render.record.identity import NodeSpec
from render.record.runrecord import now


def node_run(spec_path: Path) -> int:
    spec = NodeSpec.load(spec_path)
    config = Path(spec.train_config)
    output_dir = Path(spec.output_dir)
    rank = int(os.environ.get("NODE_RANK", "0"))
    train_cfg = yaml.safe_load(config.read_text(encoding="utf-8"))

    problem = deep_check([train_cfg], launchers=[_launcher(train_cfg)])[0].error
    if problem is not None:
        print(f"ftops node-run: LLaMA-Factory rejects the configuration: {problem}",
              file=sys.stderr)
        return CONFIG_ERROR_EXIT
    started = now()
    code = trainer.run(config, output_dir, output_dir / "logs" / f"node-{rank}.log", env={},
                       progress=False, echo=sys.stdout)
    if rank == 0:
        evaluations: list[EvalRun] = []
        if code == 0 and spec.evaluate:
            evaluations = run_evaluations({k: Path(v) for k, v in spec.evaluate.items()},
                                          output_dir, env={}, echo=sys.stdout)
        run_hook(spec, output_dir, exit_code=code, started_at=started, train_cfg=train_cfg,
                 evaluations=evaluations)
    return code


def _launcher(train_cfg: dict[str, Any]) -> Launcher:
    """How this pod was started (the JobSet sets FORCE_TORCHRUN only for torchrun runs),
    so the deep check parses as the trainer will."""
    zero3 = False
    ds = train_cfg.get("deepspeed")
    if isinstance(ds, str):
        try:
            zero = json.loads(Path(ds).read_text(encoding="utf-8")).get("zero_optimization")
            zero3 = isinstance(zero, dict) and zero.get("stage") == 3
        except (OSError, ValueError, AttributeError):
            zero3 = False
    return Launcher(os.environ.get("FORCE_TORCHRUN") == "1", zero3)


def hook_from_spec(spec_path: Path, *, exit_code: int, output_dir: Path | None = None,
                   started_at: str | None = None) -> Delivery:
    """`ftops hook`: the post-run hook for a run whose trainer already exited."""
    spec = NodeSpec.load(spec_path)
    config = Path(spec.train_config)
    train_cfg = yaml.safe_load(config.read_text(encoding="utf-8")) if config.is_file() else {}
    return run_hook(spec, output_dir or Path(spec.output_dir), exit_code=exit_code,
                    started_at=started_at or now(), train_cfg=train_cfg or {})


def run_hook(spec: NodeSpec, output_dir: Path, *, exit_code: int, started_at: str,
             train_cfg: dict[str, Any], evaluations: Sequence[EvalRun] = ()) -> Delivery:
    """The post-run hook as the last step of a cluster job: build the record, keep it
    beside the artifacts, deliver it to the index remote named in the environment."""
    identity = spec.identity
    record = hook.build_record(
        identity, output_dir, exit_code=exit_code, started_at=started_at,
        finished_at=now(), mode="cluster", report_to=str(train_cfg.get("report_to", "")),
        resolved_config=train_cfg, evaluations=evaluations,
        message="" if exit_code == 0 else f"trainer exited with {exit_code}")
    delivery = hook.finish(record, output_dir, upload=identity.storage == "ephemeral",
                           destination=IndexDestination.resolve())
    print(f"ftops hook: {record.status}; {delivery.message}", file=sys.stderr)
    return delivery
