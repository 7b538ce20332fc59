"""`ftops node-run`: the container entry point of every training pod (and `ftops hook`,
the post-run hook on its own).

Rank 0 first writes `run.json` with status `running` beside the artifacts (what the run
leaves if its pod is killed before the hook: `ftops index reconcile --cluster` finishes
the record). Every node then checks the arguments with LLaMA-Factory's own parser (a
configuration error exits 2, which the Job's podFailurePolicy turns into an immediate
failure of the JobSet instead of restarts; rank 0 records it as `failed`), trains, and
on rank 0 runs the evaluations after training (`evaluate:`, once training succeeded) and
then the post-run hook whatever the outcome. The exit code is the trainer's, so JobSet
restarts the group on a retryable failure (a failed evaluation is recorded, never
retried).

The hook's status is final only when the pod knows the run is over: `succeeded`, a
configuration error, or a failure with no restarts left (`failed`). A failure JobSet
will retry, and a stop by SIGTERM (the group restarting, a cancel, a preemption: the pod
cannot tell which), are recorded as `running` with what happened; `cancel` and the next
attempt write the final state. The record counts the group restarts before it (JobSet's
restart attempt, from the pod's label: `FTOPS_RESTART_ATTEMPT`).
"""

from __future__ import annotations

import json
import os
import signal
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
from render.record.identity import MAX_RESTARTS_ENV, RESTART_ATTEMPT_ENV, NodeSpec
from render.record.runrecord import RunRecord, now
from render.record.trust import RUN_JSON

# How long a restarted pod waits for the previous attempt's pod of the same node rank to
# let go of the run folder (its grace period is the JobSet's, 120 s).
LOCK_WAIT_S = 180.0


def _int_env(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def node_run(spec_path: Path) -> int:
    spec = NodeSpec.load(spec_path)
    config = Path(spec.train_config)
    output_dir = Path(spec.output_dir)
    rank = _int_env("NODE_RANK")
    attempt = _int_env(RESTART_ATTEMPT_ENV)
    max_restarts = _int_env(MAX_RESTARTS_ENV)
    train_cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    started = _first_start(output_dir, spec.identity.run_id) or now()
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        running = hook.build_record(
            spec.identity, output_dir, exit_code=None, started_at=started, finished_at="",
            mode="cluster", status="running", resolved_config=train_cfg, restarts=attempt,
            draw=False, message=f"attempt {attempt} started")
        running.finished_at = None
        running.duration_s = None
        (output_dir / RUN_JSON).write_text(running.to_json(), encoding="utf-8")

    problem = deep_check([train_cfg], launchers=[_launcher(train_cfg)])[0].error
    if problem is not None:
        message = f"LLaMA-Factory rejects the configuration: {problem}"
        print(f"ftops node-run: {message}", file=sys.stderr)
        if rank == 0:
            run_hook(spec, output_dir, exit_code=CONFIG_ERROR_EXIT, started_at=started,
                     train_cfg=train_cfg, restarts=attempt, message=message)
        return CONFIG_ERROR_EXIT
    received: list[int] = []
    code = trainer.run(config, output_dir, output_dir / "logs" / f"node-{rank}.log", env={},
                       progress=False, echo=sys.stdout, node_rank=rank,
                       lock_wait_s=LOCK_WAIT_S, signals=received)
    if rank == 0:
        evaluations: list[EvalRun] = []
        if code == 0 and spec.evaluate:
            evaluations = run_evaluations({k: Path(v) for k, v in spec.evaluate.items()},
                                          output_dir, env={}, echo=sys.stdout)
        status, message = outcome(code, received, attempt, max_restarts)
        run_hook(spec, output_dir, exit_code=code, started_at=started, train_cfg=train_cfg,
                 evaluations=evaluations, restarts=attempt, status=status, message=message)
    return code


def outcome(code: int, received: list[int], attempt: int, max_restarts: int
            ) -> tuple[str | None, str]:
    """(status, message) for the hook: None lets the exit code decide (final)."""
    if code == 0:
        return None, ""
    if received:
        name = signal.Signals(received[0]).name
        return "running", (f"attempt {attempt} stopped by {name} (the group is restarting, "
                           "or the run was cancelled or preempted)")
    if attempt < max_restarts:
        return "running", (f"attempt {attempt} failed (exit {code}); JobSet restarts the "
                           f"group (restart {attempt + 1} of {max_restarts})")
    return None, f"trainer exited with {code}" + (
        f" after {attempt} restart(s)" if attempt else "")


def _first_start(output_dir: Path, run_id: str) -> str | None:
    """When the run's first attempt started (an earlier attempt's run.json)."""
    try:
        previous = RunRecord.from_json((output_dir / RUN_JSON).read_text("utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    return previous.started_at if previous.run_id == run_id else None


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
             train_cfg: dict[str, Any], evaluations: Sequence[EvalRun] = (),
             restarts: int = 0, status: str | None = None,
             message: str | None = None) -> Delivery:
    """The post-run hook as the last step of a cluster job: build the record, keep it
    beside the artifacts, deliver it to the index remote named in the environment
    (`FTOPS_INDEX_REMOTE`, `FTOPS_INDEX_BRANCH` and the token `FTOPS_INDEX_TOKEN`: the
    JobSet sets them from the profile's `index` section)."""
    identity = spec.identity
    if message is None:
        message = "" if exit_code == 0 else f"trainer exited with {exit_code}"
    record = hook.build_record(
        identity, output_dir, exit_code=exit_code, started_at=started_at,
        finished_at=now(), mode="cluster", report_to=str(train_cfg.get("report_to", "")),
        resolved_config=train_cfg, evaluations=evaluations, status=status, message=message,
        restarts=restarts)
    if record.status == "running":
        record.finished_at = None
        record.duration_s = None
    delivery = hook.finish(record, output_dir, upload=identity.storage == "ephemeral",
                           destination=IndexDestination.resolve())
    print(f"ftops hook: {record.status}; {delivery.message}", file=sys.stderr)
    return delivery
