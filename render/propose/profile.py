"""The cluster profile (k8s-base/cluster-profile.yaml): what the cluster offers, and what
a run may use there (its longest time limit, the image registries and the Secrets)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from render.errors import FatalError
from render.record.results import DEFAULT_LEADERBOARD, Leaderboard, parse_leaderboard

PROFILE_PATH = Path("k8s-base") / "cluster-profile.yaml"

DURATION = re.compile(r"([1-9][0-9]{0,8})([mhd])")  # 90m, 12h, 2d
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
# Of a node's CPU and memory, what a training pod asks for (the rest: system daemons).
POD_SHARE = 0.9


def duration_seconds(text: str) -> int | None:
    """Seconds of a duration such as 90m, 12h or 2d; None when it is not one."""
    match = DURATION.fullmatch(text)
    return int(match.group(1)) * _UNIT_S[match.group(2)] if match else None


@dataclass(frozen=True)
class GpuType:
    name: str
    gpus_per_node: int
    cpu_per_node: int
    memory_per_node_gib: int
    node_labels: dict[str, str] = field(default_factory=dict)
    # Peak dense bf16 TFLOP/s of one GPU: the plan's estimate when no run measured one.
    peak_tflops: float | None = None

    def pod_requests(self, gpus: int) -> dict[str, str]:
        """The resources one training pod of this type requests (and is limited to), as
        Kubernetes quantities: what the JobSet asks and what Kueue's quota must admit."""
        requests = {
            "cpu": str(max(int(self.cpu_per_node * POD_SHARE), 1)),
            "memory": f"{max(int(self.memory_per_node_gib * POD_SHARE), 1)}Gi",
        }
        if gpus:
            requests["nvidia.com/gpu"] = str(gpus)
        return requests


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
    max_time_limit: str  # the longest launch.time_limit of one attempt
    # Image repositories runs may pull from ("registry/path": the image must start with it
    # and "/", ":" or "@"), and the Secrets env_from_secrets may read.
    allowed_images: tuple[str, ...]
    allowed_secrets: tuple[str, ...]

    @property
    def max_time_limit_s(self) -> int:
        return duration_seconds(self.max_time_limit) or 0

    def image_allowed(self, image: str) -> bool:
        return any(image.startswith(repo) and image[len(repo):len(repo) + 1] in ("/", ":", "@")
                   for repo in self.allowed_images)
    # how dataset READMEs rank runs when their dataset.yaml names no leaderboard
    leaderboard: Leaderboard = DEFAULT_LEADERBOARD
    # the most runs one sweep may expand to (limits.max_sweep_runs)
    max_sweep_runs: int = 64


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
        limits = raw["limits"]
        profile = Profile(
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
            max_time_limit=str(limits["max_time_limit"]),
            allowed_images=tuple(str(r).rstrip("/") for r in limits["allowed_images"]),
            allowed_secrets=tuple(str(s) for s in limits["allowed_secrets"]),
            leaderboard=parse_leaderboard(raw["leaderboard"], PROFILE_PATH.as_posix())
            if "leaderboard" in raw else DEFAULT_LEADERBOARD,
            max_sweep_runs=int(limits.get("max_sweep_runs", 64)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise FatalError(f"{PROFILE_PATH}: missing or malformed field {exc}") from None
    if duration_seconds(profile.max_time_limit) is None:
        raise FatalError(f"{PROFILE_PATH}: limits.max_time_limit {profile.max_time_limit!r} "
                         "is not a duration such as 7d")
    if not profile.image_allowed(profile.default_image):
        raise FatalError(f"{PROFILE_PATH}: default_image {profile.default_image!r} is not "
                         "under limits.allowed_images")
    return profile
