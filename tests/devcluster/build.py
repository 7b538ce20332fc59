"""Build the control-plane binaries from the Go module proxy, once per machine.

Each component is a tiny wrapper module in ``go/<component>/`` that requires the upstream
module at a pinned version; ``go build`` compiles its main packages into
``~/.cache/ftops/cluster-<versions>/bin``. GOPATH/GOMODCACHE stay at their defaults
so downloads and the build cache are shared across runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from devcluster import versions

GO_DIR = Path(__file__).resolve().parent / "go"


def cache_dir() -> Path:
    root = Path(os.environ.get("FTOPS_CACHE", Path.home() / ".cache" / "ftops"))
    return root / f"cluster-{versions.version_tag()}"


def bin_dir() -> Path:
    return cache_dir() / "bin"


def binary(name: str) -> Path:
    return bin_dir() / name


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("`go` not found on PATH: the devcluster binaries are built with Go")
    return go


def _ldflags(component: str) -> str:
    flags = "-s -w"
    if versions.module_dir(component) == "kubernetes":
        v = versions.KUBERNETES
        major, minor = v[1:].split(".")[:2]
        pkg = "k8s.io/component-base/version"
        flags += (
            f" -X {pkg}.gitVersion={v} -X {pkg}.gitMajor={major} -X {pkg}.gitMinor={minor}"
            f" -X {pkg}.gitTreeState=clean -X {pkg}.buildDate=1970-01-01T00:00:00Z"
            f" -X k8s.io/client-go/pkg/version.gitVersion={v}"
            f" -X k8s.io/client-go/pkg/version.gitMajor={major}"
            f" -X k8s.io/client-go/pkg/version.gitMinor={minor}"
        )
    return flags


# Build-time source patches, applied with ``go build -overlay`` (nothing is copied into the
# repository). Go refuses overlays of files in the module cache, so a patched main package
# is overlaid as a new package inside the wrapper module (``./patched/<name>``), which
# then replaces the upstream main package in the build. Only single-file main packages
# without internal imports can be patched this way.
# component -> [(main package, its only file, old text, new text)]
_PATCHES: dict[str, list[tuple[str, str, str, str]]] = {
    # Without internal cert management Kueue reads its metrics serving cert from a fixed
    # /etc path; let the harness point it at its own cert directory.
    "kueue": [
        (
            "sigs.k8s.io/kueue/cmd/kueue",
            "main.go",
            'metricsCertPath := "/etc/kueue/metrics/certs"',
            'metricsCertPath := os.Getenv("KUEUE_METRICS_CERT_DIR")\n'
            '\t\tif metricsCertPath == "" {\n'
            '\t\t\tmetricsCertPath = "/etc/kueue/metrics/certs"\n'
            "\t\t}",
        )
    ],
}


def _overlay(
    component: str, env: dict[str, str], workdir: Path, pkgs: list[str]
) -> tuple[list[str], list[str]]:
    """Write the overlay for a component's patches; return (go build flags, packages)."""
    patches = _PATCHES.get(component, [])
    if not patches:
        return [], pkgs
    moddir = GO_DIR / versions.module_dir(component)
    replace: dict[str, str] = {}
    pkgs = list(pkgs)
    for pkg, fname, old, new in patches:
        out = subprocess.run(
            [_go(), "list", "-f", "{{.Dir}}", pkg],
            cwd=moddir,
            env=env,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise RuntimeError(f"go list {pkg} failed:\n{out.stderr[-4000:]}")
        src = Path(out.stdout.strip()) / fname
        text = src.read_text()
        if old not in text:
            raise RuntimeError(f"patch for {component} does not apply: {old!r} not in {src}")
        patched = workdir / "overlay" / pkg.replace("/", "_") / fname
        patched.parent.mkdir(parents=True, exist_ok=True)
        patched.write_text(text.replace(old, new, 1))
        virtual = moddir / "patched" / pkg.rsplit("/", 1)[-1] / fname
        replace[str(virtual)] = str(patched)
        pkgs[pkgs.index(pkg)] = "./" + str(virtual.parent.relative_to(moddir))
    ov = workdir / "overlay.json"
    ov.write_text(json.dumps({"Replace": replace}))
    return [f"-overlay={ov}"], pkgs


def build_component(component: str, out: Path, log: TextIO = sys.stderr) -> float:
    """Build one component's binaries into ``out``; return the seconds it took."""
    _module, _version, pkgs, names = versions.all_components()[component]
    moddir = GO_DIR / versions.module_dir(component)
    env = dict(os.environ)
    # go.mod/go.sum are committed and complete: the default -mod=readonly applies
    env["CGO_ENABLED"] = "0"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    target = str(out) + os.sep if len(pkgs) > 1 else str(out / names[0])
    extra, pkgs = _overlay(component, env, out, pkgs)
    cmd = [_go(), "build", "-trimpath", f"-ldflags={_ldflags(component)}", *extra]
    cmd += ["-o", target, *pkgs]
    print(f"[devcluster] building {component}: {' '.join(cmd)}", file=log, flush=True)
    proc = subprocess.run(cmd, cwd=moddir, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(
            f"go build of {component} ({_module}@{_version}) failed:\n{proc.stderr[-6000:]}"
        )
    dt = time.monotonic() - t0
    print(f"[devcluster] built {component} in {dt:.0f}s", file=log, flush=True)
    return dt


def ensure_built(components: list[str] | None = None, log: TextIO = sys.stderr) -> Path:
    """Build whatever binaries are missing (default: the control plane's); return the
    bin directory."""
    bdir = bin_dir()
    comps = components or list(versions.COMPONENTS)
    timings: dict[str, float] = {}
    for comp in comps:
        names = versions.all_components()[comp][3]
        if all((bdir / n).exists() for n in names):
            continue
        tmp = cache_dir() / f"tmp-{comp}-{os.getpid()}"
        timings[comp] = build_component(comp, tmp, log=log)
        bdir.mkdir(parents=True, exist_ok=True)
        for n in names:
            os.replace(tmp / n, bdir / n)
        shutil.rmtree(tmp, ignore_errors=True)
    if timings:
        rec = cache_dir() / "build-timings.json"
        old = json.loads(rec.read_text()) if rec.exists() else {}
        old.update(timings)
        rec.write_text(json.dumps(old, indent=2))
    return bdir


def build_timings() -> dict[str, float]:
    rec = cache_dir() / "build-timings.json"
    return json.loads(rec.read_text()) if rec.exists() else {}


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Build the devcluster binaries")
    ap.add_argument("components", nargs="*",
                    help=f"subset of {sorted(versions.all_components())}")
    args = ap.parse_args(argv)
    unknown = set(args.components) - set(versions.all_components())
    if unknown:
        ap.error(f"unknown components: {sorted(unknown)}")
    t0 = time.monotonic()
    bdir = ensure_built(args.components or None)
    print(f"binaries in {bdir} ({time.monotonic() - t0:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
