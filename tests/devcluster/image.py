"""Build the training image (the repository's root Dockerfile) without Docker, for the
real node's pods.

Three images, built with buildah (``--isolation chroot``: no daemon, no user namespaces)
into its own storage under ``~/.cache/ftops/image``, each rebuilt only when its inputs
change (the cache key is a hash of them; ``FTOPS_CACHE`` moves the root):

1. ``debian``: a Debian 12 minbase root filesystem with python3, venv, git and CA
   certificates, made by debootstrap from the Debian archive and imported with
   ``buildah from scratch``.
2. ``cpu-base``: ``tests/devcluster/cpu-base.Containerfile`` on (1), LLaMA-Factory 0.9.5
   and the training stack from PyPI at the versions of ``scripts/constraints.txt``: a CPU
   stand-in for LLaMA-Factory's CUDA image.
3. ``train``: the root ``Dockerfile`` with ``--build-arg BASE_IMAGE=<(2)>``, exactly as
   the image workflow builds it on the CUDA base.

The real node's containerd gets the train image's layers preloaded from buildah's
storage (hard links: no second copy of ~7 GB), and the kubelet pulls the image by digest
from ``devcluster.registry``, which serves its manifest and config (``layer_dirs``,
``write_manifest_layout``). Builds
hold a lock, so two test sessions never build into the same storage at once.

Behind a TLS-intercepting proxy the build's RUN steps need the host's CA bundle: it is
bind-mounted read-only over the image's. (pip's HTTP cache cannot help here: the proxy
strips the caching headers, so pip stores nothing to reuse.)
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

REPO_ROOT = Path(__file__).resolve().parents[2]
CPU_BASE_FILE = Path(__file__).resolve().parent / "cpu-base.Containerfile"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
DEBIAN_PACKAGES = ("python3", "python3-venv", "git", "ca-certificates")
# Bump to rebuild every image (e.g. after changing how they are made).
RECIPE_VERSION = 1

# The train image's inputs, relative to the repository root (plus every file under render/).
TRAIN_INPUTS = ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md",
                "scripts/constraints.txt")
IMAGE_REPOSITORY = "ftops/llamafactory"
"""Repository name the registry serves the train image under."""


class ImageError(RuntimeError):
    pass


def cache_root() -> Path:
    root = Path(os.environ.get("FTOPS_CACHE", Path.home() / ".cache" / "ftops"))
    return root / "image"


@dataclass(frozen=True)
class TrainImage:
    """The built train image in buildah's storage."""

    name: str  # localhost/ftops-train:<key>
    key: str
    digest: str  # its manifest's digest, as `export` serves it (uncompressed OCI)
    size_bytes: int  # the layers (uncompressed) and the config

    def reference(self, registry: str) -> str:
        return f"{registry}/{IMAGE_REPOSITORY}@{self.digest}"


# ------------------------------------------------------------------------------ keys


def _hash(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        data = p.encode() if isinstance(p, str) else p
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def debian_key() -> str:
    return _hash(str(RECIPE_VERSION), DEBIAN_SUITE, DEBIAN_MIRROR, *DEBIAN_PACKAGES)


def base_key() -> str:
    return _hash(debian_key(), CPU_BASE_FILE.read_bytes(),
                 (REPO_ROOT / "scripts/constraints.txt").read_bytes())


def _train_files(root: Path = REPO_ROOT) -> list[Path]:
    files = [root / p for p in TRAIN_INPUTS]
    files += sorted(p for p in (root / "render").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    return files


def train_key(root: Path = REPO_ROOT) -> str:
    parts: list[bytes | str] = [base_key()]
    for f in _train_files(root):
        parts += [str(f.relative_to(root)), f.read_bytes()]
    return _hash(*parts)


# ------------------------------------------------------------------------------ buildah


def _storage_flags() -> list[str]:
    root = cache_root()
    return ["--root", str(root / "storage"), "--runroot", str(root / "run"),
            "--storage-driver", "overlay"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("BUILDAH_ISOLATION", "chroot")
    # buildah's own files (registries, policy) come from /etc/containers (Debian package)
    return env


def buildah(*args: str, log: TextIO | None = None, check: bool = True,
            capture: bool = False) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("buildah")
    if exe is None:
        raise ImageError("buildah is not installed: run `bash scripts/setup.sh --dev` as root "
                         "(it installs the real node's Debian packages)")
    cmd = [exe, *_storage_flags(), *args]
    if log is not None:
        print(f"[image] $ {' '.join(cmd)}", file=log, flush=True)
    if capture or log is None:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env())
        if log is not None and proc.stdout:
            log.write(proc.stdout[-4000:])
    else:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, env=_env())
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout or "")[-6000:] if capture or log is None else \
            f"(see {getattr(log, 'name', 'the log')})"
        raise ImageError(f"buildah {' '.join(args[:2])} failed (exit {proc.returncode}): "
                         f"{detail}")
    return proc


def image_exists(name: str) -> bool:
    return buildah("inspect", "--type", "image", "--format", "{{.FromImageID}}", name,
                   check=False).returncode == 0


def _remove_other_tags(prefix: str, keep: str) -> list[str]:
    """Remove the images tagged `prefix...` but `keep`; the names removed."""
    out = buildah("images", "--format", "{{.Name}}:{{.Tag}}", check=False).stdout
    old = [name for name in out.split() if name.startswith(prefix) and name != keep]
    for name in old:
        buildah("rmi", name, check=False)
    return old


@contextlib.contextmanager
def _lock() -> Iterator[None]:
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _record_timing(name: str, seconds: float) -> None:
    path = cache_root() / "build-timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = round(seconds, 1)
    path.write_text(json.dumps(data, indent=2) + "\n")


def build_timings() -> dict[str, float]:
    path = cache_root() / "build-timings.json"
    return json.loads(path.read_text()) if path.exists() else {}


# ------------------------------------------------------------------------------ stages


def _debian(log: TextIO) -> str:
    name = f"localhost/ftops-debian:{debian_key()[:16]}"
    if image_exists(name):
        return name
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None:
        raise ImageError("debootstrap is not installed: run `bash scripts/setup.sh --dev` "
                         "as root")
    t = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ftops-rootfs-", dir=cache_root()) as tmp:
        rootfs = Path(tmp) / "rootfs"
        cmd = [debootstrap, "--variant=minbase", f"--include={','.join(DEBIAN_PACKAGES)}",
               DEBIAN_SUITE, str(rootfs), DEBIAN_MIRROR]
        print(f"[image] $ {' '.join(cmd)}", file=log, flush=True)
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            raise ImageError(f"debootstrap failed (exit {proc.returncode}); see "
                             f"{getattr(log, 'name', 'the log')}")
        # apt's caches are not part of an image
        shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
        for lists in (rootfs / "var/lib/apt/lists").glob("*_*"):
            lists.unlink()
        ctr = buildah("from", "scratch", capture=True).stdout.strip()
        try:
            mnt = buildah("mount", ctr, capture=True).stdout.strip()
            subprocess.run(["cp", "-a", f"{rootfs}/.", mnt], check=True)
            buildah("umount", ctr)
            buildah("config", "--env",
                    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "--env", "LANG=C.UTF-8", "--cmd", "/bin/bash", ctr)
            buildah("commit", "--rm", ctr, name, log=log)
        except BaseException:
            buildah("rm", ctr, check=False)
            raise
    _record_timing("debian (debootstrap + import)", time.monotonic() - t)
    _remove_other_tags("localhost/ftops-debian:", name)
    return name


def _bud(containerfile: Path, name: str, build_args: dict[str, str], log: TextIO,
         context: Path = REPO_ROOT, extra: tuple[str, ...] = ()) -> None:
    # --force-rm: a failed step's working container is removed too (it would stay
    # mounted in the storage the real node hard-links from)
    args = ["bud", "--isolation", "chroot", "--layers", "--pull-never", "--force-rm", "-f",
            str(containerfile), "-t", name]
    args += extra
    for k, v in build_args.items():
        args += ["--build-arg", f"{k}={v}"]
    if HOST_CA.is_file():
        args += ["-v", f"{HOST_CA}:/etc/ssl/certs/ca-certificates.crt:ro"]
    buildah(*args, str(context), log=log)


def _cpu_base(debian: str, log: TextIO) -> str:
    name = f"localhost/ftops-cpu-base:{base_key()[:16]}"
    if image_exists(name):
        return name
    t = time.monotonic()
    _bud(CPU_BASE_FILE, name, {"DEBIAN_IMAGE": debian}, log)
    _record_timing("cpu-base (LLaMA-Factory + torch from PyPI)", time.monotonic() - t)
    _remove_other_tags("localhost/ftops-cpu-base:", name)
    return name


def _manifest(name: str) -> tuple[str, int]:
    """(digest, size) of an image's manifest in storage: what an uncompressed OCI push of
    it serves (checked against the stored bytes by `write_manifest_layout`)."""
    out = buildah("inspect", "--type", "image", "--format", "{{.FromImageDigest}}\n"
                  "{{.Manifest}}", name, capture=True).stdout
    digest, _, manifest_text = out.partition("\n")
    manifest = json.loads(manifest_text)
    size = int(manifest["config"]["size"]) + sum(int(x["size"]) for x in manifest["layers"])
    return digest.strip(), size


def ensure_train_image(log: TextIO | None = None, root: Path = REPO_ROOT) -> TrainImage:
    """Build whatever is missing (`root`: the repository whose Dockerfile and sources to
    build); return the train image."""
    log = log or sys.stderr
    with _lock():
        key = train_key(root)
        name = f"localhost/ftops-train:{key[:16]}"
        if not image_exists(name):
            cache_root().mkdir(parents=True, exist_ok=True)
            base = _cpu_base(_debian(log), log)
            t = time.monotonic()
            _bud(root / "Dockerfile", name, {"BASE_IMAGE": base}, log, context=root)
            _record_timing("train (root Dockerfile)", time.monotonic() - t)
        if _remove_other_tags("localhost/ftops-train:", name):
            prune_stale_layers(log)  # also after a build whose process was stopped
        digest, size = _manifest(name)
        return TrainImage(name, key, digest, size)


def prune_stale_layers(log: TextIO | None = None) -> list[str]:
    """Remove the untagged images (``--layers`` build steps) whose layers no tagged image
    uses any more: the steps of earlier builds, e.g. a previous cpu-base's ~7 GB layer.
    The current builds' steps stay (the next build reuses them). Returns the images
    removed."""
    storage = cache_root() / "storage"
    try:
        images = json.loads((storage / "overlay-images" / "images.json").read_text())
        layers = json.loads((storage / "overlay-layers" / "layers.json").read_text())
    except (OSError, ValueError):
        return []
    parent = {str(layer["id"]): str(layer.get("parent") or "") for layer in layers}
    used: set[str] = set()
    for img in images:
        if img.get("names"):
            top = str(img.get("layer") or "")
            while top and top not in used:
                used.add(top)
                top = parent.get(top, "")
    stale = [str(img["id"]) for img in images
             if not img.get("names") and str(img.get("layer") or "") not in used]
    for image_id in stale:
        buildah("rmi", image_id, check=False, log=log)
    return stale


def time_train_build_uncached(log: TextIO | None = None, root: Path = REPO_ROOT) -> float:
    """Seconds to build the root Dockerfile's stage on the cached base without its build
    cache (`--no-cache`: ftops's dependencies and ftops installed again), as a cold
    build of that stage; the image is removed again. For scripts/bench_realnode.py."""
    log = log or sys.stderr
    with _lock():
        base = _cpu_base(_debian(log), log)
        name = f"localhost/ftops-train-bench:{os.getpid()}"
        t = time.monotonic()
        try:
            _bud(root / "Dockerfile", name, {"BASE_IMAGE": base}, log, context=root,
                 extra=("--no-cache",))
            return time.monotonic() - t
        finally:
            buildah("rmi", name, check=False)
            prune_stale_layers(log)


def _storage_image(name: str) -> tuple[str, str]:
    """(image id, manifest digest) of an image in buildah's storage."""
    images = json.loads((cache_root() / "storage" / "overlay-images" / "images.json")
                        .read_text())
    for img in images:
        if name in (img.get("names") or []):
            return str(img["id"]), str(img.get("digest") or "")
    raise ImageError(f"{name} is not in buildah's storage under {cache_root()}")


def _stored_blobs(img: TrainImage) -> tuple[bytes, bytes]:
    """(manifest, config) of an image, byte for byte as buildah stored them, checked
    against their digests."""
    image_id, digest = _storage_image(img.name)
    folder = cache_root() / "storage" / "overlay-images" / image_id
    manifest = (folder / "manifest").read_bytes()
    config_digest = json.loads(manifest)["config"]["digest"]
    config = (folder / ("=" + base64.b64encode(config_digest.encode()).decode())).read_bytes()
    for data, want in ((manifest, digest), (manifest, img.digest), (config, config_digest)):
        got = "sha256:" + hashlib.sha256(data).hexdigest()
        if got != want:
            raise ImageError(f"{img.name} in buildah's storage: a blob hashes to {got}, "
                             f"not {want} (has the storage format changed?)")
    return manifest, config


def write_manifest_layout(img: TrainImage, layout: Path, tag: str) -> None:
    """An OCI image layout with the image's manifest and config only, byte for byte as
    buildah stored them (checked against their digests): what a registry serves to a
    node that has the layers already (``layer_dirs``: the real node preloads them, as a
    GKE node preloads images from a secondary boot disk). The layers themselves would
    be a third ~7 GB copy on this disk."""
    manifest, config = _stored_blobs(img)
    parsed = json.loads(manifest)
    digest, config_digest = img.digest, parsed["config"]["digest"]
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest.split(":", 1)[1]).write_bytes(manifest)
    (blobs / config_digest.split(":", 1)[1]).write_bytes(config)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [{
        "mediaType": parsed.get("mediaType", "application/vnd.oci.image.manifest.v1+json"),
        "digest": digest, "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": tag}}]}))


def diff_ids(img: TrainImage) -> list[str]:
    """The image's layer digests (uncompressed), bottom first, from its config."""
    config = json.loads(_stored_blobs(img)[1])
    return [str(d) for d in config["rootfs"]["diff_ids"]]


def layer_dirs() -> dict[str, Path]:
    """diff digest -> the directory holding that layer's files in buildah's storage."""
    layers = cache_root() / "storage" / "overlay-layers" / "layers.json"
    out: dict[str, Path] = {}
    for layer in json.loads(layers.read_text()) if layers.exists() else []:
        digest = layer.get("diff-digest")
        if digest:
            out[digest] = cache_root() / "storage" / "overlay" / layer["id"] / "diff"
    return out


@contextlib.contextmanager
def layers_for_linking(log: TextIO | None = None) -> Iterator[dict[str, Path]]:
    """`layer_dirs()`, held still (the build lock) and ready to hard-link from: buildah's
    storage keeps its overlay folder as a private bind mount while in use, and a failed
    build of an older buildah can leave a working container mounted there; link() from
    a mount point to another fails with EXDEV ("Invalid cross-device link"). So working
    containers are removed (builds keep none) and those mounts undone first; buildah
    mounts them again when it next needs them."""
    with _lock():
        buildah("rm", "--all", check=False, log=log)
        overlay = str(cache_root() / "storage" / "overlay")
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        for point in sorted((p for p in points
                             if p == overlay or p.startswith(overlay + "/")),
                            key=lambda p: -p.count("/")):
            subprocess.run(["umount", point], capture_output=True)
        yield layer_dirs()


def build_pause_image(pause_c: Path, out: Path, log: TextIO | None = None) -> Path:
    """The pod sandbox image: Kubernetes' own pause.c (from the module cache), compiled
    static and wrapped in an image (docker-archive at ``out``) for ``ctr images import``."""
    log = log or sys.stderr
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _lock(), tempfile.TemporaryDirectory(prefix="ftops-pause-") as tmp:
        binary = Path(tmp) / "pause"
        subprocess.run(["gcc", "-Os", "-Wall", "-Werror", "-static", "-DVERSION=v3.10-ftops",
                        "-o", str(binary), str(pause_c)], check=True, stdout=log, stderr=log)
        subprocess.run(["strip", str(binary)], check=True)
        ctr = buildah("from", "scratch", capture=True).stdout.strip()
        try:
            buildah("copy", "--chmod", "0755", ctr, str(binary), "/pause")
            buildah("config", "--entrypoint", '["/pause"]', "--user", "65535:65535", ctr)
            buildah("commit", "--rm", ctr, PAUSE_IMAGE)
        except BaseException:
            buildah("rm", ctr, check=False)
            raise
        tmp_out = out.with_suffix(".tmp")
        buildah("push", "--format", "docker", PAUSE_IMAGE,
                f"docker-archive:{tmp_out}:{PAUSE_IMAGE}")
        os.replace(tmp_out, out)
    return out


PAUSE_IMAGE = "localhost/pause:3.10-ftops"
"""The sandbox image containerd is configured with (imported, never pulled)."""


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Build the training image with buildah (cached)")
    ap.parse_args(argv)
    t = time.monotonic()
    img = ensure_train_image()
    print(json.dumps({"image": img.name, "digest": img.digest, "size_bytes": img.size_bytes,
                      "seconds": round(time.monotonic() - t, 1),
                      "timings": build_timings()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
