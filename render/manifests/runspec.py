"""RunSpec: one launch of one experiment at one commit, and everything derived from it.

The run id comes from the experiment path and its launch identity (the config hash,
and `launch.rerun`), not from the commit: a merge that changes only metadata names the
same run, which is therefore launched once, and a relaunch resumes it. The commit is
kept as the run's lineage (`git_sha`). Paths inside pods, the output location in
central storage, and the final LLaMA-Factory config all come from here, for the cluster
and for local runs.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from render.propose import naming
from render.propose.experiment import Experiment, used_datasets
from render.record.evaluation import EVAL_DIR
from render.record.identity import KEY_HYPERPARAMETERS, RunIdentity

# Inside the pod.
CONFIG_MOUNT = "/etc/ftops"
STORAGE_MOUNT = "/mnt/storage"
OUTPUT_MOUNT = "/mnt/output"
DATA_MOUNT = "/mnt/data"
MASTER_PORT = 29500
CONFIG_ERROR_EXIT = 2  # `ftops node-run` exits 2 when LLaMA-Factory rejects the arguments


# What an evaluation's predict step takes over from the training config: how the model
# is loaded and how prompts are built (the trained model must see the same), never how
# it trained.
EVAL_CARRIED = (
    "template", "cutoff_len", "default_system", "tool_format", "enable_thinking",
    "media_dir", "trust_remote_code", "model_revision", "cache_dir", "use_fast_tokenizer",
    "split_special_tokens", "add_tokens", "add_special_tokens", "new_special_tokens_config",
    "resize_vocab", "rope_scaling", "flash_attn", "quantization_bit", "quantization_method",
    "quantization_type", "double_quantization", "image_max_pixels", "image_min_pixels",
    "video_max_pixels", "video_min_pixels", "video_fps", "video_maxlen", "bf16", "fp16",
    "seed", "preprocessing_num_workers", "dataloader_num_workers",
)
ADAPTER_TYPES = ("lora", "oft")  # the run's output is an adapter over the base model


def git_commit(repo: Path) -> str:
    """HEAD of the repository, or 40 zeros outside git (local experiments on a scratch dir)."""
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                             capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "0" * 40
    return out.stdout.strip()


@dataclass(frozen=True)
class RunSpec:
    exp: Experiment
    commit: str

    @cached_property  # asked ~20 times per rendered run; the experiment is immutable
    def run_id(self) -> str:
        return naming.run_id(self.exp.path, self.exp.config_hash, self.exp.launch.rerun)

    @property
    def jobset(self) -> str:
        return naming.jobset_name(self.exp.name, self.run_id)

    @property
    def run_path(self) -> str:
        """Relative path of this run under a storage root."""
        e = self.exp
        return f"experiments/{e.dataset}/{e.model}/{e.name}/{self.run_id}"

    @property
    def artifacts_uri(self) -> str:
        return f"{self.exp.profile.storage_root}/{self.run_path}"

    @property
    def pod_output_dir(self) -> str:
        if self.exp.launch.storage == "ephemeral":
            return f"{OUTPUT_MOUNT}/{self.run_path}"
        return f"{STORAGE_MOUNT}/{self.run_path}"

    @property
    def hyperparameters(self) -> dict[str, Any]:
        t = self.exp.train
        return {k: t[k] for k in KEY_HYPERPARAMETERS if k in t}

    def data_location(self, local_root: Path | None = None) -> str:
        """Where the data files live, as a directory path the trainer can read."""
        uri = str(self.exp.registration.get("source", {}).get("uri", ""))
        if uri.startswith("file:///"):
            # an absolute path: the same everywhere (on a cluster, a path inside the
            # pod, e.g. on the pvc storage profile's mount)
            return uri[len("file://"):]
        if uri.startswith("file://"):
            rel = uri[len("file://"):]
            base = local_root if local_root is not None else Path(DATA_MOUNT) / "local"
            return str(base / rel)
        if uri.startswith("gs://"):
            bucket_path = uri[len("gs://"):].rstrip("/")
            return f"{DATA_MOUNT}/{bucket_path}"
        return ""  # hub datasets: entries use hf_hub_url

    def dataset_info(self, local_root: Path | None = None) -> dict[str, Any]:
        """The dataset_info.json entries this run uses, file names made absolute."""
        info = self.exp.registration.get("dataset_info") or {}
        base = self.data_location(local_root)
        out: dict[str, Any] = {}
        names = used_datasets(self.exp.train) + self.exp.eval_datasets
        for name in dict.fromkeys(names):
            entry = dict(info.get(name) or {})
            if "file_name" in entry and base:
                entry["file_name"] = f"{base}/{entry['file_name']}"
            out[name] = entry
        return out

    def input_paths(self, mode: str) -> dict[str, str]:
        """A pipeline stage's inputs (`needs:`), as the trainer reads them: the train
        argument -> the input run's output folder, under the pod's storage mount for
        `mode` "cluster" (central storage is mounted there), a local path for "local"."""
        out: dict[str, str] = {}
        root = self.exp.profile.storage_root.rstrip("/") + "/"
        for need in self.exp.inputs:
            uri = need.artifacts_uri
            if need.waiting or not uri:
                continue
            if mode == "cluster" and uri.startswith(root):
                out[need.as_] = f"{STORAGE_MOUNT}/{uri[len(root):]}"
            elif uri.startswith("file://"):
                out[need.as_] = uri[len("file://"):]
            else:
                out[need.as_] = uri
        return out

    def train_config(self, *, output_dir: str, dataset_dir: str, deepspeed: str | None,
                     tracker: dict[str, Any], inputs: dict[str, str] | None = None
                     ) -> dict[str, Any]:
        """The flat LLaMA-Factory config this run trains with (`inputs`: a pipeline
        stage's resolved inputs, `input_paths`)."""
        cfg = dict(self.exp.train)
        cfg.update(inputs or {})
        cfg["output_dir"] = output_dir
        cfg["dataset_dir"] = dataset_dir
        cfg["overwrite_output_dir"] = False  # resume from the last checkpoint instead
        if deepspeed is not None:
            cfg["deepspeed"] = deepspeed
        cfg.setdefault("run_name", f"{self.exp.name}-{self.run_id}")
        for key, value in tracker.items():
            cfg.setdefault(key, value)
        return cfg

    def eval_configs(self, train_cfg: dict[str, Any]) -> dict[str, dict[str, Any]]:
        """The LLaMA-Factory config of each `evaluate:` entry, by name: a predict step
        (stage sft, do_predict, predict_with_generate) on what `train_cfg` trains (the
        adapter in its output_dir over the base model, or the full model saved there),
        writing to `<output_dir>/eval/<name>/`; the entry's own arguments win over what
        it takes from `train_cfg` (`EVAL_CARRIED`)."""
        out: dict[str, dict[str, Any]] = {}
        run_dir = str(train_cfg["output_dir"])
        ftype = train_cfg.get("finetuning_type", "lora")
        for name, entry in sorted(self.exp.evaluate.items()):
            cfg: dict[str, Any] = {k: train_cfg[k] for k in EVAL_CARRIED if k in train_cfg}
            if "eval_dataset" not in entry:  # the split training held out (lint checks)
                cfg.update({k: train_cfg[k] for k in ("dataset", "val_size", "max_samples")
                            if k in train_cfg})
            cfg.update(entry)
            cfg.update(stage="sft", do_predict=True, predict_with_generate=True,
                       finetuning_type=ftype, dataset_dir=train_cfg["dataset_dir"],
                       output_dir=f"{run_dir}/{EVAL_DIR}/{name}", report_to="none")
            if ftype in ADAPTER_TYPES:
                cfg["model_name_or_path"] = train_cfg.get("model_name_or_path")
                before = train_cfg.get("adapter_name_or_path")
                # a new adapter over earlier ones: they load merged, ours on top
                cfg["adapter_name_or_path"] = (f"{before},{run_dir}" if before and
                                               train_cfg.get("create_new_adapter") else run_dir)
            else:
                cfg["model_name_or_path"] = run_dir
            out[name] = cfg
        return out

    def identity(self) -> RunIdentity:
        """Who this run is: the ConfigMap's spec.json, the JobSet's labels and annotations,
        and the start of its RunRecord."""
        e, launch = self.exp, self.exp.launch
        return RunIdentity(
            run_id=self.run_id,
            experiment=e.name,
            experiment_path=e.path,
            dataset=e.dataset,
            model=e.model,
            config_hash=e.config_hash,
            git_sha=self.commit,
            owner=str(e.metadata.get("owner", "")),
            image=launch.image,
            nodes=launch.nodes,
            gpus_per_node=launch.gpus_per_node,
            gpu_type=launch.gpu_type,
            jobset=self.jobset,
            artifacts_uri=self.artifacts_uri,
            storage=launch.storage,
            hyperparameters=self.hyperparameters,
            rerun=launch.rerun,
            sweep=e.point.as_dict() if e.point is not None else {},
            needs=[i.record() for i in e.inputs],
        )

    def mlflow_tags(self) -> dict[str, str]:
        return {"ftops.experiment_path": self.exp.path, "ftops.config_hash": self.exp.config_hash,
                "ftops.git_sha": self.commit, "ftops.run_id": self.run_id,
                "ftops.owner": str(self.exp.metadata.get("owner", ""))}


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
