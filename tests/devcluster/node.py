"""A real node in the local cluster: containerd, runc and CNI from Debian, kubelet and
kube-proxy built from the control plane's Kubernetes module, CoreDNS from the Go module
proxy, joined to a running ``DevCluster``.

What it sets up on this machine (root only; one real node per machine at a time, under
a lock), and takes down again in ``down`` (also at the next ``up`` after a crash, from
the state file):

- a bridge ``ftops0`` with ``10.88.0.1/24``: the pods' network (CNI ``bridge`` +
  ``host-local``, config in the node's work directory) and the host's address seen from
  pods: node IP, cluster DNS, and whatever a test serves to pods (a git remote);
- containerd (Debian's, started as a plain process: there is no systemd) with its state
  under ``/run/ftops-node`` and its image store in ``~/.cache/ftops/node`` (images survive
  sessions), ``restrict_oom_score_adj`` (processes here lack CAP_SYS_RESOURCE), the pause
  image built from Kubernetes' pause.c, and the training image: its layers preloaded
  from buildah's storage as hard links (no second ~7 GB copy), its manifest and config
  pulled by the kubelet, by digest, from a plain-HTTP registry (``devcluster.registry``,
  named ``registry.ftops.test`` in containerd's hosts directory);
- kubelet (cgroup v1: ``failCgroupV1: false``; cgroupfs driver under the cgroup root
  ``/ftops-node``), registered as ``cpu-node-0`` with its own ``system:node`` identity, the
  ``NodeRestriction`` admission plugin and webhook authn/authz of its API;
- kube-proxy (iptables mode) for ClusterIP Services, CoreDNS on the host at 10.88.0.1 for
  ``cluster.local`` (JobSet's headless Service: ``MASTER_ADDR``).

Teardown: pods deleted, kube-proxy ``--cleanup``, every process stopped by pid (containerd's
shims included), every mount under the node's directories unmounted, the bridge deleted,
the iptables chains it created removed (iptables and ip6tables), sysctls it changed set
back, its cgroups removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from devcluster import build, image, pki, registry, versions
from devcluster.cluster import ClusterError, DevCluster, Proc, _child_env, _terminate
from render.manifests.validate import module_dir
from render.ports import free_port

NODE_NAME = pki.NODE_NAME
BRIDGE = "ftops0"
SUBNET = "10.88.0.0/24"
GATEWAY = "10.88.0.1"
"""The host on the pods' bridge: node IP, cluster DNS, and services tests run for pods."""
CGROUP_ROOT = "ftops-node"
STATE_DIR = Path("/run/ftops-node")
LOCK_FILE = Path("/run/lock/ftops-node.lock")
NODE_LABEL = "ftops.dev/real-node"

# What must be on PATH (or at this path), and the Debian package that has it.
REQUIRED: dict[str, str] = {
    "containerd": "containerd",
    "containerd-shim-runc-v2": "containerd",
    "ctr": "containerd",
    "runc": "runc",
    "/usr/lib/cni/bridge": "containernetworking-plugins",
    "/usr/lib/cni/host-local": "containernetworking-plugins",
    "/usr/lib/cni/loopback": "containernetworking-plugins",
    "iptables": "iptables",
    "ip6tables": "iptables",
    "conntrack": "conntrack",
    "ip": "iproute2",
    "buildah": "buildah",
    "debootstrap": "debootstrap",
    "gcc": "gcc",
}
SYSCTLS = ("net/ipv4/ip_forward", "net/ipv4/conf/all/route_localnet",
           "net/bridge/bridge-nf-call-iptables")
IPTABLES_TABLES = ("filter", "nat", "mangle", "raw")
OWNED_CHAIN_PREFIXES = ("KUBE-", "CNI-")
# Directories the kubelet creates wherever its --root-dir is.
KUBELET_FIXED_DIRS = ("/var/lib/kubelet", "/var/log/pods", "/var/log/containers")
CONTAINERD_FIXED_DIRS = ("/run/containerd",)  # shim sockets: /run/containerd/s/


class NodeError(ClusterError):
    pass


def missing_prerequisites() -> list[str]:
    """Human-readable list of what this machine lacks for the real node."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (the node configures network interfaces, mounts and cgroups)")
    packages = sorted({pkg for exe, pkg in REQUIRED.items()
                       if not (Path(exe).exists() if exe.startswith("/") else shutil.which(exe))})
    if packages:
        missing.append("Debian packages " + " ".join(packages))
    if not Path("/proc/sys/net/bridge").exists():
        missing.append("the br_netfilter kernel module (modprobe br_netfilter)")
    return missing


def cache_dir() -> Path:
    root = Path(os.environ.get("FTOPS_CACHE", Path.home() / ".cache" / "ftops"))
    return root / "node"


def _run(*cmd: str, check: bool = True, timeout: float = 120,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout,
                          input=input, env=_child_env())
    if check and proc.returncode != 0:
        raise NodeError(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()[-3000:]}")
    return proc


def _read_sysctl(name: str) -> str | None:
    try:
        return Path("/proc/sys", name).read_text().strip()
    except OSError:
        return None


def _write_sysctl(name: str, value: str) -> None:
    with contextlib.suppress(OSError):
        Path("/proc/sys", name).write_text(value)


def _chains(exe: str) -> dict[str, list[str]]:
    """table -> chain names (user-defined and built-in) in iptables/ip6tables."""
    out: dict[str, list[str]] = {}
    for table in IPTABLES_TABLES:
        proc = _run(exe, "-w", "-t", table, "-S", check=False)
        if proc.returncode != 0:
            continue
        out[table] = [line.split()[1] for line in proc.stdout.splitlines()
                      if line.startswith(("-N ", "-P "))]
    return out


def _cgroup_hierarchies() -> list[Path]:
    """Mounted cgroup hierarchies: v1 (one per controller set, name=systemd) and the v2
    `unified` one (runc creates a container's cgroup in each)."""
    base = Path("/sys/fs/cgroup")
    out = []
    for d in sorted(base.iterdir()) if base.is_dir() else []:
        if d.is_dir() and not d.is_symlink() and \
                (d / "cgroup.procs").exists():
            out.append(d)
    return out


def _mounts_under(prefixes: list[str]) -> list[str]:
    """Mount points under any of the prefixes, deepest first."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if any(point == p or point.startswith(p.rstrip("/") + "/") for p in prefixes):
                points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


@dataclass
class NodeState:
    """What `up` changed, written before each change so a crashed session's leftovers
    can be undone by the next `up` (or `scripts/devcluster down`)."""

    workdir: str
    sysctls: dict[str, str | None] = field(default_factory=dict)
    chains: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    created_dirs: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)
    bridge: bool = False
    cgroups: bool = False

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        (STATE_DIR / "state.json").write_text(json.dumps(self.__dict__, indent=2))

    @classmethod
    def load(cls) -> NodeState | None:
        try:
            return cls(**json.loads((STATE_DIR / "state.json").read_text()))
        except (OSError, ValueError, TypeError):
            return None


class RealNode:
    """``RealNode(cluster).up()`` ... ``down()``; ``image_ref`` is the training image as
    the node pulls it (by digest, from the harness's registry)."""

    def __init__(self, cluster: DevCluster, workdir: Path | None = None,
                 log: TextIO | None = None, lock_timeout: float = 3600.0) -> None:
        self.cluster = cluster
        self.workdir = workdir or cluster.workdir / "node"
        self.log = log or sys.stderr
        self.lock_timeout = lock_timeout
        self.procs: list[Proc] = []
        self.ports: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.registry: registry.Registry | None = None
        self.train_image: image.TrainImage | None = None
        self.state: NodeState | None = None
        self._lock_fd: int | None = None

    # -------------------------------------------------------------- paths and names

    @property
    def containerd_sock(self) -> Path:
        return STATE_DIR / "containerd" / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.workdir / "kubelet"

    @property
    def image_ref(self) -> str:
        assert self.train_image is not None
        return self.train_image.reference(registry.NAME)

    def ctr(self, *args: str, check: bool = True, timeout: float = 600
            ) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(self.containerd_sock), "-n", "k8s.io", *args,
                    check=check, timeout=timeout)

    # -------------------------------------------------------------- lock

    def _acquire_lock(self) -> None:
        self._lock_fd = acquire_lock(self.lock_timeout, self.log)

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            release_lock(self._lock_fd)
            self._lock_fd = None

    # -------------------------------------------------------------- up

    def up(self) -> RealNode:
        missing = missing_prerequisites()
        if missing:
            raise NodeError("the real node cannot start on this machine: it needs "
                            + "; ".join(missing)
                            + ". `bash scripts/setup.sh --dev` (as root) installs the packages")
        self._acquire_lock()
        try:
            clean_up_after_crash(self.log)
            self._up()
        except BaseException:
            self.down()
            raise
        return self

    def _time(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.monotonic() - t0, 1)

    def _up(self) -> None:
        t_start = time.monotonic()
        if self.workdir.exists():
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True)
        st = self.state = NodeState(str(self.workdir))
        st.sysctls = {n: _read_sysctl(n) for n in SYSCTLS}
        st.chains = {exe: _chains(exe) for exe in ("iptables", "ip6tables")}
        for d in (*KUBELET_FIXED_DIRS, *CONTAINERD_FIXED_DIRS):
            if not Path(d).exists():
                st.created_dirs.append(d)
        st.save()

        t = time.monotonic()
        bindir = build.ensure_built(["node", "coredns"], log=self.log)
        self._time("build node binaries (cached)", t)
        t = time.monotonic()
        pause_c = module_dir("k8s.io/kubernetes", versions.KUBERNETES) / \
            "build/pause/linux/pause.c"
        pause_tar = image.build_pause_image(pause_c, cache_dir() / "pause-3.10-ftops.tar",
                                            log=self.log)
        self.train_image = image.ensure_train_image(log=self.log)
        self._time("images (cached)", t)

        t = time.monotonic()
        self._bridge()
        self._cgroups()
        self._time("bridge + cgroups", t)

        t = time.monotonic()
        self._containerd()
        self.ctr("images", "import", str(pause_tar))
        self._forget_old_images()
        self._time("containerd", t)

        t = time.monotonic()
        self._coredns(bindir / f"coredns-{versions.COREDNS}")
        self._time("coredns", t)

        t = time.monotonic()
        self._kubelet(bindir / "kubelet")
        self._time("kubelet (node Ready)", t)

        t = time.monotonic()
        self._kube_proxy(bindir / "kube-proxy")
        self._time("kube-proxy", t)
        self.timings["total_up"] = round(time.monotonic() - t_start, 1)

        t = time.monotonic()
        self._pull_train_image()
        self._time("training image into containerd", t)

    def _start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        p = Proc(name, argv, self.workdir / "logs" / f"{name}.log",
                 env={**_child_env(), **(env or {})},
                 die_with_parent=self.cluster.options.die_with_parent)
        p.start()
        self.procs.append(p)
        assert self.state is not None
        self.state.pids[name] = p.pid
        self.state.save()
        return p

    def _bridge(self) -> None:
        assert self.state is not None
        self.state.bridge = True
        self.state.save()
        create_bridge(self.log)

    def _cgroups(self) -> None:
        assert self.state is not None
        self.state.cgroups = True
        self.state.save()
        for h in _cgroup_hierarchies():
            d = h / CGROUP_ROOT
            d.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):  # a new cpuset starts empty
                if (h / name).exists() and not (d / name).read_text().strip():
                    (d / name).write_text((h / name).read_text())

    def _containerd(self) -> None:
        state = STATE_DIR / "containerd"
        root = cache_dir() / "containerd"
        root.mkdir(parents=True, exist_ok=True)
        cni = self.workdir / "cni"
        (cni / "net.d").mkdir(parents=True)
        (cni / "net.d" / "10-ftops.conflist").write_text(json.dumps(cni_config(cni), indent=2))
        hosts = self.workdir / "certs.d"
        hosts.mkdir()
        cfg = self.workdir / "containerd.toml"
        cfg.write_text(containerd_config(root, state, cni, hosts))
        proc = self._start("containerd", ["containerd", "--config", str(cfg)])
        self._wait("containerd", lambda: self.ctr("version", check=False).returncode == 0,
                   [proc], 60)

    def _forget_old_images(self) -> None:
        """Drop every image but the current training image and the pause image (earlier
        builds, under each name the CRI gave them: repository@digest and sha256:<id>);
        containerd's garbage collector then frees the snapshots no image uses, which
        hold the only remaining links to an old image's files."""
        assert self.train_image is not None
        rows = [line.split() for line in
                self.ctr("images", "ls", check=False).stdout.splitlines()[1:]]
        keep = {self.train_image.digest} | {r[2] for r in rows
                                           if len(r) > 2 and r[0] == image.PAUSE_IMAGE}
        old = [r[0] for r in rows if len(r) > 2 and r[2] not in keep]
        if old:
            self.ctr("images", "rm", *old, check=False)

    def _coredns(self, exe: Path) -> None:
        health, ready = free_port(), free_port()
        self.ports.update(coredns_health=health, coredns_ready=ready)
        corefile = self.workdir / "Corefile"
        corefile.write_text(coredns_corefile(self.cluster.kubeconfig, health, ready))
        proc = self._start("coredns", [str(exe), "-conf", str(corefile)])
        self._wait("CoreDNS ready",
                   lambda: self.cluster._http_ok(f"http://127.0.0.1:{ready}/ready"), [proc], 60)

    def _node_kubeconfig(self, name: str, crt: Path, key: Path) -> Path:
        assert self.cluster._pki is not None
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "devcluster", "cluster": {
                "server": self.cluster.server,
                "certificate-authority": str(self.cluster._pki.ca_crt)}}],
            "users": [{"name": name, "user": {"client-certificate": str(crt),
                                              "client-key": str(key)}}],
            "contexts": [{"name": "devcluster",
                          "context": {"cluster": "devcluster", "user": name}}],
            "current-context": "devcluster"}, sort_keys=False))
        return path

    def _kubelet(self, exe: Path) -> None:
        p = self.cluster._pki
        assert p is not None
        port, healthz = free_port(), free_port()
        self.ports.update(kubelet=port, kubelet_healthz=healthz)
        cfg = self.workdir / "kubelet.yaml"
        cfg.write_text(yaml.safe_dump(kubelet_config(
            self.containerd_sock, p.ca_crt, port, healthz, self.workdir / "pod-logs"),
            sort_keys=False))
        kc = self._node_kubeconfig("kubelet", p.node_crt, p.node_key)
        self.kubelet_root.mkdir(parents=True)
        proc = self._start("kubelet", [
            str(exe), f"--config={cfg}", f"--kubeconfig={kc}",
            f"--root-dir={self.kubelet_root}", f"--cert-dir={self.workdir / 'kubelet-pki'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={GATEWAY}",
            f"--node-labels={NODE_LABEL}=true", "--v=1"])
        self._wait(f"node {NODE_NAME} Ready", self._node_ready, [proc], 120)

    def _node_ready(self) -> bool:
        from kubernetes import client

        node = client.CoreV1Api(self.cluster.api_client()).read_node(NODE_NAME)
        return any(c.type == "Ready" and c.status == "True"
                   for c in node.status.conditions or [])

    def _kube_proxy(self, exe: Path) -> None:
        p = self.cluster._pki
        assert p is not None
        healthz, metrics = free_port(), free_port()
        self.ports.update(kube_proxy_healthz=healthz)
        kc = self._node_kubeconfig("kube-proxy", p.proxy_crt, p.proxy_key)
        cfg = self.workdir / "kube-proxy.yaml"
        cfg.write_text(yaml.safe_dump(kube_proxy_config(kc, healthz, metrics), sort_keys=False))
        proc = self._start("kube-proxy", [str(exe), f"--config={cfg}", "--v=1"])
        self._wait("kube-proxy /healthz",
                   lambda: self.cluster._http_ok(f"http://127.0.0.1:{healthz}/healthz"),
                   [proc], 60)

    def _wait(self, what: str, check: Any, procs: list[Proc], timeout: float) -> None:
        self.cluster._wait(what, check, procs, timeout)

    def _pull_train_image(self) -> None:
        """Unless containerd has it from an earlier session: preload the image's layers
        into containerd's snapshotter as hard links to buildah's files (no second copy of
        ~7 GB; like a GKE node's secondary boot disk), then have the kubelet pull the
        image by digest from the registry, which serves its manifest and config."""
        listed = self.ctr("images", "ls", "-q", check=False).stdout.split()
        if self.image_ref in listed:
            return
        assert self.train_image is not None
        t = time.monotonic()
        pinned = self._preload_layers()
        self.timings["preload layers"] = round(time.monotonic() - t, 1)
        layout = self.workdir / "registry"
        image.write_manifest_layout(self.train_image, layout, "train")
        self.registry = registry.Registry(layout, image.IMAGE_REPOSITORY).start()
        try:
            registry.containerd_hosts(self.workdir / "certs.d", self.registry.address)
            self.timings["pull (kubelet)"] = round(self.pull(), 1)
        finally:
            self.registry.stop()
            self.registry = None
            for name in pinned:  # the image holds them now
                self._snapshots("label", name, "containerd.io/gc.root=", check=False)

    def _snapshots(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.ctr("snapshots", "--snapshotter", "overlayfs", *args, check=check)

    def _preload_layers(self) -> list[str]:
        """Commit each layer containerd lacks as the snapshot the unpacker looks for
        (named by its chain id), filled by `cp -a --link` from buildah's unpacked layer
        (both use overlayfs' whiteout format). Returns the snapshots created, pinned with
        a gc.root label until an image refers to them."""
        assert self.train_image is not None
        # a preload that failed half-way left its active snapshot (pinned): drop it
        listed = self._snapshots("ls", check=False).stdout.splitlines()[1:]
        stale = [line.split()[0] for line in listed if line.startswith("ftops-preload-")]
        for key in stale:
            self._snapshots("rm", key, check=False)
        ids = image.diff_ids(self.train_image)
        with image.layers_for_linking(self.log) as dirs:
            return self._link_layers(ids, dirs)

    def _link_layers(self, ids: list[str], dirs: dict[str, Path]) -> list[str]:
        assert self.train_image is not None
        created: list[str] = []
        parent = ""
        for i, diff_id in enumerate(ids):
            chain = diff_id if not parent else \
                "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()
            if self._snapshots("info", chain, check=False).returncode != 0:
                source = dirs.get(diff_id)
                if source is None:
                    raise NodeError(f"layer {diff_id} of {self.train_image.name} is not in "
                                    "buildah's storage")
                key = f"ftops-preload-{os.getpid()}-{i}"
                mounts = json.loads(self._snapshots("prepare", "--mounts", key,
                                                    *([parent] if parent else [])).stdout)
                self._snapshots("label", key, "containerd.io/gc.root=preload")
                target = _snapshot_dir(mounts)
                _run("cp", "-a", "--link", f"{source}/.", f"{target}/", timeout=600)
                self._snapshots("commit", chain, key)
                self._snapshots("label", chain, "containerd.io/gc.root=preload")
                created.append(chain)
            parent = chain
        return created

    def pull(self, namespace: str = "default", timeout: float = 1800) -> float:
        """Have the kubelet pull the training image now (a pod that runs `true` in it),
        so tests time their pods, not the pull; seconds."""
        from kubernetes import client

        v1 = client.CoreV1Api(self.cluster.api_client())
        name = f"prepull-{os.getpid()}"
        t = time.monotonic()
        v1.create_namespaced_pod(namespace, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"restartPolicy": "Never", "nodeName": NODE_NAME,
                     "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "pull", "image": self.image_ref,
                                     "imagePullPolicy": "IfNotPresent", "command": ["true"],
                                     "resources": {"requests": {"cpu": "10m"}}}]}})
        try:
            def done() -> bool:
                phase = v1.read_namespaced_pod(name, namespace).status.phase
                if phase == "Failed":
                    raise NodeError(f"pod {name} failed to run the training image")
                return bool(phase == "Succeeded")

            deadline = time.monotonic() + timeout
            while not done():
                if time.monotonic() > deadline:
                    raise NodeError(f"the kubelet did not pull {self.image_ref} in "
                                    f"{timeout:.0f}s; see {self.workdir / 'logs'}")
                time.sleep(1)
        finally:
            v1.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        return time.monotonic() - t

    # -------------------------------------------------------------- down

    def down(self) -> None:
        try:
            self._delete_pods()
            if self.state is not None:
                teardown(self.state, log=self.log, procs=self.procs)
            self.procs.clear()
            if self.registry is not None:
                self.registry.stop()
                self.registry = None
            self._delete_node()
        finally:
            self.state = None
            self._release_lock()

    def _delete_node(self) -> None:
        """The Node object, once its kubelet is stopped: the cluster outlives the node
        (other tests of the session use it), and a stopped node would look Ready to the
        scheduler until the node controller's grace period runs out."""
        try:
            from kubernetes import client
            from kubernetes.client.exceptions import ApiException

            try:
                client.CoreV1Api(self.cluster.api_client()).delete_node(NODE_NAME)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        except Exception as exc:  # noqa: BLE001 (teardown goes on regardless)
            _say(self.log, f"[node] could not delete the Node {NODE_NAME}: {exc}")

    def _delete_pods(self) -> None:
        """Let the kubelet tear its pods down properly (CNI DEL, unmounts) first."""
        if not any(p.name == "kubelet" and p.alive() for p in self.procs):
            return
        try:
            from kubernetes import client

            v1 = client.CoreV1Api(self.cluster.api_client())
            sel = f"spec.nodeName={NODE_NAME}"
            for pod in v1.list_pod_for_all_namespaces(field_selector=sel).items:
                with contextlib.suppress(Exception):
                    v1.delete_namespaced_pod(pod.metadata.name, pod.metadata.namespace,
                                             grace_period_seconds=0)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if not v1.list_pod_for_all_namespaces(field_selector=sel).items:
                    break
                time.sleep(1)
        except Exception as exc:  # noqa: BLE001 (teardown goes on regardless)
            _say(self.log, f"[node] could not delete the node's pods: {exc}")


def acquire_lock(timeout: float, log: TextIO = sys.stderr) -> int:
    """The machine's real-node lock (one node per machine), waiting up to `timeout`
    seconds for another session's; returns the locked file descriptor."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                holder = Path(LOCK_FILE).read_text().strip() or "?"
                raise NodeError(
                    f"another session has held the real node for over {timeout:.0f}s "
                    f"({LOCK_FILE}: pid {holder}); one real node runs per machine at a "
                    "time") from None
            if not told:
                print(f"[node] waiting for {LOCK_FILE} (another session's real node)",
                      file=log, flush=True)
                told = True
            time.sleep(2)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def clean_up_after_crash(log: TextIO = sys.stderr) -> bool:
    """Undo what a killed session's node left (its state file says what), as `up` does
    first; hold the lock. False when there was nothing to undo."""
    leftover = NodeState.load()
    if leftover is None:
        return False
    print("[node] cleaning up after an earlier session", file=log, flush=True)
    teardown(leftover, log=log)
    return True


def teardown(state: NodeState, log: TextIO = sys.stderr, procs: list[Proc] | None = None
             ) -> None:
    """Undo everything `up` did, as recorded in ``state``; idempotent."""
    workdir = Path(state.workdir)
    # processes: ours (pids recorded), then containerd's shims and their containers
    pids = [p.pid for p in reversed(procs or []) if p.popen is not None]
    for name, pid in reversed(list(state.pids.items())):
        exe = {"containerd": "containerd", "kubelet": "kubelet", "kube-proxy": "kube-proxy",
               "coredns": "coredns"}.get(name, name)
        try:
            cmd0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except OSError:
            continue
        if exe in Path(cmd0).name and pid not in pids:
            pids.append(pid)
    _terminate([p for p in pids if p != os.getpid()], timeout=15)
    _kill_shims()
    # kube-proxy's own cleanup of its rules (it is stopped: nothing re-adds them)
    proxy = build.binary("kube-proxy")
    if proxy.exists():
        _run(str(proxy), "--cleanup", check=False, timeout=60)
    # mounts (pod volumes, rootfs, netns, the kubelet's bind mount of its root)
    prefixes = [str(workdir), str(STATE_DIR), "/run/containerd"]
    for point in _mounts_under(prefixes):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)
    # network
    if state.bridge:
        _delete_bridge()
    for exe, before in state.chains.items():
        _remove_new_chains(exe, before)
    for name, value in state.sysctls.items():
        if value is not None:
            _write_sysctl(name, value)
    # cgroups (children first)
    if state.cgroups:
        for h in _cgroup_hierarchies():
            root = h / CGROUP_ROOT
            if root.is_dir():
                for d in sorted((p for p in root.rglob("*") if p.is_dir()),
                                key=lambda p: -len(p.parts)):
                    with contextlib.suppress(OSError):
                        d.rmdir()
                with contextlib.suppress(OSError):
                    root.rmdir()
    # directories
    for created in state.created_dirs:
        shutil.rmtree(created, ignore_errors=True)
    shutil.rmtree(workdir, ignore_errors=True)
    shutil.rmtree(STATE_DIR / "containerd", ignore_errors=True)
    with contextlib.suppress(OSError):
        (STATE_DIR / "state.json").unlink()
    with contextlib.suppress(OSError):
        STATE_DIR.rmdir()
    _say(log, "[node] torn down")


def _say(log: TextIO, text: str) -> None:
    """Print during teardown, which must go on even when `log` is gone (pytest closes
    its captured stderr when a run is interrupted)."""
    with contextlib.suppress(ValueError, OSError):
        print(text, file=log, flush=True)


def create_bridge(log: TextIO = sys.stderr) -> None:
    """The pods' bridge with the gateway address; a stale one of the same name (a
    session that crashed before it recorded its state) is ours by name: replaced."""
    if Path("/sys/class/net", BRIDGE).exists():
        print(f"[node] removing a stale bridge {BRIDGE}", file=log, flush=True)
        _delete_bridge()
    prefix = ipaddress.ip_network(SUBNET).prefixlen
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    _run("ip", "addr", "add", f"{GATEWAY}/{prefix}", "dev", BRIDGE)
    _run("ip", "link", "set", BRIDGE, "up")
    # pod -> ClusterIP -> pod on the same bridge needs the bridge's traffic to pass
    # iptables (kube-proxy's DNAT); the bridge plugin enables forwarding itself
    _write_sysctl("net/bridge/bridge-nf-call-iptables", "1")


def _delete_bridge() -> None:
    """The pods' bridge and the host ends of veths still attached to it (a pod whose
    sandbox was never torn down leaves one)."""
    listed = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE],
                            capture_output=True, text=True).stdout
    for line in listed.splitlines():
        name = line.split(":", 2)[1].strip().split("@", 1)[0]
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)


def _snapshot_dir(mounts: list[dict[str, Any]]) -> str:
    """The writable directory of a prepared snapshot, from its mounts: overlayfs'
    upperdir, or the bind mount of a snapshot without parent."""
    for m in mounts:
        for opt in m.get("Options") or m.get("options") or []:
            if opt.startswith("upperdir="):
                return str(opt[len("upperdir="):])
    for m in mounts:
        if (m.get("Type") or m.get("type")) == "bind":
            return str(m.get("Source") or m.get("source"))
    raise NodeError(f"cannot tell a prepared snapshot's directory from its mounts {mounts}")


def _kill_shims() -> None:
    """containerd-shim-runc-v2 processes of our containerd, and what they run."""
    address = str(STATE_DIR / "containerd" / "containerd.sock")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and address.encode() in argv:
            pid = int(proc.name)
            children = [int(c) for c in _children(pid)]
            for p in [*children, pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)


def _children(pid: int) -> list[str]:
    out = []
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        for t in tasks:
            with contextlib.suppress(OSError):
                out += (t / "children").read_text().split()
    except OSError:
        return []
    return out + [g for c in out for g in _children(int(c))]


def _remove_new_chains(exe: str, before: dict[str, list[str]]) -> None:
    for table, chains in _chains(exe).items():
        new = [c for c in chains if c not in before.get(table, [])
               and c.startswith(OWNED_CHAIN_PREFIXES)]
        if not new:
            continue
        rules = _run(exe, "-w", "-t", table, "-S", check=False).stdout.splitlines()
        for rule in rules:  # jumps into the chains we are about to delete
            parts = rule.split()
            if parts[:1] == ["-A"] and "-j" in parts and parts[parts.index("-j") + 1] in new:
                subprocess.run([exe, "-w", "-t", table, "-D", *parts[1:]], capture_output=True)
        for chain in new:
            subprocess.run([exe, "-w", "-t", table, "-F", chain], capture_output=True)
        for chain in new:
            subprocess.run([exe, "-w", "-t", table, "-X", chain], capture_output=True)


# ------------------------------------------------------------------------- configs


def cni_config(cni_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "0.4.0",
        "name": "ftops-pods",
        "plugins": [{
            "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
            "hairpinMode": True,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": SUBNET,
                                                        "gateway": GATEWAY}]],
                     "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(cni_dir / "networks")},
        }],
    }


def containerd_config(root: Path, state: Path, cni: Path, hosts: Path) -> str:
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "{state}/containerd.sock"

[plugins."io.containerd.internal.v1.opt"]
  path = "{state}/opt"

[{cri}]
  sandbox_image = "{image.PAUSE_IMAGE}"
  enable_cdi = false
  # Processes on this machine lack CAP_SYS_RESOURCE: nothing may lower oom_score_adj
  # (runc fails with "can't get final child's PID from pipe: EOF" otherwise)
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    # unpacked layers are the image; their blobs would be a second copy of ~7 GB (a later
    # pull skips the layers whose snapshots exist)
    discard_unpacked_layers = true
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{shutil.which('runc') or '/usr/sbin/runc'}"
  [{cri}.cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}/net.d"
  [{cri}.registry]
    config_path = "{hosts}"
"""


def coredns_corefile(kubeconfig: Path, health: int, ready: int) -> str:
    return f"""\
cluster.local:53 in-addr.arpa:53 {{
    bind {GATEWAY}
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {kubeconfig} devcluster
        pods insecure
        fallthrough in-addr.arpa
    }}
    cache 5
}}
.:53 {{
    bind {GATEWAY}
    errors
    forward . /etc/resolv.conf
    cache 30
}}
"""


def kubelet_config(sock: Path, ca: Path, port: int, healthz: int, pod_logs: Path
                   ) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "containerRuntimeEndpoint": f"unix://{sock}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_ROOT}",
        "failCgroupV1": False,  # this machine kind runs cgroup v1
        "failSwapOn": False,
        "address": GATEWAY,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca)}},
        "authorization": {"mode": "Webhook"},
        "clusterDomain": "cluster.local",
        "clusterDNS": [GATEWAY],
        "resolvConf": "/etc/resolv.conf",
        "registerNode": True,
        "serializeImagePulls": False,
        "podLogsDir": str(pod_logs),
        # a shared machine: never evict the tests' pods for someone else's disk use, and
        # never garbage-collect the (large, cached) training image
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "podPidsLimit": -1,
        "maxPods": 110,
    }


def kube_proxy_config(kubeconfig: Path, healthz: int, metrics: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": SUBNET,
        "hostnameOverride": NODE_NAME,
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics}",
        "nodePortAddresses": [f"{GATEWAY}/32"],
        # leave the host's conntrack settings alone
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
    }
