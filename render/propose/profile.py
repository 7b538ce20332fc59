"""The cluster profile (k8s-base/cluster-profile.yaml): what the cluster offers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from render.errors import FatalError
from render.record.results import DEFAULT_LEADERBOARD, Leaderboard, parse_leaderboard

PROFILE_PATH = Path("k8s-base") / "cluster-profile.yaml"


@dataclass(frozen=True)
class GpuType:
    name: str
    gpus_per_node: int
    cpu_per_node: int
    memory_per_node_gib: int
    node_labels: dict[str, str] = field(default_factory=dict)
    # Peak dense bf16 TFLOP/s of one GPU: the plan's estimate when no run measured one.
    peak_tflops: float | None = None


@dataclass(frozen=True)
class Profile:
    namespace: str
    default_image: str
    service_account: str
    bucket: str
    storage_root: str
    default_storage: str
    storage_profiles: tuple[str, ...]
    pvc_claim: str
    report_to: str
    mlflow_tracking_uri: str
    mlflow_ui: str
    queues: tuple[str, ...]
    priorities: tuple[str, ...]
    default_queue: str
    default_priority: str
    max_nodes: int
    gpu_types: dict[str, GpuType]
    # how dataset READMEs rank runs when their dataset.yaml names no leaderboard
    leaderboard: Leaderboard = DEFAULT_LEADERBOARD


def load_profile(repo_root: Path) -> Profile:
    path = repo_root / PROFILE_PATH
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
    except FileNotFoundError:
        raise FatalError(
            f"{PROFILE_PATH}: not found under {repo_root} "
            "(run ftops from the repository root, or pass --repo)"
        ) from None
    try:
        storage = raw["storage"]
        trackers = raw["trackers"]
        gpu_types = {
            name: GpuType(name=name, **spec) for name, spec in raw["gpu_types"].items()
        }
        return Profile(
            namespace=raw["namespace"],
            default_image=raw["default_image"],
            service_account=raw["service_account"],
            bucket=storage["bucket"],
            storage_root=storage["root"].rstrip("/"),
            default_storage=storage["default_profile"],
            storage_profiles=tuple(storage["profiles"]),
            pvc_claim=storage["pvc_claim"],
            report_to=trackers["report_to"],
            mlflow_tracking_uri=trackers["mlflow_tracking_uri"],
            mlflow_ui=trackers["mlflow_ui"],
            queues=tuple(raw["queues"]),
            priorities=tuple(raw["priorities"]),
            default_queue=raw["default_queue"],
            default_priority=raw["default_priority"],
            max_nodes=int(raw["max_nodes"]),
            gpu_types=gpu_types,
            leaderboard=parse_leaderboard(raw["leaderboard"], PROFILE_PATH.as_posix())
            if "leaderboard" in raw else DEFAULT_LEADERBOARD,
        )
    except (KeyError, TypeError) as exc:
        raise FatalError(f"{PROFILE_PATH}: missing or malformed field {exc}") from None
