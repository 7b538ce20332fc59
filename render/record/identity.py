"""Who a run is, from the render to the pod to the record: `RunIdentity`.

`RunSpec.identity()` makes it once, at render time. It travels into the run's ConfigMap
inside `spec.json` (`NodeSpec`: the identity plus where the node finds its train config
and writes its output), is read back by `ftops node-run` and the post-run hook, and
starts the `RunRecord`. The Kubernetes labels and annotations that mark a run's objects
are derived from it here and read back here (`RunIdentity.from_metadata`): their keys are
the constants of this module and appear nowhere else.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from render.errors import FatalError
from render.k8snames import label_value

LABEL_PREFIX = "ftops.dev"
RUN_ID_LABEL = f"{LABEL_PREFIX}/run-id"
EXPERIMENT_LABEL = f"{LABEL_PREFIX}/experiment"
DATASET_LABEL = f"{LABEL_PREFIX}/dataset"
MODEL_LABEL = f"{LABEL_PREFIX}/model"
OWNER_LABEL = f"{LABEL_PREFIX}/owner"
CONFIG_HASH_LABEL = f"{LABEL_PREFIX}/config-hash"
GIT_SHA_LABEL = f"{LABEL_PREFIX}/git-sha"
# Annotations carry the full values that labels must shorten.
EXPERIMENT_PATH_ANNOTATION = f"{LABEL_PREFIX}/experiment-path"
CONFIG_HASH_ANNOTATION = f"{LABEL_PREFIX}/config-hash"
GIT_SHA_ANNOTATION = f"{LABEL_PREFIX}/git-sha"
OWNER_ANNOTATION = f"{LABEL_PREFIX}/owner"
ARTIFACTS_ANNOTATION = f"{LABEL_PREFIX}/artifacts"
RERUN_ANNOTATION = f"{LABEL_PREFIX}/rerun"
# A sweep point's label (`learning_rate=0.0001,lora_rank=8`): never in a name or label
# value (it does not fit their limits), only here and in the run record.
SWEEP_POINT_ANNOTATION = f"{LABEL_PREFIX}/sweep-point"
# Kueue's: which LocalQueue and priority class a JobSet asks for.
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"
# JobSet's: which attempt of the group a pod belongs to (0, then 1 after a restart).
RESTART_ATTEMPT_LABEL = "jobset.sigs.k8s.io/restart-attempt"
# A training pod's environment: its attempt (from that label) and the restarts JobSet
# allows, so the hook counts restarts and knows whether a failure is final.
RESTART_ATTEMPT_ENV = "FTOPS_RESTART_ATTEMPT"
MAX_RESTARTS_ENV = "FTOPS_MAX_RESTARTS"

# The key hyperparameters a run's identity keeps (shown in plans, the outputs-index
# READMEs and runs.csv).
KEY_HYPERPARAMETERS = ("stage", "finetuning_type", "learning_rate", "num_train_epochs",
                       "lora_rank", "per_device_train_batch_size",
                       "gradient_accumulation_steps", "cutoff_len", "pref_beta")

SPEC_JSON = "spec.json"  # the NodeSpec, in the ConfigMap (and in <run>/ftops/ locally)
# The MLflow UI's base URL in a training pod's environment (the profile's `mlflow_ui`):
# the post-run hook links the run record to the MLflow run there.
MLFLOW_UI_ENV = "FTOPS_MLFLOW_UI"


@dataclass(frozen=True)
class RunIdentity:
    run_id: str
    experiment: str  # experiment name, e.g. "sft_lora_lr1e-4_v1"
    experiment_path: str  # experiments/<dataset>/<model>/<name>.yaml
    dataset: str
    model: str
    config_hash: str
    git_sha: str
    owner: str = ""
    image: str = ""
    nodes: int = 1
    gpus_per_node: int = 0
    gpu_type: str = ""
    jobset: str = ""
    artifacts_uri: str = ""  # where the run's output lives (gs://..., file://...)
    storage: str = ""  # the storage profile: gcsfuse | pvc | ephemeral | local
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    rerun: int = 0  # launch.rerun: a deliberate re-run of the same config (0: the first)
    # the sweep point this run is ({index, label, overrides}); empty for a plain experiment
    sweep: dict[str, Any] = field(default_factory=dict)
    # the runs this pipeline stage starts from ([{experiment, run_id, as, artifacts_uri}])
    needs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Every field; `sweep` and `needs` only when set (spec.json of a plain run stays
        as it was)."""
        data = asdict(self)
        for key in ("sweep", "needs"):
            if not data[key]:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: Any, where: str = "run spec") -> RunIdentity:
        """The identity in `data` (extra keys ignored); FatalError naming `where` when a
        field is missing or of the wrong type."""
        if not isinstance(data, dict):
            raise FatalError(f"{where}: not an ftops run spec (expected a JSON object)")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in data:
                if f.name in _REQUIRED:
                    raise FatalError(f"{where}: not an ftops run spec (no {f.name})")
                continue
            value = data[f.name]
            want = _TYPES[f.name]
            if not isinstance(value, want) or (want is int and isinstance(value, bool)):
                raise FatalError(f"{where}: {f.name} must be {want.__name__}, "
                                 f"got {type(value).__name__}")
            values[f.name] = value
        return cls(**values)

    def labels(self) -> dict[str, str]:
        """Labels on every object of the run (values shortened to label rules)."""
        return {
            EXPERIMENT_LABEL: label_value(self.experiment),
            DATASET_LABEL: label_value(self.dataset),
            MODEL_LABEL: label_value(self.model),
            OWNER_LABEL: label_value(self.owner),
            CONFIG_HASH_LABEL: self.config_hash[:16],
            GIT_SHA_LABEL: self.git_sha[:40],
            RUN_ID_LABEL: self.run_id,
        }

    def annotations(self) -> dict[str, str]:
        """The full values, for whoever reads the run back from the cluster."""
        return {
            EXPERIMENT_PATH_ANNOTATION: self.experiment_path,
            CONFIG_HASH_ANNOTATION: self.config_hash,
            GIT_SHA_ANNOTATION: self.git_sha,
            OWNER_ANNOTATION: self.owner,
            ARTIFACTS_ANNOTATION: self.artifacts_uri,
            RERUN_ANNOTATION: str(self.rerun),
            **({SWEEP_POINT_ANNOTATION: str(self.sweep.get("label", ""))}
               if self.sweep else {}),
        }

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any]) -> RunIdentity:
        """What a JobSet's metadata says about its run (labels and annotations as made by
        `labels()` and `annotations()`; the experiment name may be shortened)."""
        labels = metadata.get("labels") or {}
        ann = metadata.get("annotations") or {}
        return cls(
            run_id=str(labels.get(RUN_ID_LABEL, "")),
            experiment=str(labels.get(EXPERIMENT_LABEL, "")),
            experiment_path=str(ann.get(EXPERIMENT_PATH_ANNOTATION, "")),
            dataset=str(labels.get(DATASET_LABEL, "")),
            model=str(labels.get(MODEL_LABEL, "")),
            config_hash=str(ann.get(CONFIG_HASH_ANNOTATION, "")),
            git_sha=str(ann.get(GIT_SHA_ANNOTATION, "")),
            owner=str(ann.get(OWNER_ANNOTATION, "")),
            jobset=str(metadata.get("name", "")),
            artifacts_uri=str(ann.get(ARTIFACTS_ANNOTATION, "")),
            rerun=int(rerun) if (rerun := str(ann.get(RERUN_ANNOTATION, "0"))).isdigit()
            and len(rerun) < 6 else 0,
        )


_REQUIRED = ("run_id", "experiment", "experiment_path", "dataset", "model", "config_hash",
             "git_sha")
_TYPES: dict[str, type] = {f.name: (dict if f.name in ("hyperparameters", "sweep") else
                                    list if f.name == "needs" else
                                    int if f.name in ("nodes", "gpus_per_node", "rerun") else str)
                           for f in fields(RunIdentity)}


@dataclass(frozen=True)
class NodeSpec:
    """`spec.json`: what a node needs to run and record its part of a run."""

    identity: RunIdentity
    mode: str  # "cluster" or "local"
    train_config: str  # path of the LLaMA-Factory YAML on the node
    output_dir: str  # the run's output folder on the node
    # the evaluations after training: name -> path of its predict config on the node
    # (left out of spec.json when there are none)
    evaluate: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        data = {**self.identity.to_dict(), "mode": self.mode,
                "train_config": self.train_config, "output_dir": self.output_dir}
        if self.evaluate:
            data["evaluate"] = dict(self.evaluate)
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def load(cls, path: Path) -> NodeSpec:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise FatalError(f"{path}: cannot read the run spec: {exc}") from None
        identity = RunIdentity.from_dict(data, str(path))
        extra = {}
        for key in ("mode", "train_config", "output_dir"):
            value = data.get(key)
            if not isinstance(value, str) or not value:
                raise FatalError(f"{path}: not an ftops run spec (no {key})")
            extra[key] = value
        evaluate = data.get("evaluate", {})
        if not isinstance(evaluate, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in evaluate.items()):
            raise FatalError(f"{path}: evaluate must map evaluation names to config paths")
        return cls(identity, **extra, evaluate=evaluate)
