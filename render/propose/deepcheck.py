"""The deep check: LLaMA-Factory's own argument parser on our train dicts.

`deep_check(trains)` runs `llamafactory.hparams.get_train_args` on a copy of each train
dict in one child process (it imports torch, sets env vars, seeds RNGs and configures
logging: none of that may leak into the caller) and returns, per dict, None or the
parser's one-line error, with notes on what was changed first: on a machine without a
GPU bf16/fp16 are turned off, and `deepspeed` is removed (it needs a distributed launch).
`ftops lint --deep` and `ftops node-run` (before training, in the pod) use it.

It parses the way the pods will: a config whose run starts under torchrun (more than
one process, or DeepSpeed: `uses_torchrun`) is parsed as one process of a distributed
run (this CPU cannot join a process group, so the parser is told the parallel mode the
pods have, and whether their DeepSpeed config is ZeRO-3), where LLaMA-Factory refuses
layer-wise GaLore/APOLLO and BAdam without ZeRO-3. A package the config needs that is
missing here (galore_torch, badam, ...) is reported as this environment's gap
(`environment=True`), not as a mistake in the config.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

TIMEOUT_S = 180.0
# Environment variables that change which dataclasses LLaMA-Factory parses or how.
LF_MODE_ENV = ("USE_MCA", "ALLOW_EXTRA_ARGS", "USE_RAY", "USE_KT", "USE_V1")


@dataclass
class DeepCheckResult:
    error: str | None  # None: LLaMA-Factory's parser accepted the config
    notes: list[str] = field(default_factory=list)  # what was changed before parsing
    seconds: float = 0.0
    environment: bool = False  # the error is a package missing here, not the config's


@dataclass(frozen=True)
class Launcher:
    """How the pods start the config: under torchrun (a distributed run) or not."""

    distributed: bool = False
    zero3: bool = False  # the DeepSpeed config is ZeRO stage 3


# Runs in the child. Reads {"configs": [...]} on stdin, writes one JSON line per config.
_CHILD = r"""
import json, os, sys, tempfile, traceback
req = json.load(sys.stdin)
out = sys.stdout
sys.stdout = sys.stderr  # the parser prints help on some errors: keep the protocol clean
def one_line(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"
try:
    import torch
    from llamafactory.hparams import get_train_args
except BaseException as exc:
    err = "cannot import llamafactory: " + one_line(exc)
    for _ in req["configs"]:
        out.write(json.dumps({"error": err, "notes": []}) + "\n")
    sys.exit(0)
try:
    import deepspeed  # noqa: F401
    has_deepspeed = True
except BaseException:
    has_deepspeed = False
from transformers.training_args import ParallelMode
from llamafactory.hparams import parser as lf_parser
from llamafactory.hparams.training_args import TrainingArguments as LFArgs
zero3_check = lf_parser.is_deepspeed_zero3_enabled
cuda = torch.cuda.is_available()
for cfg, launcher in zip(req["configs"], req["launchers"]):
    notes = []
    env_gap = False
    try:
        if not isinstance(cfg, dict):
            raise TypeError(f"train must be a mapping, got {type(cfg).__name__}")
        cfg = dict(cfg)
        with tempfile.TemporaryDirectory(prefix="ftops-deepcheck-") as tmp:
            cfg["output_dir"] = os.path.join(tmp, "out")
            if not cuda:
                for key in ("bf16", "fp16", "pure_bf16"):
                    if cfg.get(key):
                        cfg[key] = False
                        notes.append(f"{key}: set to false for the check (no GPU here)")
            if cfg.get("deepspeed") is not None:
                if not has_deepspeed:
                    notes.append("deepspeed: removed for the check (not installed here)")
                else:
                    notes.append("deepspeed: removed for the check (needs a distributed launch)")
                cfg.pop("deepspeed")
            if launcher["distributed"]:
                # the pods run under torchrun; this CPU cannot join their process group
                LFArgs.parallel_mode = property(lambda self: ParallelMode.DISTRIBUTED)
                lf_parser.is_deepspeed_zero3_enabled = lambda: launcher["zero3"]
                notes.append("parsed as one process of a distributed (torchrun) run, "
                             "as the pods will")
            try:
                get_train_args(cfg)
            finally:
                if "parallel_mode" in LFArgs.__dict__:
                    del LFArgs.parallel_mode
                lf_parser.is_deepspeed_zero3_enabled = zero3_check
        out.write(json.dumps({"error": None, "notes": notes}) + "\n")
    except ImportError as exc:  # a package this config needs is not installed here
        out.write(json.dumps({"error": one_line(exc), "notes": notes, "environment": True})
                  + "\n")
    except BaseException as exc:
        out.write(json.dumps({"error": one_line(exc), "notes": notes}) + "\n")
    out.flush()
"""


def _child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in LF_MODE_ENV}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)  # never look like a torchrun worker
    env.update({
        "HF_HUB_OFFLINE": "1",
        "CUDA_VISIBLE_DEVICES": "",  # same answer on every machine: CPU only
        "TOKENIZERS_PARALLELISM": "false",
        "LLAMAFACTORY_VERBOSITY": "WARN",
        "PYTHONWARNINGS": "ignore",
    })
    return env


def deep_check(trains: Sequence[Any], *, launchers: Sequence[Launcher] | None = None,
               python: str | None = None, timeout: float = TIMEOUT_S) -> list[DeepCheckResult]:
    """LLaMA-Factory's verdict on each train dict (in order), each parsed as its pods
    start it (`launchers`, default: one process), all in one child process (the import
    costs most of the time). Never raises for bad input."""
    if not trains:
        return []
    start = time.monotonic()
    launch = list(launchers) if launchers is not None else [Launcher()] * len(trains)
    payload = json.dumps({"configs": list(trains),
                          "launchers": [vars(x) for x in launch]}, default=str)
    with tempfile.TemporaryDirectory(prefix="ftops-deepcheck-cwd-") as cwd:
        try:
            proc = subprocess.run(
                [python or sys.executable, "-c", _CHILD],
                input=payload, capture_output=True, text=True, timeout=timeout,
                env=_child_env(), cwd=cwd, check=False,
            )
        except subprocess.TimeoutExpired:
            err = f"deep check timed out after {timeout:.0f}s"
            return [DeepCheckResult(err, seconds=time.monotonic() - start) for _ in trains]
        except OSError as exc:
            err = f"deep check could not start: {exc}"
            return [DeepCheckResult(err, seconds=time.monotonic() - start) for _ in trains]
    elapsed = time.monotonic() - start
    results: list[DeepCheckResult] = []
    for line in proc.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "error" in row:
            results.append(DeepCheckResult(row["error"], list(row.get("notes") or []), elapsed,
                                           bool(row.get("environment"))))
    if len(results) < len(trains):
        tail = " ".join(proc.stderr.strip().splitlines()[-1:]) or f"exit code {proc.returncode}"
        err = f"deep check crashed: {tail}"
        missing = len(trains) - len(results)
        results += [DeepCheckResult(err, seconds=elapsed) for _ in range(missing)]
    return results[: len(trains)]
