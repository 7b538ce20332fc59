"""Start and stop the local control plane as child processes on 127.0.0.1.

etcd -> kube-apiserver -> kube-controller-manager + kube-scheduler -> fake nodes + KWOK
-> JobSet/Kueue CRDs and webhooks -> JobSet and Kueue managers -> k8s-base/cluster-admin.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devcluster import build, manifests, pki
from render.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
K8S_BASE_ADMIN = REPO_ROOT / "k8s-base" / "cluster-admin"
K8S_BASE_DEFAULT = REPO_ROOT / "k8s-base" / "default"


class ClusterError(RuntimeError):
    pass


def kubectl_path() -> str:
    from render.manifests.kustomize import kubectl

    return kubectl()


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])


@dataclass
class Proc:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None
    die_with_parent: bool = False

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as f:
            f.write(f"$ {' '.join(self.argv)}\n".encode())
            f.flush()
            self.popen = subprocess.Popen(
                self.argv,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,  # noqa: PLW1509
            )

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the parent dies (Linux), so a killed test session
    leaves no control plane behind."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    no_proxy = "127.0.0.1,localhost"
    for k in ("NO_PROXY", "no_proxy"):
        env[k] = f"{env[k]},{no_proxy}" if env.get(k) else no_proxy
    env.pop("KUBECONFIG", None)
    return env


def _terminate(pids: Iterable[int], timeout: float = 10.0) -> None:
    pids = list(pids)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.killpg(pid, 0)
            except (ProcessLookupError, PermissionError):
                break
            # reap if it is our child
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


@dataclass
class Options:
    run_seconds: float = 3.0
    """How long fake pods stay Running before they succeed."""
    fail_seconds: float = 2.0
    """How long pods marked with the fail annotation run before they fail."""
    wait_for_pods_ready: bool = False
    apply_k8s_base: bool = True
    timeout: float = 120.0
    """Seconds to wait for each component to become ready."""
    die_with_parent: bool = True
    """Kill the components when this Python process dies (False for a detached `up`)."""


@dataclass
class DevCluster:
    workdir: Path
    options: Options = field(default_factory=Options)
    procs: list[Proc] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    _pki: pki.Pki | None = None

    # ------------------------------------------------------------------ paths

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    # ------------------------------------------------------------------ clients

    def api_client(self) -> Any:
        """A kubernetes.client.ApiClient for this cluster (admin)."""
        from kubernetes import client, config

        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg)
        cfg.proxy = None
        return client.ApiClient(cfg)

    def dynamic_client(self) -> Any:
        from kubernetes import dynamic

        return dynamic.DynamicClient(self.api_client())

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        cmd = [kubectl_path(), f"--kubeconfig={self.kubeconfig}", *args]
        proc = subprocess.run(
            cmd, input=input, capture_output=True, text=True, env=_child_env(), timeout=timeout
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"{' '.join(cmd[:1] + list(args))} failed:\n{proc.stderr}")
        return proc

    def apply(self, docs: list[dict[str, Any]], retries: int = 1, delay: float = 1.0) -> None:
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
        err = ""
        for _ in range(retries):
            proc = self.kubectl(
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=devcluster",
                "-f",
                "-",
                input=text,
                check=False,
            )
            if proc.returncode == 0:
                return
            err = proc.stderr
            time.sleep(delay)
        raise ClusterError(f"kubectl apply failed:\n{err}")

    # ------------------------------------------------------------------ lifecycle

    def _http_ok(
        self, url: str, *, client_cert: bool = False, verify: bool = True, expect: str | None = None
    ) -> bool:
        ctx: ssl.SSLContext | None = None
        if url.startswith("https"):
            assert self._pki is not None
            if verify:
                ctx = ssl.create_default_context(cafile=str(self._pki.ca_crt))
            else:
                ctx = ssl._create_unverified_context()  # noqa: S323 (self-signed health port)
            if client_cert:
                ctx.load_cert_chain(str(self._pki.admin_crt), str(self._pki.admin_key))
        try:
            opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
            )
            with opener.open(url, timeout=3) as r:  # noqa: S310 (local URL)
                body = r.read().decode(errors="replace")
                return r.status == 200 and (expect is None or expect in body)
        except (urllib.error.URLError, OSError, ssl.SSLError):
            return False

    def _wait(
        self, what: str, check: Callable[[], bool], procs: list[Proc], timeout: float | None = None
    ) -> None:
        deadline = time.monotonic() + (timeout or self.options.timeout)
        while True:
            for p in procs:
                if not p.alive():
                    code = p.popen.returncode if p.popen else None
                    raise ClusterError(
                        f"devcluster: {p.name} exited (code {code}) while waiting for {what}."
                        f"\n--- last lines of {p.log} ---\n{tail(p.log)}"
                    )
            try:
                if check():
                    return
            except Exception:  # noqa: BLE001,S110 (retry until the deadline)
                pass
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- last lines of {p.log} ---\n{tail(p.log)}" for p in procs)
                raise ClusterError(
                    f"devcluster: timed out after {timeout or self.options.timeout:.0f}s "
                    f"waiting for {what} ({', '.join(p.name for p in procs)}).\n{logs}"
                )
            time.sleep(0.25)

    def _start(self, name: str, argv: list[str]) -> Proc:
        p = Proc(
            name,
            argv,
            self.logs / f"{name}.log",
            env=_child_env(),
            die_with_parent=self.options.die_with_parent,
        )
        p.start()
        self.procs.append(p)
        self._save_state()
        return p

    def _save_state(self) -> None:
        state = {
            "kubeconfig": str(self.kubeconfig),
            "workdir": str(self.workdir),
            "ports": self.ports,
            "pids": {p.name: p.pid for p in self.procs if p.popen is not None},
            "exes": {p.name: p.argv[0] for p in self.procs if p.popen is not None},
        }
        self.state_file.write_text(json.dumps(state, indent=2))

    def _write_kubeconfig(self) -> None:
        assert self._pki is not None
        kc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "devcluster",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self._pki.ca_crt),
                    },
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate": str(self._pki.admin_crt),
                        "client-key": str(self._pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {"name": "devcluster", "context": {"cluster": "devcluster", "user": "admin"}}
            ],
            "current-context": "devcluster",
        }
        self.kubeconfig.write_text(yaml.safe_dump(kc, sort_keys=False))

    def up(self) -> DevCluster:
        try:
            self._up()
        except BaseException:
            self.down(remove=False)
            raise
        return self

    def _up(self) -> None:
        t_start = time.monotonic()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        bindir = build.ensure_built()
        b = {
            n: str(bindir / n)
            for n in (
                "etcd",
                "kube-apiserver",
                "kube-controller-manager",
                "kube-scheduler",
                "kwok",
                "jobset",
                "kueue",
            )
        }
        self.timings["build_check"] = time.monotonic() - t_start
        self._pki = p = pki.generate(self.workdir / "pki")
        for name in (
            "etcd",
            "etcd_peer",
            "apiserver",
            "kcm",
            "scheduler",
            "kwok",
            "jobset_webhook",
            "jobset_probe",
            "kueue_webhook",
            "kueue_probe",
        ):
            self.ports[name] = free_port()
        self._write_kubeconfig()
        kc = str(self.kubeconfig)

        # etcd
        t = time.monotonic()
        etcd_url = f"http://127.0.0.1:{self.ports['etcd']}"
        peer_url = f"http://127.0.0.1:{self.ports['etcd_peer']}"
        etcd = self._start(
            "etcd",
            [
                b["etcd"],
                "--name=devcluster",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=devcluster={peer_url}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=2147483648",
                "--log-level=warn",
            ],
        )
        self._wait(
            "etcd /health", lambda: self._http_ok(f"{etcd_url}/health", expect="true"), [etcd]
        )
        self.timings["etcd"] = time.monotonic() - t

        # kube-apiserver
        t = time.monotonic()
        api = self._start(
            "kube-apiserver",
            [
                b["kube-apiserver"],
                f"--etcd-servers={etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['apiserver']}",
                f"--tls-cert-file={p.apiserver_crt}",
                f"--tls-private-key-file={p.apiserver_key}",
                f"--client-ca-file={p.ca_crt}",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--api-audiences=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NamespaceLifecycle,LimitRanger,ServiceAccount,"
                "DefaultTolerationSeconds,PodSecurity,Priority,ResourceQuota,NodeRestriction,"
                "MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ValidatingAdmissionPolicy",
                # the real node's kubelet (devcluster.node): logs, exec, port-forward
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-client-certificate={p.admin_crt}",
                f"--kubelet-client-key={p.admin_key}",
                "--allow-privileged=true",
                "--endpoint-reconciler-type=none",
                "--profiling=false",
                "--v=1",
            ],
        )
        self._wait(
            "kube-apiserver /readyz",
            lambda: self._http_ok(f"{self.server}/readyz", client_cert=True),
            [etcd, api],
        )
        self.timings["kube-apiserver"] = time.monotonic() - t

        # controller manager + scheduler
        t = time.monotonic()
        kcm = self._start(
            "kube-controller-manager",
            [
                b["kube-controller-manager"],
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kcm']}",
                "--leader-elect=false",
                "--controllers=*,-node-ipam-controller",
                "--node-monitor-grace-period=120s",
                f"--service-account-private-key-file={p.sa_key}",
                f"--root-ca-file={p.ca_crt}",
                "--use-service-account-credentials=false",
                "--concurrent-job-syncs=10",
                "--v=1",
            ],
        )
        sched = self._start(
            "kube-scheduler",
            [
                b["kube-scheduler"],
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['scheduler']}",
                "--leader-elect=false",
                "--v=1",
            ],
        )
        self._wait(
            "kube-controller-manager /healthz",
            lambda: self._http_ok(f"https://127.0.0.1:{self.ports['kcm']}/healthz", verify=False),
            [api, kcm],
        )
        self._wait(
            "kube-scheduler /readyz",
            lambda: self._http_ok(
                f"https://127.0.0.1:{self.ports['scheduler']}/readyz", verify=False
            ),
            [api, sched],
        )
        self.timings["controller-manager+scheduler"] = time.monotonic() - t

        # fake nodes + kwok
        t = time.monotonic()
        self.apply(manifests.fake_nodes())
        kwok_cfg = self.workdir / "kwok.yaml"
        kwok_cfg.write_text(
            yaml.safe_dump_all(
                manifests.kwok_config(self.options.run_seconds, self.options.fail_seconds),
                sort_keys=False,
            )
        )
        kwok = self._start(
            "kwok",
            [
                b["kwok"],
                f"--kubeconfig={kc}",
                f"--config={kwok_cfg}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={manifests.KWOK_NODE_ANNOTATION}=fake",
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
                "--node-ip=10.0.0.1",
                "--cidr=10.244.0.0/16",
            ],
        )
        self._wait("KWOK nodes Ready", self._nodes_ready, [api, kwok])
        self.timings["kwok+nodes"] = time.monotonic() - t

        # CRDs and webhooks
        t = time.monotonic()
        kctl = kubectl_path()
        ca_pem = p.ca_crt.read_bytes()
        js_crds, js_whs = manifests.jobset_manifests(kctl, self.ports["jobset_webhook"], ca_pem)
        kq_crds, kq_whs = manifests.kueue_manifests(kctl, self.ports["kueue_webhook"], ca_pem)
        self.apply([*js_crds, *kq_crds])
        crd_names = [c["metadata"]["name"] for c in [*js_crds, *kq_crds]]
        self.kubectl(
            "wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in crd_names]
        )
        self.apply(
            [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kueue-system"}}]
        )
        self.timings["crds"] = time.monotonic() - t

        # JobSet and Kueue managers
        t = time.monotonic()
        js_cfg = self.workdir / "jobset-config.yaml"
        js_cfg.write_text(
            yaml.safe_dump(
                manifests.jobset_config(
                    self.ports["jobset_webhook"], self.ports["jobset_probe"], p.webhook_dir
                )
            )
        )
        kq_cfg = self.workdir / "kueue-config.yaml"
        kq_cfg.write_text(
            yaml.safe_dump(
                manifests.kueue_config(
                    self.ports["kueue_webhook"],
                    self.ports["kueue_probe"],
                    p.webhook_dir,
                    self.options.wait_for_pods_ready,
                )
            )
        )
        js = self._start(
            "jobset",
            [
                b["jobset"],
                f"--kubeconfig={kc}",
                f"--config={js_cfg}",
                "--metrics-bind-address=0",
                f"--health-probe-bind-address=127.0.0.1:{self.ports['jobset_probe']}",
                "--zap-log-level=info",
            ],
        )
        kq_proc = Proc(
            "kueue",
            [
                b["kueue"],
                f"--kubeconfig={kc}",
                f"--config={kq_cfg}",
                "--zap-log-level=2",
            ],
            self.logs / "kueue.log",
            env={**_child_env(), "KUEUE_METRICS_CERT_DIR": str(p.webhook_dir)},
            die_with_parent=self.options.die_with_parent,
        )
        kq_proc.start()
        self.procs.append(kq_proc)
        self._save_state()
        self._wait(
            "JobSet manager /readyz",
            lambda: self._http_ok(f"http://127.0.0.1:{self.ports['jobset_probe']}/readyz"),
            [api, js],
        )
        self._wait(
            "Kueue manager /readyz",
            lambda: self._http_ok(f"http://127.0.0.1:{self.ports['kueue_probe']}/readyz"),
            [api, kq_proc],
        )
        self.apply([*js_whs, *kq_whs])
        self.timings["jobset+kueue"] = time.monotonic() - t

        # k8s-base/cluster-admin (namespace, flavors, ClusterQueue, LocalQueues, priorities)
        # and k8s-base/default (training ServiceAccount, launcher RBAC)
        if self.options.apply_k8s_base:
            t = time.monotonic()
            # what an admin installs (cluster-admin), then the namespace's own objects
            # (default: the training ServiceAccount and the launcher's RBAC)
            docs = manifests.kustomize(kctl, K8S_BASE_ADMIN)
            names = {(d["kind"], d["metadata"]["name"]) for d in docs}
            docs += [d for d in manifests.kustomize(kctl, K8S_BASE_DEFAULT)
                     if (d["kind"], d["metadata"]["name"]) not in names]
            # the webhooks were just registered: retry while they warm up
            self.apply(docs, retries=30, delay=1.0)
            self._wait("ClusterQueues Active", self._cluster_queues_active, [api, kq_proc])
            self.timings["k8s-base"] = time.monotonic() - t
        self.timings["total_up"] = time.monotonic() - t_start

    def _nodes_ready(self) -> bool:
        from kubernetes import client

        v1 = client.CoreV1Api(self.api_client())
        nodes = v1.list_node().items
        want = sum(c for c, *_ in manifests.DEFAULT_NODES.values())
        ready = [
            n
            for n in nodes
            if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
            # the node lifecycle controller lifts the not-ready taint set at creation
            and not any(t.key.startswith("node.kubernetes.io/") for t in n.spec.taints or [])
        ]
        return len(ready) >= want

    def _cluster_queues_active(self) -> bool:
        from kubernetes import client

        co = client.CustomObjectsApi(self.api_client())
        cqs = co.list_cluster_custom_object("kueue.x-k8s.io", "v1beta1", "clusterqueues")
        items = cqs.get("items", [])
        return bool(items) and all(
            any(
                c["type"] == "Active" and c["status"] == "True"
                for c in cq.get("status", {}).get("conditions", [])
            )
            for cq in items
        )

    def down(self, remove: bool = True) -> None:
        _terminate([p.pid for p in reversed(self.procs) if p.popen is not None])
        self.procs.clear()
        if self.state_file.exists():
            self.state_file.unlink()
        if remove:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.alive()]

    def __enter__(self) -> DevCluster:
        return self.up()

    def __exit__(self, *exc: object) -> None:
        self.down(remove=not os.environ.get("FTOPS_DEVCLUSTER_KEEP"))


def default_workdir() -> Path:
    return Path(
        os.environ.get("FTOPS_DEVCLUSTER_DIR", Path(tempfile.gettempdir()) / "ftops-devcluster")
    )


def stop_from_state(workdir: Path) -> bool:
    """Stop a cluster started by ``up`` in another process (pids in state.json)."""
    state_file = workdir / "state.json"
    if not state_file.exists():
        return False
    state = json.loads(state_file.read_text())
    exes = state.get("exes", {})
    pids = []
    for name, pid in state.get("pids", {}).items():
        # only signal what is still our component (pids are reused after a reboot)
        try:
            cmd0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except OSError:
            continue
        if exes.get(name) in (None, cmd0):
            pids.append(pid)
    _terminate(reversed(pids))
    state_file.unlink()
    return True


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ftops-devcluster-"))
