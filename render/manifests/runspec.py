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
from pathlib import Path
from typing import Any

from render.propose import naming
from render.propose.experiment import Experiment, used_datasets
from render.record.identity import RunIdentity

# Inside the pod.
CONFIG_MOUNT = "/etc/ftops"
STORAGE_MOUNT = "/mnt/storage"
OUTPUT_MOUNT = "/mnt/output"
DATA_MOUNT = "/mnt/data"
MASTER_PORT = 29500
CONFIG_ERROR_EXIT = 2  # `ftops node-run` exits 2 when LLaMA-Factory rejects the arguments

# The key hyperparameters shown in plans and in the outputs-index README.
KEY_HYPERPARAMETERS = ("stage", "finetuning_type", "learning_rate", "num_train_epochs",
                       "lora_rank", "per_device_train_batch_size",
                       "gradient_accumulation_steps", "cutoff_len", "pref_beta")


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

    @property
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
        for name in used_datasets(self.exp.train):
            entry = dict(info.get(name) or {})
            if "file_name" in entry and base:
                entry["file_name"] = f"{base}/{entry['file_name']}"
            out[name] = entry
        return out

    def train_config(self, *, output_dir: str, dataset_dir: str, deepspeed: str | None,
                     tracker: dict[str, Any]) -> dict[str, Any]:
        """The flat LLaMA-Factory config this run trains with."""
        cfg = dict(self.exp.train)
        cfg["output_dir"] = output_dir
        cfg["dataset_dir"] = dataset_dir
        cfg["overwrite_output_dir"] = False  # resume from the last checkpoint instead
        if deepspeed is not None:
            cfg["deepspeed"] = deepspeed
        cfg.setdefault("run_name", f"{self.exp.name}-{self.run_id}")
        for key, value in tracker.items():
            cfg.setdefault(key, value)
        return cfg

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
        )

    def mlflow_tags(self) -> dict[str, str]:
        return {"ftops.experiment_path": self.exp.path, "ftops.config_hash": self.exp.config_hash,
                "ftops.git_sha": self.commit, "ftops.run_id": self.run_id,
                "ftops.owner": str(self.exp.metadata.get("owner", ""))}


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
