"""Pods that really run, on the real node (containerd, runc, kubelet, kube-proxy, CoreDNS)
from the training image built from the root Dockerfile: the merge -> index loop, and the
faults a team deploying ftops would meet first. No fake kubelet: every pod here is a
container that runs `ftops node-run` and trains.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from local_repo import git

from devcluster import node, realloop
from devcluster.kube import create_from_yaml, wait_for
from devcluster.node import NODE_LABEL, NODE_NAME

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
NS = realloop.NS


@pytest.fixture(scope="module")
def loop(tmp_path_factory: pytest.TempPathFactory, devcluster: Any, realnode: Any
         ) -> Iterator[realloop.Loop]:
    with realloop.loop(tmp_path_factory.mktemp("realloop"), devcluster, realnode) as lp:
        yield lp


def _v1(cluster: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(cluster.api_client())


def _pod_output(cluster: Any, name: str, timeout: float = 240) -> str:
    v1 = _v1(cluster)

    def done() -> bool:
        return v1.read_namespaced_pod(name, NS).status.phase in ("Succeeded", "Failed")

    wait_for(f"pod {name} to finish", done, timeout=timeout, interval=1,
             describe=lambda: str(v1.read_namespaced_pod(name, NS).status))
    pod = v1.read_namespaced_pod(name, NS)
    # raw bytes: the client would parse a log line that looks like JSON into a dict
    log = v1.read_namespaced_pod_log(name, NS, _preload_content=False).data.decode()
    assert pod.status.phase == "Succeeded", log
    return str(log)


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":", 2)[1].strip().split("@", 1)[0] for line in out.splitlines()}


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def test_a_crashed_sessions_bridge_veths_and_chains_are_undone_before_the_next_node(
        tmp_path: Path) -> None:
    """What a killed session leaves on the machine (its state file; the pods' bridge with
    a pod's veth still attached; an iptables chain the kubelet made, with a jump to it)
    is undone by the next `up` (`clean_up_after_crash`), and a stale bridge with no state
    at all is replaced. Runs before the session's node starts (it takes the node lock)."""
    veth, peer, chain = "ftops-tv0", "ftops-tv1", "KUBE-FTOPS-CRASHTEST"
    bridge_nf = "net/bridge/bridge-nf-call-iptables"
    before: str | None = None
    with contextlib.suppress(OSError):
        assert node.LOCK_FILE.read_text().strip() != str(os.getpid()), \
            "this session's node is up already: this test must run before the fixture starts"
    fd = node.acquire_lock(1800)
    try:
        node.clean_up_after_crash()  # a real crash's leftovers first, if any
        before = node._read_sysctl(bridge_nf)
        (tmp_path / "node").mkdir()
        state = node.NodeState(str(tmp_path / "node"), sysctls={bridge_nf: before},
                               chains={"iptables": node._chains("iptables")})
        state.bridge = True
        state.save()
        node.create_bridge()
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", veth, "master", node.BRIDGE)
        subprocess.run(["iptables", "-w", "-N", chain], check=True)
        subprocess.run(["iptables", "-w", "-A", "FORWARD", "-j", chain], check=True)

        assert node.clean_up_after_crash() is True
        assert {node.BRIDGE, veth, peer}.isdisjoint(_links())
        assert chain not in node._chains("iptables")["filter"]
        assert chain not in subprocess.run(["iptables", "-w", "-S", "FORWARD"],
                                           capture_output=True, text=True).stdout
        assert node._read_sysctl(bridge_nf) == before
        assert node.NodeState.load() is None and not (tmp_path / "node").exists()
        assert node.clean_up_after_crash() is False  # nothing left to undo

        # a bridge (with a veth) left without any state: replaced by the next one
        node.create_bridge()
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", veth, "master", node.BRIDGE)
        node.create_bridge(log=sys.stderr)
        assert node.BRIDGE in _links() and {veth, peer}.isdisjoint(_links())
    finally:
        node._delete_bridge()
        for link in (veth, peer):
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        subprocess.run(["iptables", "-w", "-D", "FORWARD", "-j", chain], capture_output=True)
        subprocess.run(["iptables", "-w", "-X", chain], capture_output=True)
        if before is not None:
            node._write_sysctl(bridge_nf, before)
        node.release_lock(fd)


def test_node_is_a_ready_cpu_node_beside_the_kwok_gpu_nodes(devcluster: Any, realnode: Any
                                                           ) -> None:
    node = _v1(devcluster).read_node(NODE_NAME)
    info = node.status.node_info
    assert info.kubelet_version == "v1.36.3"
    assert info.container_runtime_version.startswith("containerd://")
    assert node.metadata.labels[NODE_LABEL] == "true"
    assert not node.spec.taints  # CPU pods land here; GPU pods need the kwok nodes' taint
    assert int(node.status.allocatable["cpu"]) >= 2
    gpu_nodes = [n for n in _v1(devcluster).list_node().items
                 if "cloud.google.com/gke-accelerator" in (n.metadata.labels or {})]
    assert len(gpu_nodes) == 4


def test_training_image_runs_as_user_1000_with_ftops_and_a_writable_home(
        devcluster: Any, realnode: Any) -> None:
    """The image from the root Dockerfile, pulled by digest, under the same pod security
    the JobSets get (k8s-base/components/jobset-common)."""
    script = ("import json, os, subprocess, pathlib, llamafactory, torch; "
              "home = pathlib.Path(os.environ['HOME']); "
              "(home / '.cache/huggingface/probe').write_text('ok'); "
              "print(json.dumps({'uid': os.getuid(), 'home': str(home), "
              "'hf_home': os.environ['HF_HOME'], "
              "'ftops': subprocess.run(['ftops', '--help'], capture_output=True).returncode, "
              "'git': subprocess.run(['git', '--version'], capture_output=True, text=True)"
              ".stdout.strip(), 'llamafactory': llamafactory.__version__, "
              "'torch': torch.__version__}))")
    name = f"image-probe-{os.getpid()}"
    create_from_yaml(devcluster, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS},
        "spec": {
            "restartPolicy": "Never", "nodeName": NODE_NAME,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "probe", "image": realnode.image_ref, "imagePullPolicy": "IfNotPresent",
                "command": ["python", "-c", script],
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "100m", "memory": "1Gi"},
                              "limits": {"cpu": "1", "memory": "2Gi"}}}]}})
    try:
        out = json.loads(_pod_output(devcluster, name).strip().splitlines()[-1])
    finally:
        _v1(devcluster).delete_namespaced_pod(name, NS, grace_period_seconds=0)
    assert out["uid"] == 1000 and out["home"] == "/home/ftops"
    assert out["hf_home"] == "/home/ftops/.cache/huggingface"
    assert out["ftops"] == 0 and out["git"].startswith("git version")
    assert out["llamafactory"] == "0.9.5" and out["torch"].startswith("2.14.1")


def test_clusterip_service_and_dns_route_to_a_pod(devcluster: Any, realnode: Any) -> None:
    """kube-proxy's iptables rules and CoreDNS: a pod reaches another through a Service
    name (cluster.local) and its ClusterIP."""
    tag = str(os.getpid())
    server, client_pod, svc = f"web-{tag}", f"curl-{tag}", f"web-{tag}"
    sec = {"runAsNonRoot": True, "runAsUser": 1000}
    res = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}
    create_from_yaml(devcluster, [
        {"apiVersion": "v1", "kind": "Pod",
         "metadata": {"name": server, "namespace": NS, "labels": {"app": server}},
         "spec": {"nodeName": NODE_NAME, "securityContext": sec, "containers": [{
             "name": "web", "image": realnode.image_ref, "resources": res,
             "command": ["python", "-c", "import http.server as h; h.HTTPServer(('', 8080), "
                         "type('H', (h.BaseHTTPRequestHandler,), {'do_GET': lambda s: "
                         "(s.send_response(200), s.end_headers(), "
                         "s.wfile.write(b'hello from ' + __import__('socket').gethostname()"
                         ".encode()))})).serve_forever()"],
             "ports": [{"containerPort": 8080}]}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": svc, "namespace": NS},
         "spec": {"selector": {"app": server}, "ports": [{"port": 80, "targetPort": 8080}]}},
    ])
    try:
        ip = wait_for("the Service's ClusterIP", lambda: _v1(devcluster).read_namespaced_service(
            svc, NS).spec.cluster_ip, timeout=30)
        fetch = ("import sys, time, urllib.request as u\n"
                 "for url in sys.argv[1:]:\n"
                 "    for _ in range(60):\n"
                 "        try:\n"
                 "            print(url, u.urlopen(url, timeout=3).read().decode()); break\n"
                 "        except OSError: time.sleep(1)\n"
                 "    else: sys.exit(f'{url} unreachable')\n")
        create_from_yaml(devcluster, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": client_pod, "namespace": NS},
            "spec": {"restartPolicy": "Never", "nodeName": NODE_NAME, "securityContext": sec,
                     "containers": [{"name": "curl", "image": realnode.image_ref,
                                     "resources": res, "command": [
                                         "python", "-c", fetch,
                                         f"http://{svc}.{NS}.svc.cluster.local/",
                                         f"http://{svc}/", f"http://{ip}/"]}]}})
        out = _pod_output(devcluster, client_pod)
    finally:
        for pod in (server, client_pod):
            _v1(devcluster).delete_namespaced_pod(pod, NS, grace_period_seconds=0)
        _v1(devcluster).delete_namespaced_service(svc, NS)
    assert out.count(f"hello from {server}") == 3, out


def test_merge_launches_two_pods_that_train_over_gloo_and_publish_the_index_entry(
        loop: realloop.Loop) -> None:
    """The README's flow for real: merge, `changes` + `apply --record`, Kueue admits,
    JobSet's 2 pods train with torchrun over gloo (MASTER_ADDR through the headless
    Service), rank 0's hook writes run.json and publishes to the remote with the token."""
    name = "sft_lora_2node_v1"
    m = loop.merge(name, realloop.experiment_yaml())
    run_id, _ = loop.launch(m)
    launched = loop.remote_entry(name, run_id)
    assert launched is not None and launched["status"] == "launched"

    def both_running() -> bool:
        pods = loop.pods(run_id)
        return len(pods) == 2 and all(p.status.phase == "Running" for p in pods)

    wait_for("both pods Running", both_running, timeout=240, describe=lambda: loop.describe(
        run_id))
    # Kueue gave the CPU flavor (not a GPU one): the pods are on the real node
    assert {p.spec.node_name for p in loop.pods(run_id)} == {NODE_NAME}
    entry = loop.wait_entry(name, run_id, {"succeeded", "failed"}, timeout=480)
    assert entry["status"] == "succeeded", entry.get("message")
    row = wait_for("ftops status: succeeded", lambda: (r := loop.status(run_id)) and
                   r["state"] == "succeeded" and r, timeout=120)
    assert row["index_status"] == "succeeded"

    # the record: the image by digest, two nodes, the whole run's metrics and loss curve
    assert entry["image"] == loop.node.image_ref and "@sha256:" in entry["image"]
    assert entry["nodes"] == 2 and entry["gpus_per_node"] == 0 and entry["exit_code"] == 0
    assert entry["mode"] == "cluster" and entry.get("restarts", 0) == 0
    assert entry["metrics"]["total_steps"] == 16  # 64 examples, 2 x 4 per step, 2 epochs
    assert len(entry["loss_points"]) == 16
    run_dir = loop.run_dir(name, run_id)
    stored = json.loads((run_dir / "run.json").read_text())
    assert stored["status"] == "succeeded" and stored["run_id"] == run_id
    assert (run_dir / "loss_curve.png").is_file() and (run_dir / "adapter_model.safetensors"
                                                       ).is_file()
    # torchrun across the pods: rank 1 joined rank 0's rendezvous through the Service name
    node1 = (run_dir / "logs" / "node-1.log").read_text()
    assert "world size: 2" in node1, node1[-3000:]
    # the model README on the remote lists the run with its loss curve
    folder = f"outputs-index/{realloop.DATASET}/{realloop.MODEL}"
    readme = loop.remote_text(f"{folder}/README.md")
    svg = f"{name}__{run_id}.svg"
    assert readme is not None and run_id in readme and f"]({svg})" in readme, readme
    assert "<svg" in (loop.remote_text(f"{folder}/{svg}") or "")
    # the pod published itself (from the pods' network) with the token
    pod_pushes = [r for r in loop.git_server.pushes() if r.client.startswith("10.88.0.")]
    assert pod_pushes and all(r.authorized and r.status == 200 for r in pod_pushes)
    assert not [r for r in loop.git_server.requests if r.client.startswith("10.88.0.")
                and not r.authorized]


def test_deleted_pod_restarts_the_group_which_resumes_from_the_last_checkpoint(
        loop: realloop.Loop) -> None:
    name = "sft_lora_2node_restart_v1"
    # 5 epochs of 8 steps, a checkpoint every 8: rank 0 goes at the first one, with 32
    # steps still to train
    m = loop.merge(name, realloop.experiment_yaml(max_restarts=1, epochs=5.0, save_steps=8))
    run_id, _ = loop.launch(m)
    run_dir = loop.run_dir(name, run_id)
    wait_for("the first checkpoint", lambda: (run_dir / "checkpoint-8" / "trainer_state.json"
                                              ).exists(),
             timeout=300, interval=0.5, describe=lambda: loop.describe(run_id))
    rank0 = next(p for p in loop.pods(run_id) if p.metadata.annotations.get(
        "batch.kubernetes.io/job-completion-index") == "0")
    _v1(loop.cluster).delete_namespaced_pod(rank0.metadata.name, NS)
    entry = loop.wait_entry(name, run_id, {"succeeded", "failed"}, timeout=480)
    assert entry["status"] == "succeeded", entry.get("message")
    assert entry["restarts"] == 1
    assert entry["metrics"]["total_steps"] == 40
    log0 = (run_dir / "logs" / "node-0.log").read_text()
    resumed = re.findall(r"Resuming training from \S*checkpoint-(\d+)", log0)
    assert resumed and 8 <= int(resumed[-1]) < 40, log0[-3000:]
    # same run id, same entry: the interrupted attempt's rank 0 published where it stopped
    history = git(loop.bare, "log", "-p", "--format=", "main", "--",
                  f"outputs-index/{realloop.DATASET}/{realloop.MODEL}/{name}__{run_id}.json")
    assert "attempt 0 stopped by SIGTERM" in history, history[-3000:]
    row = wait_for("ftops status: succeeded", lambda: (r := loop.status(run_id)) and
                   r["state"] == "succeeded" and r, timeout=120)
    assert row["restarts"] == 1


def test_config_llamafactory_rejects_fails_at_once_without_restarts(
        loop: realloop.Loop) -> None:
    """`streaming: true` without `max_steps` passes ftops lint but not LLaMA-Factory's
    parser: node-run exits 2, the podFailurePolicy fails the Job, JobSet fails at once
    (max_restarts 2 unused), rank 0 records `failed`."""
    name = "sft_lora_2node_badcfg_v1"
    m = loop.merge(name, realloop.experiment_yaml(max_restarts=2,
                                                  extra_train={"streaming": True}))
    run_id, _ = loop.launch(m)
    entry = loop.wait_entry(name, run_id, {"failed"}, timeout=300)
    assert entry["exit_code"] == 2 and entry.get("restarts", 0) == 0
    assert "max_steps" in entry["message"] and "LLaMA-Factory rejects" in entry["message"]
    row = wait_for("ftops status: failed", lambda: (r := loop.status(run_id)) and
                   r["state"] == "failed" and r, timeout=120)
    assert row["restarts"] == 0


def test_cancel_deletes_the_pods_and_records_cancelled(loop: realloop.Loop) -> None:
    name = "sft_lora_2node_cancel_v1"
    m = loop.merge(name, realloop.experiment_yaml(epochs=50.0, save_steps=1000))
    run_id, _ = loop.launch(m)
    wait_for("training under way", lambda: (loop.run_dir(name, run_id) / "trainer_log.jsonl"
                                            ).exists(),
             timeout=300, interval=1, describe=lambda: loop.describe(run_id))
    code, out, err = loop.ftops("cancel", run_id, "--kubeconfig", loop.kubeconfig,
                                env=loop.env())
    assert code == 0, err
    # gone: their containers have exited, so rank 0's hook (which records a SIGTERM as
    # `running`) has published, if at all, and did not overwrite `cancelled`
    wait_for("the run's pods gone", lambda: not loop.pods(run_id), timeout=240)
    entry = loop.remote_entry(name, run_id)
    assert entry is not None and entry["status"] == "cancelled", entry
    assert entry["message"].startswith("cancelled by")


def test_pod_killed_before_its_hook_is_healed_by_reconcile(loop: realloop.Loop) -> None:
    """SIGKILL to every process of rank 0's container (as the OOM killer would): no hook
    runs, the JobSet fails (no restarts). Storage has what the run left (run.json
    `running`, the trainer log); `index reconcile --cluster` records the failure."""
    name = "sft_lora_2node_killed_v1"
    m = loop.merge(name, realloop.experiment_yaml(epochs=50.0, save_steps=16))
    run_id, _ = loop.launch(m)
    run_dir = loop.run_dir(name, run_id)
    wait_for("a few logged steps", lambda: len((run_dir / "trainer_log.jsonl").read_text(
        ).splitlines()) >= 4 if (run_dir / "trainer_log.jsonl").exists() else False,
        timeout=300, interval=1, describe=lambda: loop.describe(run_id))
    killed = _kill_rank0(run_id)
    assert killed, "found no process of rank 0 to kill"
    row = wait_for("the JobSet failed", lambda: (r := loop.status(run_id)) and
                   r["state"] == "failed" and r, timeout=300,
                   describe=lambda: loop.describe(run_id))
    assert row["index_status"] == "launched"  # the hook never ran
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    code, out, err = loop.ftops("index", "reconcile", "--storage", loop.storage.as_uri(),
                                "--remote", loop.index_remote, "--cluster", "--kubeconfig",
                                loop.kubeconfig, env=loop.env())
    assert code == 0, err
    assert run_id in out
    entry = loop.remote_entry(name, run_id)
    assert entry is not None and entry["status"] == "failed"
    assert "post-run hook did not finish" in entry["message"]
    assert len(entry["loss_points"]) >= 4 and entry["metrics"]["final_train_loss"] is not None
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"


def _kill_rank0(run_id: str) -> list[int]:
    """SIGKILL every process on this machine that belongs to rank 0 of the run (they share
    FTOPS_RUN_ID and NODE_RANK=0 in their environment): what an OOM kill of the
    container does."""
    want = {f"FTOPS_RUN_ID={run_id}".encode(), b"NODE_RANK=0"}
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            env = set((proc / "environ").read_bytes().split(b"\0"))
        except OSError:
            continue
        if want <= env:
            pids.append(int(proc.name))
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids



