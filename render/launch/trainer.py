"""Run `llamafactory-cli train` as a child process: the same call on a laptop and in a
pod. Output goes to a log file (and the terminal); progress is read from LLaMA-Factory's
`trainer_log.jsonl` (one JSON line per logging step) and shown as a bar."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from render.errors import FatalError
from render.record.trainerlog import read_log


def llamafactory_cli() -> str:
    here = Path(sys.executable).parent / "llamafactory-cli"
    return str(here) if here.exists() else "llamafactory-cli"


def base_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = dict(os.environ)
    # llamafactory-cli starts a bare `torchrun`: it must find the one beside this Python
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.update(extra)
    return env


class _Progress:
    """A tqdm bar fed from trainer_log.jsonl in a background thread."""

    def __init__(self, output_dir: Path, enabled: bool) -> None:
        self.output_dir = output_dir
        self.enabled = enabled
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        from tqdm import tqdm

        bar: Any = None
        seen = 0
        while True:
            stopping = self._stop.wait(0.5)
            entries = read_log(self.output_dir)
            if entries and bar is None:
                bar = tqdm(total=int(entries[-1].get("total_steps") or 0), unit="step",
                           desc="training", file=sys.stderr, dynamic_ncols=True)
            if bar is not None and len(entries) > seen:
                last = entries[-1]
                bar.n = int(last.get("current_steps") or 0)
                postfix = {"loss": last.get("loss"), "eta": last.get("remaining_time")}
                bar.set_postfix({k: v for k, v in postfix.items() if v is not None})
                bar.refresh()
                seen = len(entries)
            if stopping:
                break
        if bar is not None:
            bar.close()


def set_aside_incomplete_checkpoints(output_dir: Path) -> list[Path]:
    """A checkpoint folder without trainer_state.json was cut off while saving (the run
    was killed); LLaMA-Factory would try to resume from it. Rename it, never delete it."""
    moved = []
    for ckpt in sorted(output_dir.glob("checkpoint-*")):
        if ckpt.is_dir() and not (ckpt / "trainer_state.json").exists():
            target = ckpt.with_name(f"incomplete-{ckpt.name}-{int(time.time())}")
            try:
                ckpt.rename(target)
            except OSError:
                continue  # another node of the same run moved it first
            moved.append(target)
    return moved


def _signal_tree(pid: int, signum: int) -> None:
    """Signal a process and all its descendants: `llamafactory-cli` alone does not pass
    SIGTERM on to torchrun and its workers."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.send_signal(signum)


@contextlib.contextmanager
def _run_lock(output_dir: Path, lock_dir: Path, node_rank: int, wait_s: float
              ) -> Iterator[int]:
    """One trainer per run folder and node rank: a second launch of a run that is still
    training (say, an orphan of a killed launcher) is refused instead of corrupting it.
    The nodes of one run share the folder, each with its own lock; `wait_s` lets a
    restarted pod wait for the previous attempt's pod that is still shutting down."""
    import fcntl

    lock_dir.mkdir(parents=True, exist_ok=True)
    name = "train.lock" if node_rank == 0 else f"train-node{node_rank}.lock"
    fd = os.open(lock_dir / name, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise FatalError(f"{output_dir} is being trained by another process "
                                     "right now; wait for it or stop it before "
                                     "relaunching") from None
                time.sleep(1)
        yield fd
    finally:
        os.close(fd)


def run(config: Path, output_dir: Path, log_path: Path, *, env: Mapping[str, str],
        progress: bool = True, echo: IO[str] | None = None,
        lock_dir: Path | None = None, node_rank: int = 0, lock_wait_s: float = 0.0,
        signals: list[int] | None = None) -> int:
    """Train (or run any `llamafactory-cli train` config, such as an evaluation's
    predict step); return the exit code. SIGINT/SIGTERM are passed on to the trainer's
    group, so an interrupted run leaves its checkpoints for the next launch to resume
    from; the signals received are appended to `signals`. `lock_dir` holds the run's
    lock (default: `<output_dir>/ftops`), one per `node_rank`, waited for up to
    `lock_wait_s`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    output_dir.mkdir(parents=True, exist_ok=True)
    for moved in set_aside_incomplete_checkpoints(output_dir):
        print(f"ftops: set aside an incomplete checkpoint as {moved.name}", file=sys.stderr)
    argv = [llamafactory_cli(), "train", str(config)]
    with open(log_path, "a", encoding="utf-8") as log, _Progress(output_dir, progress), \
            _run_lock(output_dir, lock_dir or output_dir / "ftops", node_rank,
                      lock_wait_s) as lock_fd:
        log.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {' '.join(argv)}\n")
        log.flush()
        # Same process group as ftops: killing the launcher's group kills the trainer,
        # torchrun and its workers with it (no orphan keeps training). The lock file
        # descriptor is inherited, so the lock lives as long as the trainer does.
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=base_env(env), pass_fds=(lock_fd,))

        def forward(signum: int, _frame: Any) -> None:
            if signals is not None:
                signals.append(signum)
            _signal_tree(proc.pid, signum)

        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if echo is not None:
                    echo.write(line)
            return proc.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
