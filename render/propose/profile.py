"""The cluster profile (k8s-base/cluster-profile.yaml): what the cluster offers, what a
run may use there (its longest time limit, the image registries and the Secrets), and
where its training pods publish their records (the optional `index` section).

`pin_default_image` is how the image workflow points `default_image` at the digest it
pushed (`ftops pin-image`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from render.errors import FatalError
from render.fsutil import atomic_write
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
    # The git remote holding outputs-index/ that rank 0's post-run hook publishes to, and
    # the Secret (`<name>/<key>` in the namespace) with a token that may push there.
    # Empty: pods do not publish; the hourly reconcile records their runs instead.
    index_remote: str = ""
    index_branch: str = "main"
    index_token_secret: str = ""


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
        remote, branch, token_secret = _index(raw.get("index"))
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
            index_remote=remote,
            index_branch=branch,
            index_token_secret=token_secret,
            max_sweep_runs=int(limits.get("max_sweep_runs", 64)),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FatalError(f"{PROFILE_PATH}: missing or malformed field {exc}") from None
    if duration_seconds(profile.max_time_limit) is None:
        raise FatalError(f"{PROFILE_PATH}: limits.max_time_limit {profile.max_time_limit!r} "
                         "is not a duration such as 7d")
    if not profile.image_allowed(profile.default_image):
        raise FatalError(f"{PROFILE_PATH}: default_image {profile.default_image!r} is not "
                         "under limits.allowed_images")
    return profile


_SECRET_REF = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/[-._a-zA-Z0-9]{1,253}")
_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")


def _index(raw: object) -> tuple[str, str, str]:
    """(remote, branch, token Secret `<name>/<key>`) of the profile's `index` section;
    empty remote when there is none."""
    if raw is None:
        return "", "main", ""
    if not isinstance(raw, dict):
        raise FatalError(f"{PROFILE_PATH}: index must be a mapping (remote, branch, "
                         "token_secret)")
    remote = str(raw.get("remote") or "")
    branch = str(raw.get("branch") or "main")
    token_secret = str(raw.get("token_secret") or "")
    parts = urlsplit(remote)
    if remote and (parts.scheme not in ("https", "http", "ssh", "file")
                   or any(ord(c) < 0x21 or ord(c) == 0x7F for c in remote)):
        raise FatalError(f"{PROFILE_PATH}: index.remote {remote!r} is not a git remote URL "
                         "(https://host/owner/repo.git)")
    if "@" in parts.netloc and parts.scheme in ("http", "https"):
        raise FatalError(f"{PROFILE_PATH}: index.remote carries credentials; name the "
                         "remote without them and put the token in the Secret that "
                         "index.token_secret names")
    if not _BRANCH.fullmatch(branch) or ".." in branch:
        raise FatalError(f"{PROFILE_PATH}: index.branch {branch!r} is not a branch name")
    if token_secret and not _SECRET_REF.fullmatch(token_secret):
        raise FatalError(f"{PROFILE_PATH}: index.token_secret {token_secret!r} must be "
                         "<secret name>/<key>, e.g. ftops-index-token/token")
    return remote, branch, token_secret


# registry/path/name@sha256:<64 hex>: what `pin_default_image` accepts (nothing else can
# reach the profile's YAML through it).
PINNED_IMAGE = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?"
                          r"(/[a-z0-9]+([._-][a-z0-9]+)*)+@sha256:[0-9a-f]{64}")


def pin_default_image(repo_root: Path, image: str) -> bool:
    """Point the profile's `default_image` at `image` (a digest reference under
    `limits.allowed_images`), keeping the rest of the file byte for byte; False when it
    already was."""
    if not PINNED_IMAGE.fullmatch(image):
        raise FatalError(f"{image!r} is not an image pinned by digest "
                         "(<registry>/<path>@sha256:<64 hex digits>)")
    profile = load_profile(repo_root)
    if not profile.image_allowed(image):
        raise FatalError(f"{image!r} is not under the profile's limits.allowed_images "
                         f"({', '.join(profile.allowed_images)}): add its repository there "
                         "first")
    path = repo_root / PROFILE_PATH
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith("default_image:")]
    if len(found) != 1:
        raise FatalError(f"{PROFILE_PATH}: expected one top-level `default_image:` line, "
                         f"found {len(found)}")
    new = f"default_image: {image}\n"
    if lines[found[0]] == new:
        return False
    lines[found[0]] = new
    atomic_write(path, "".join(lines).encode("utf-8"))
    return True
