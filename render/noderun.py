"""`ftops node-run`: the container entry point of every training pod.

Rank 0 first writes `run.json` with status `running` beside the artifacts (what the run
leaves if its pod is killed before the hook: `ftops index reconcile` finishes the
record). Every node then checks the arguments with LLaMA-Factory's own parser (a
configuration error exits 2, which the Job's podFailurePolicy turns into an immediate
failure of the JobSet instead of restarts), trains, and on rank 0 runs the post-run hook
whatever the outcome. The exit code is the trainer's, so JobSet restarts the group on a
retryable failure.

The hook's status is final only when the pod knows the run is over: `succeeded`, a
configuration error, or a failure with no restarts left (`failed`). A failure JobSet
will retry, and a stop by SIGTERM (the group restarting, a cancel, a preemption: the pod
cannot tell which), are recorded as `running` with what happened; `cancel` and the next
attempt write the final state. The record counts the group restarts before it (JobSet's
restart attempt, from the pod's label).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

import yaml

from render import hook, trainer
from render.record import RunRecord
from render.runspec import CONFIG_ERROR_EXIT

# How long a restarted pod waits for the previous attempt's pod of the same node rank to
# let go of the run folder (its grace period is the JobSet's, 120 s).
LOCK_WAIT_S = 180.0


def _int_env(name: str, default: int = 0) -> int:
    try:
        return int(os.environ.get(name, "") or default)
    except ValueError:
        return default


def node_run(spec_path: Path) -> int:
    identity = hook.load_identity(spec_path)
    config = Path(identity["train_config"])
    output_dir = Path(identity["output_dir"])
    rank = _int_env("NODE_RANK")
    attempt = _int_env("FTOPS_RESTART_ATTEMPT")
    max_restarts = _int_env("FTOPS_MAX_RESTARTS")
    train_cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    started = _first_start(output_dir, identity["run_id"]) or hook.now()
    if rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        running = hook.build_record(
            identity, output_dir, exit_code=None, started_at=started, finished_at="",
            mode="cluster", status="running", resolved_config=train_cfg, restarts=attempt,
            draw=False, message=f"attempt {attempt} started")
        running.finished_at = None
        (output_dir / hook.RUN_JSON).write_text(running.to_json(), encoding="utf-8")
    from render.lfschema import deep_check

    problem = deep_check(train_cfg)
    if problem is not None:
        message = f"LLaMA-Factory rejects the configuration: {problem}"
        print(f"ftops node-run: {message}", file=sys.stderr)
        if rank == 0:
            run_hook(identity, output_dir, exit_code=CONFIG_ERROR_EXIT, started_at=started,
                     train_cfg=train_cfg, restarts=attempt, message=message)
        return CONFIG_ERROR_EXIT
    received: list[int] = []
    code = trainer.run(config, output_dir, output_dir / "logs" / f"node-{rank}.log", env={},
                       progress=False, echo=sys.stdout, node_rank=rank,
                       lock_wait_s=LOCK_WAIT_S, signals=received)
    if rank == 0:
        status, message = outcome(code, received, attempt, max_restarts)
        run_hook(identity, output_dir, exit_code=code, started_at=started, train_cfg=train_cfg,
                 restarts=attempt, status=status, message=message)
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
        previous = RunRecord.from_json((output_dir / hook.RUN_JSON).read_text("utf-8"))
    except (OSError, ValueError, TypeError):
        return None
    return previous.started_at if previous.run_id == run_id else None


def run_hook(identity: dict[str, Any], output_dir: Path, *, exit_code: int, started_at: str,
             train_cfg: dict[str, Any], restarts: int = 0, status: str | None = None,
             message: str | None = None) -> hook.HookResult:
    """The post-run hook as the last step of a cluster job (also `ftops hook`)."""
    if message is None:
        message = "" if exit_code == 0 else f"trainer exited with {exit_code}"
    record = hook.build_record(
        identity, output_dir, exit_code=exit_code, started_at=started_at,
        finished_at=hook.now(), mode="cluster", report_to=str(train_cfg.get("report_to", "")),
        resolved_config=train_cfg, status=status, message=message, restarts=restarts)
    if record.status == "running":
        record.finished_at = None
        record.duration_s = None
    result = hook.finish(record, output_dir, upload=identity.get("storage") == "ephemeral",
                         index_remote=os.environ.get("FTOPS_INDEX_REMOTE") or None,
                         branch=os.environ.get("FTOPS_INDEX_BRANCH") or "main")
    print(f"ftops hook: {record.status}; {result.message}", file=sys.stderr)
    return result
