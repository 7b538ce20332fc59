"""Evaluations after training, in the same job: each `evaluate:` entry of the experiment
is one `llamafactory-cli train <eval-config>` predict step on the trained model (configs
from `RunSpec.eval_configs`), run on the launching node only, one after the other, into
`<run>/eval/<name>/`, with its log in `<run>/logs/eval-<name>.log`.

Used by `ftops launch --local` and by `ftops node-run` on rank 0 once training
succeeded. An evaluation that fails is recorded as failed; it never fails the run (the
model trained, and a restart would only train again).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

import yaml

from render.launch import trainer
from render.ports import free_port
from render.record.evaluation import EvalRun


def single_node_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a step on this node alone: one node, rank 0, a local master on a free
    port (the other nodes of a multi-node run have finished)."""
    out = dict(env)
    out.update({"NNODES": "1", "NODE_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": str(free_port())})
    out.pop("RDZV_ID", None)
    return out


def run_evaluations(configs: Mapping[str, Path], run_dir: Path, *, env: Mapping[str, str],
                    echo: IO[str] | None = None) -> list[EvalRun]:
    """Run each evaluation (name -> predict config file) after training; returns what
    ran, in name order, for the post-run hook to collect."""
    done = []
    for name, config in sorted(configs.items()):
        try:
            cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            print(f"ftops: evaluation {name}: cannot read {config}: {exc}", file=sys.stderr)
            done.append(EvalRun(name, {}, 1))
            continue
        out = Path(str(cfg["output_dir"]))
        print(f"ftops: evaluating {name} (LLaMA-Factory predict step) into {out}",
              file=sys.stderr)
        code = trainer.run(config, out, run_dir / "logs" / f"eval-{name}.log",
                           env=single_node_env(env), progress=False, echo=echo,
                           lock_dir=run_dir / "ftops")
        if code != 0:
            print(f"ftops: evaluation {name} failed (exit {code}); see "
                  f"{run_dir / 'logs' / f'eval-{name}.log'}", file=sys.stderr)
        done.append(EvalRun(name, cfg, code))
    return done
