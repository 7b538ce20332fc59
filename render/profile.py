"""The cluster profile (k8s-base/cluster-profile.yaml): what the cluster offers, and
where its training pods publish their records (the optional `index` section)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from render.errors import FatalError

PROFILE_PATH = Path("k8s-base") / "cluster-profile.yaml"


@dataclass(frozen=True)
class GpuType:
    name: str
    gpus_per_node: int
    gpu_memory_gib: int
    cpu_per_node: int
    memory_per_node_gib: int
    node_labels: dict[str, str] = field(default_factory=dict)


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
    ephemeral_size: str
    report_to: str
    mlflow_tracking_uri: str
    mlflow_ui: str
    queues: tuple[str, ...]
    priorities: tuple[str, ...]
    default_queue: str
    default_priority: str
    max_nodes: int
    gpu_types: dict[str, GpuType]
    raw: dict[str, Any]
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
        index = raw.get("index") or {}
        token_secret = str(index.get("token_secret") or "")
        remote = str(index.get("remote") or "")
        if "@" in urlsplit(remote).netloc and urlsplit(remote).scheme in ("http", "https"):
            raise FatalError(f"{PROFILE_PATH}: index.remote carries credentials; name the "
                             "remote without them and put the token in the Secret that "
                             "index.token_secret names")
        if token_secret and token_secret.count("/") != 1:
            raise FatalError(f"{PROFILE_PATH}: index.token_secret {token_secret!r} must be "
                             "<secret name>/<key>, e.g. ftops-index-token/token")
        return Profile(
            namespace=raw["namespace"],
            default_image=raw["default_image"],
            service_account=raw["service_account"],
            bucket=storage["bucket"],
            storage_root=storage["root"].rstrip("/"),
            default_storage=storage["default_profile"],
            storage_profiles=tuple(storage["profiles"]),
            pvc_claim=storage["pvc_claim"],
            ephemeral_size=storage["ephemeral_size"],
            report_to=trackers["report_to"],
            mlflow_tracking_uri=trackers["mlflow_tracking_uri"],
            mlflow_ui=trackers["mlflow_ui"],
            queues=tuple(raw["queues"]),
            priorities=tuple(raw["priorities"]),
            default_queue=raw["default_queue"],
            default_priority=raw["default_priority"],
            max_nodes=int(raw["max_nodes"]),
            gpu_types=gpu_types,
            raw=raw,
            index_remote=remote,
            index_branch=str(index.get("branch") or "main"),
            index_token_secret=token_secret,
        )
    except (KeyError, TypeError, AttributeError) as exc:
        raise FatalError(f"{PROFILE_PATH}: missing or malformed field {exc}") from None


# registry/path/name@sha256:<64 hex>: what `pin_default_image` accepts (nothing else can
# reach the profile's YAML through it).
PINNED_IMAGE = re.compile(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?"
                          r"(/[a-z0-9]+([._-][a-z0-9]+)*)+@sha256:[0-9a-f]{64}")


def pin_default_image(repo_root: Path, image: str) -> bool:
    """Point the profile's `default_image` at `image` (a digest reference), keeping the
    rest of the file byte for byte; False when it already was."""
    if not PINNED_IMAGE.fullmatch(image):
        raise FatalError(f"{image!r} is not an image pinned by digest "
                         "(<registry>/<path>@sha256:<64 hex digits>)")
    path = repo_root / PROFILE_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FatalError(f"{PROFILE_PATH}: not found under {repo_root}") from None
    lines = text.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith("default_image:")]
    if len(found) != 1:
        raise FatalError(f"{PROFILE_PATH}: expected one top-level `default_image:` line, "
                         f"found {len(found)}")
    new = f"default_image: {image}\n"
    if lines[found[0]] == new:
        return False
    lines[found[0]] = new
    path.write_text("".join(lines), encoding="utf-8")
    load_profile(repo_root)  # still a valid profile
    return True
