"""`ftops launch --local`: the same experiment on this machine, no cluster.

Same resolved config and run id as on the cluster, the same trainer call, the same
evaluations after training (`evaluate:`) and the same post-run hook; storage is a local
folder (default ./outputs) or a bucket. The run trains in
`<work>/experiments/<dataset>/<model>/<experiment>/<run-id>/`; relaunching an
interrupted run finds its checkpoints there and resumes (LLaMA-Factory does this when
output_dir holds checkpoint-N folders and overwrite_output_dir is false).

Before anything starts, `check_prerequisites` makes sure the local model and data the
experiment names exist (a one-line error naming what makes them, e.g. `ftops demo`):
a run that could not start is never recorded. A run that starts records a `launched`
entry first (as `ftops apply --record` does for the cluster), so its final record is
one that `ftops index reconcile` can verify if publishing it fails.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, Any

from render.errors import FatalError
from render.launch import trainer
from render.launch.evaluate import run_evaluations
from render.manifests.jobset import cpu_env
from render.manifests.overlay import eval_config_name
from render.manifests.runspec import RunSpec, git_commit, to_json
from render.ports import free_port
from render.propose.experiment import Experiment, Workspace, uses_torchrun
from render.record import hook
from render.record.destination import Delivery, IndexDestination
from render.record.identity import SPEC_JSON, NodeSpec
from render.record.runrecord import RunRecord, now
from render.record.storage import open_storage
from render.record.trust import RUN_JSON
from render.yamldump import dump_yaml

CONFIG_SUBDIR = "ftops"


def _local_path(ws: Workspace, value: str) -> str:
    """A repo-relative path that exists becomes absolute (the trainer may run elsewhere)."""
    candidate = ws.root / value
    return str(candidate) if value and not os.path.isabs(value) and candidate.exists() else value


def prepare(ws: Workspace, spec: RunSpec, output_dir: Path, report_to: str
            ) -> tuple[Path, dict[str, Any], dict[str, Path]]:
    """Write the run's config files; returns (train.yaml path, the train config, each
    evaluation's predict config path by name)."""
    cfg_dir = output_dir / CONFIG_SUBDIR
    cfg_dir.mkdir(parents=True, exist_ok=True)
    (cfg_dir / "dataset_info.json").write_text(to_json(spec.dataset_info(ws.root)), "utf-8")
    ds = spec.exp.train.get("deepspeed")
    cfg = spec.train_config(output_dir=str(output_dir), dataset_dir=str(cfg_dir),
                            deepspeed=str(ws.root / ds) if isinstance(ds, str) else None,
                            tracker={"report_to": report_to},
                            inputs=spec.input_paths("local"))
    cfg["model_name_or_path"] = _local_path(ws, str(cfg.get("model_name_or_path", "")))
    path = cfg_dir / "train.yaml"
    header = f"# Written by `ftops launch --local` for run {spec.run_id}.\n"
    path.write_text(header + dump_yaml(cfg), encoding="utf-8")
    evals: dict[str, Path] = {}
    for name, eval_cfg in spec.eval_configs(cfg).items():
        evals[name] = cfg_dir / eval_config_name(name)
        evals[name].write_text(header + dump_yaml(eval_cfg), encoding="utf-8")
    return path, cfg, evals


def _looks_local(value: str) -> bool:
    """Whether model_name_or_path names a path on this machine rather than a hub id
    (`owner/name`): absolute, `~`, `./`, `../`, or a hidden first folder (`.demo/x`)."""
    return value.startswith(("/", "~", "./", "../")) or (
        value.startswith(".") and value not in (".", ".."))


def _maker(rel: str) -> str:
    from render.launch.demo import DEMO_ASSETS_DIR

    if rel == DEMO_ASSETS_DIR or rel.startswith(f"{DEMO_ASSETS_DIR}/"):
        return "`ftops demo` makes it"
    return "create it, or name a model or data that exists"


def check_prerequisites(ws: Workspace, spec: RunSpec) -> None:
    """FatalError (one line) when the local model or data files the run needs do not
    exist, naming what makes them; checked before any output folder or record."""
    exp = spec.exp
    missing: list[str] = []
    model = str(exp.train.get("model_name_or_path") or "")
    if model and _looks_local(model):
        path = Path(model).expanduser()
        path = path if path.is_absolute() else ws.root / path
        if not path.exists():
            missing.append(f"model {model} (train.model_name_or_path) does not exist: "
                           f"{_maker(model.removeprefix('./'))}")
    uri = str((exp.registration.get("source") or {}).get("uri", ""))
    if uri.startswith("file://") and not missing:
        rel = uri[len("file://"):]
        base = Path(spec.data_location(ws.root))
        files = [str(entry.get("file_name")) for entry in spec.dataset_info(ws.root).values()
                 if isinstance(entry, dict) and entry.get("file_name")]
        absent = [f for f in files if not Path(f).exists()]
        if not base.is_dir() or absent:
            shown = Path(absent[0]).name if absent and base.is_dir() else ""
            missing.append(f"data {rel}{'/' + shown if shown else ''} (source.uri in "
                           f"experiments/{exp.dataset}/dataset.yaml) does not exist: "
                           f"{_maker(rel.removeprefix('./'))}")
    if missing:
        raise FatalError(f"{exp.path}: {'; '.join(missing)}. Nothing was started")


def previous_record(output_dir: Path) -> RunRecord | None:
    path = output_dir / RUN_JSON
    if not path.exists():
        return None
    try:
        return RunRecord.from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None


def launch_local(ws: Workspace, exp: Experiment, *, work: Path, storage_root: str | None = None,
                 nproc: int = 1, progress: bool = True, echo: IO[str] | None = None,
                 destination: IndexDestination, commit: str | None = None) -> Delivered:
    spec = RunSpec(exp, commit or git_commit(ws.root))
    if nproc < 1:
        raise FatalError("--nproc must be at least 1")
    output_dir = (work / spec.run_path).resolve()
    done = previous_record(output_dir)
    if done is not None and done.status == "succeeded":
        raise AlreadyDone(done, output_dir)
    check_prerequisites(ws, spec)
    storage = open_storage(storage_root or str(work.resolve()))
    identity = replace(spec.identity(), artifacts_uri=storage.uri(spec.run_path),
                       image="local", storage="local")
    report_to = str(exp.train.get("report_to") or
                    ("mlflow" if os.environ.get("MLFLOW_TRACKING_URI") else "none"))
    config, cfg, eval_configs = prepare(ws, spec, output_dir, report_to)
    node_spec = NodeSpec(identity, mode="local", train_config=str(config),
                         output_dir=str(output_dir),
                         evaluate={k: str(v) for k, v in eval_configs.items()})
    (output_dir / CONFIG_SUBDIR / SPEC_JSON).write_text(node_spec.to_json(), "utf-8")
    env = {"NNODES": "1", "NODE_RANK": "0", "FTOPS_RUN_ID": spec.run_id,
           "OUTPUT_DIR": str(output_dir)}
    if uses_torchrun(nproc, exp.deepspeed_config is not None):
        env.update({"FORCE_TORCHRUN": "1", "NPROC_PER_NODE": str(nproc),
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
    if exp.launch.gpus_per_node == 0:
        # one BLAS thread per process: on a small CPU, more threads fight (10x slower);
        # and a device name that a resumed multi-process run can load (manifests.jobset)
        env.update({e["name"]: e["value"] for e in cpu_env(1)})
        env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    if os.path.isdir(str(cfg.get("model_name_or_path", ""))):
        env["HF_HUB_OFFLINE"] = "1"  # a local model needs no hub
    if "mlflow" in report_to:
        env.setdefault("MLFLOW_EXPERIMENT_NAME", os.environ.get(
            "MLFLOW_EXPERIMENT_NAME", f"{exp.dataset}/{exp.model}"))
        env["MLFLOW_TAGS"] = json.dumps(spec.mlflow_tags(), sort_keys=True)
        os.environ.setdefault("MLFLOW_EXPERIMENT_NAME", env["MLFLOW_EXPERIMENT_NAME"])
    checkpoints = sorted(output_dir.glob("checkpoint-*"))
    if checkpoints:
        print(f"ftops: resuming run {spec.run_id} from {checkpoints[-1].name}", file=sys.stderr)
    started = done.started_at if done is not None and done.started_at else now()
    start = destination.deliver([RunRecord.of(identity, mode="local", status="launched",
                                              started_at=started)])
    if destination.remote and not start.ok:
        raise FatalError(f"cannot record the start of run {spec.run_id}: {start.message}. "
                         "Nothing was trained; fix the index remote and launch again")
    code = trainer.run(config, output_dir, output_dir / "logs" / "train.log", env=env,
                       progress=progress, echo=echo)
    evaluations = (run_evaluations(eval_configs, output_dir, env=env, echo=echo)
                   if code == 0 else [])
    finished = now()  # the job's wall time: training and evaluations
    message = "" if code == 0 else f"llamafactory-cli exited with {code}; see logs/train.log"
    profile = ws.profile
    ui = hook.mlflow_ui_base(os.environ.get("MLFLOW_TRACKING_URI", ""),
                             profile.mlflow_tracking_uri, profile.mlflow_ui)
    record = hook.build_record(identity, output_dir, exit_code=code, started_at=started,
                               finished_at=finished, mode="local", report_to=report_to,
                               resolved_config=cfg, message=message,
                               evaluations=evaluations, mlflow_ui=ui)
    upload = identity.artifacts_uri != output_dir.as_uri()  # storage elsewhere
    delivery = hook.finish(record, output_dir, upload=upload, destination=destination)
    return Delivered(record, delivery)


@dataclass(frozen=True)
class Delivered:
    """A finished run: its record and where the record went."""

    record: RunRecord
    delivery: Delivery


class AlreadyDone(FatalError):
    def __init__(self, record: RunRecord, output_dir: Path) -> None:
        super().__init__(f"run {record.run_id} of {record.experiment_path} already succeeded "
                         f"({output_dir}); a run is never overwritten. To train again, "
                         "copy the experiment to a new _v<N> file and change it")
        self.record = record
