"""Merge to launch, on the real local control plane: what `ftops apply`, `status` and
`cancel` do against a real API server with the JobSet and Kueue controllers and
webhooks, Kueue configured from k8s-base/.

Run ids name the experiment path and its launch identity (not the commit), so each test
works on its own copy of an experiment (`own`): the session's cluster is shared."""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from devcluster.kube import wait_for
from lint_harness import record_run

from render.cli import main
from render.errors import FatalError
from render.launch.cluster import status
from render.launch.kube import Cluster
from render.manifests.runspec import RunSpec
from render.propose.experiment import Workspace
from render.record.identity import RUN_ID_LABEL

REPO = Path(__file__).resolve().parent.parent.parent
LORA = "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"
pytestmark = pytest.mark.cluster


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    from render.browse.readme import render_readme

    root = tmp_path / "repo"
    shutil.copytree(REPO / "k8s-base", root / "k8s-base")
    shutil.copytree(REPO / "experiments", root / "experiments")
    (root / "outputs-index").mkdir()
    (root / "outputs-index/README.md").write_text(render_readme([]))  # an empty index
    return root


def own(root: Path, path: str, tag: str) -> str:
    """Move the experiment at `path` to a name of this test's own (its run id is then
    this test's alone); returns the new repo-relative path."""
    src = root / path
    dest = src.with_name(src.name.replace("_v1.yaml", f"_{tag}_v1.yaml"))
    src.rename(dest)
    return str(dest.relative_to(root))


def kube(devcluster: Any) -> list[str]:
    return ["--kubeconfig", str(devcluster.kubeconfig)]


def cluster_of(devcluster: Any) -> Cluster:
    return Cluster(devcluster.api_client(), "llm-experiments")


def run_id(root: Path, path: str, commit: str) -> str:
    exp, _ = Workspace(root).load(root / path)
    assert exp is not None
    return RunSpec(exp, commit).run_id


def state_of(devcluster: Any, root: Path, rid: str) -> Any:
    from render.record.index import load_index

    rows = {r.run_id: r for r in status(cluster_of(devcluster), load_index(
        root / "outputs-index"))}
    return rows.get(rid)


def test_every_shipped_experiment_passes_server_side_dry_run(ws: Path, devcluster: Any,
                                                             capsys: pytest.CaptureFixture[str]
                                                             ) -> None:
    """The API server's own dry run: CEL rules and the JobSet/Kueue webhooks included."""
    assert main(["--repo", str(ws), "apply", "--all", "--dry-run", "--commit", "d" * 40,
                 *kube(devcluster)]) == 0
    out = capsys.readouterr().out
    from render.propose.lint import require_clean

    # every run: each sweep point; not a pipeline stage that waits for its input
    runs = [RunSpec(e, "d" * 40) for e in require_clean(Workspace(ws)) if not e.waiting]
    assert out.count("dry-run ") == len(runs) >= 10
    ids = {r.run_id for r in runs}
    existing = {js["metadata"]["labels"][RUN_ID_LABEL] for js in cluster_of(devcluster).jobsets()}
    assert not ids & existing


def test_apply_is_idempotent_records_launch_and_runs_to_completion(
        ws: Path, devcluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    commit = "a1" * 20
    lora = own(ws, LORA, "idem")
    rid = run_id(ws, lora, commit)
    args = ["--repo", str(ws), "apply", lora, "--commit", commit, "--record", *kube(devcluster)]
    assert main(args) == 0
    assert "created " in capsys.readouterr().out
    entry = next((ws / "outputs-index").rglob(f"*__{rid}.json"))
    assert json.loads(entry.read_text())["status"] == "launched"
    assert rid in (ws / "outputs-index/README.md").read_text()
    # a second apply (a re-run of the workflow) changes nothing and creates nothing
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "unchanged " in out and "no new run: metadata only" in out
    assert len(cluster_of(devcluster).jobsets(f"{RUN_ID_LABEL}={rid}")) == 1
    seen = set()

    def finished() -> bool:
        row = state_of(devcluster, ws, rid)
        seen.add(row.state)
        return row.state == "succeeded"

    wait_for("the JobSet to complete", finished, timeout=120)
    assert "succeeded" in seen and seen <= {"queued", "admitted", "running", "succeeded"}
    assert main(["--repo", str(ws), "status", "--format", "json", *kube(devcluster)]) == 0
    rows = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[rid]["state"] == "succeeded" and rows[rid]["index_status"] == "launched"
    # a run id that is in the cluster is never launched again
    assert main(["--repo", str(ws), "cancel", rid, *kube(devcluster)]) == 0


def test_queued_run_shows_kueue_reason_and_cancel_records_it(
        ws: Path, devcluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """An 8-GPU run merged while a run that stays Running fills the 16-GPU h100 quota:
    queued with Kueue's reason; cancelling deletes the JobSet and records it in the index.
    (The blocker's pods stay Running for ten minutes, so the queued state cannot be
    missed however slowly the test polls on a busy machine.)"""
    blocker = block_h100(ws, devcluster, "qb")
    lora = own(ws, LORA, "q")
    commit = "b1" * 20
    assert main(["--repo", str(ws), "apply", lora, "--commit", commit, "--record",
                 *kube(devcluster)]) == 0
    rid = run_id(ws, lora, commit)
    capsys.readouterr()

    def queued_with_reason() -> Any:
        row = state_of(devcluster, ws, rid)
        return row if row.state == "queued" and row.reason else None

    queued = wait_for("the run queued with Kueue's reason", queued_with_reason, timeout=180)
    assert "insufficient" in queued.reason and "nvidia.com/gpu" in queued.reason
    assert queued.position == 1
    assert main(["--repo", str(ws), "cancel", rid, *kube(devcluster)]) == 0
    assert "deleted JobSet" in capsys.readouterr().out
    delete_runs(devcluster, [blocker, rid])
    entry = next((ws / "outputs-index").rglob(f"*__{rid}.json"))
    assert json.loads(entry.read_text())["status"] == "cancelled"
    assert state_of(devcluster, ws, rid).state == "cancelled"


def test_apply_skips_a_run_already_in_the_index(ws: Path, devcluster: Any,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    commit = "c1" * 20
    lora = own(ws, LORA, "idx")
    rid = run_id(ws, lora, commit)
    exp, _ = Workspace(ws).load(ws / lora)
    assert exp is not None
    record_run(ws, lora, rid, exp.config_hash, status="succeeded")
    assert main(["--repo", str(ws), "apply", lora, "--commit", "c2" * 20,
                 *kube(devcluster)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("skipped ") and f"run {rid}" in out
    assert f"no new run: metadata only: run {rid} is succeeded in outputs-index/" in out
    assert not cluster_of(devcluster).jobsets(f"{RUN_ID_LABEL}={rid}")


def test_apply_explains_a_missing_queue(ws: Path, devcluster: Any,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    profile = ws / "k8s-base/cluster-profile.yaml"
    profile.write_text(profile.read_text().replace("queues: [research, production]",
                                                   "queues: [research, production, nightly]"))
    # the repository declares the queue (lint reads Kueue's component), the cluster's
    # admins have not applied it yet: apply must say so
    queues = ws / "k8s-base/components/kueue/local-queues.yaml"
    queues.write_text(queues.read_text() + "---\napiVersion: kueue.x-k8s.io/v1beta1\n"
                      "kind: LocalQueue\nmetadata:\n  name: nightly\n"
                      "  namespace: llm-experiments\nspec:\n  clusterQueue: llm-gpus\n")
    lora = own(ws, LORA, "nightly")
    exp = ws / lora
    exp.write_text(exp.read_text().replace("  max_restarts: 2", "  max_restarts: 2\n"
                                           "  queue: nightly"))
    assert main(["--repo", str(ws), "apply", lora, "--commit", "e1" * 20,
                 *kube(devcluster)]) == 1
    err = capsys.readouterr().err
    assert "LocalQueue 'nightly' does not exist" in err and "Traceback" not in err


def test_launcher_role_is_enough_and_no_more(ws: Path, devcluster: Any) -> None:
    """apply, status and cancel as the launcher identity bound by k8s-base's Role."""
    from kubernetes.client import CoreV1Api
    from kubernetes.client.exceptions import ApiException

    from render.launch.cluster import apply

    api = devcluster.api_client()
    api.set_default_header("Impersonate-User", "ftops-launcher@my-project.iam.gserviceaccount.com")
    cluster = Cluster(api, "llm-experiments")
    from render.manifests.overlay import render

    lora = own(ws, LORA, "role")
    exp, _ = Workspace(ws).load(ws / lora)
    assert exp is not None
    spec = RunSpec(exp, "f1" * 20)
    (r,) = render([spec], ws / ".rendered", ws)
    (res,) = apply(cluster, [(spec.run_id, lora, r.manifests)])
    assert res.action == "created"
    assert any(s.run_id == spec.run_id for s in status(cluster))
    from render.launch.cluster import cancel

    cancel(cluster, spec.run_id)
    with pytest.raises(ApiException) as denied:
        CoreV1Api(api).list_namespaced_secret("llm-experiments")
    assert denied.value.status == 403


# ---------------------------------------------------------------------------------------
# A run launches once: what merges of each kind of change do, as the launch workflow
# runs them (`ftops changes --null`, then `ftops apply --files-from ... --record`)
# ---------------------------------------------------------------------------------------

DATASET = "experiments/alpaca_en"


def git_repo(ws: Path) -> Path:
    from local_repo import git

    git(ws.parent, "init", "-q", "-b", "main", str(ws))
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", "seed")
    return ws


def merge(ws: Path, what: str, devcluster: Any, capsys: pytest.CaptureFixture[str],
          ) -> tuple[int, list[str], str]:
    """Commit the working tree as one merge and run the launch workflow's two steps on
    it; (exit code of apply, the experiments `changes` selected, apply's output)."""
    from local_repo import git

    before = git(ws, "rev-parse", "HEAD").strip()
    git(ws, "add", "-A")
    git(ws, "commit", "-qm", what)
    after = git(ws, "rev-parse", "HEAD").strip()
    capsys.readouterr()
    assert main(["--repo", str(ws), "changes", "--base", before, "--head", after,
                 "--null"]) == 0
    listed = capsys.readouterr().out
    (ws.parent / "changed.nul").write_text(listed)
    code = main(["--repo", str(ws), "apply", "--files-from", str(ws.parent / "changed.nul"),
                 "--record", *kube(devcluster)])
    out = capsys.readouterr()
    return code, [p for p in listed.split("\0") if p], out.out + out.err


def runs_of(devcluster: Any, path: str) -> list[dict[str, Any]]:
    from render.record.identity import EXPERIMENT_PATH_ANNOTATION

    return [js for js in cluster_of(devcluster).jobsets()
            if (js["metadata"].get("annotations") or {}).get(EXPERIMENT_PATH_ANNOTATION) == path]


def workload_of(devcluster: Any, jobset: str) -> dict[str, Any]:
    from render.launch.kube import WORKLOAD_API

    for w in cluster_of(devcluster).resource(*WORKLOAD_API).get(
            namespace="llm-experiments").items:
        w = w.to_dict()
        if any(r.get("name") == jobset for r in w["metadata"].get("ownerReferences") or []):
            return dict(w)
    raise AssertionError(f"no workload for {jobset}")


def block_h100(ws: Path, devcluster: Any, tag: str) -> str:
    """Fill the 16-GPU h100 quota with a high-priority run whose pods stay Running for
    ten minutes (KWOK's delay annotation), so that later h100 runs stay queued."""
    from devcluster.manifests import RUN_DURATION_ANNOTATION

    from render.launch.cluster import apply
    from render.manifests.overlay import render

    full = own(ws, "experiments/alpaca_en/llama-3.1-8b/sft_full_ds3_lr1e-5_v1.yaml", tag)
    exp, _ = Workspace(ws).load(ws / full)
    assert exp is not None
    spec = RunSpec(exp, "ab" * 20)
    (r,) = render([spec], ws / ".rendered-blocker", ws)
    docs = r.manifests
    js = next(d for d in docs if d["kind"] == "JobSet")
    pod = js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]
    pod["metadata"].setdefault("annotations", {})[RUN_DURATION_ANNOTATION] = "600s"
    apply(cluster_of(devcluster), [(spec.run_id, full, docs)])
    wait_for("the blocker admitted", lambda: state_of(devcluster, ws, spec.run_id).state
             in ("admitted", "running"), timeout=60)
    (ws / full).unlink()  # the blocker is not part of the merges below
    return spec.run_id


def delete_runs(devcluster: Any, run_ids: list[str]) -> None:
    from render.launch.cluster import cancel

    for rid in run_ids:
        # a JobSet cancelled just before (foreground deletion under way) can be gone
        # between a listing and the cancel's own: "no JobSet" then means done
        with contextlib.suppress(FatalError):
            cancel(cluster_of(devcluster), rid)
    wait_for("JobSets gone", lambda: not any(
        cluster_of(devcluster).jobsets(f"{RUN_ID_LABEL}={r}") for r in run_ids), timeout=240)


def test_metadata_only_changes_create_no_new_run_and_a_training_change_does(
        ws: Path, devcluster: Any, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Every kind of metadata-only merge (a description typo, a tags line in the
    dataset's _defaults.yaml, a dataset.yaml description, launch.priority, launch.queue)
    selects the experiment but launches nothing; the queued run takes the new priority
    and queue; a training change of the run is refused, and a deliberate re-run
    (launch.rerun) or a new _v2 launches."""
    monkeypatch.delenv("FTOPS_INDEX_REMOTE", raising=False)
    for other in (ws / DATASET).rglob("*_v*.yaml"):
        if other.name != Path(LORA).name and "full" not in other.name:
            other.unlink()
    blocker = block_h100(ws, devcluster, "block")
    lora = own(ws, LORA, "meta")
    git_repo(ws)
    created: list[str] = [blocker]
    try:
        (ws / lora).write_text((ws / lora).read_text().replace("the adapter sweep",
                                                               "the adapter sweeep"))
        code, selected, out = merge(ws, "add the LoRA baseline", devcluster, capsys)
        assert (code, selected) == (0, [lora]) and "created " in out, out
        (first,) = runs_of(devcluster, lora)
        rid = first["metadata"]["labels"][RUN_ID_LABEL]
        created.append(rid)
        entries = sorted(p.name for p in (ws / "outputs-index").rglob("*__*.json"))
        assert entries == [f"{Path(lora).stem}__{rid}.json"]
        assert state_of(devcluster, ws, rid).state == "queued"

        def edit(path: str, old: str, new: str) -> None:
            text = (ws / path).read_text()
            assert old in text, (path, old)
            (ws / path).write_text(text.replace(old, new, 1))

        metadata_only = [
            ("description typo", lambda: edit(lora, "sweeep", "sweep")),
            ("tags in the dataset's _defaults.yaml", lambda: edit(
                f"{DATASET}/_defaults.yaml", "train:\n", "metadata:\n  tags: [alpaca]\ntrain:\n")),
            ("dataset.yaml description", lambda: edit(f"{DATASET}/dataset.yaml",
                                                       "cleaned.", "cleaned up.")),
            ("launch.priority", lambda: edit(lora, "  max_restarts: 2",
                                              "  max_restarts: 2\n  priority: low")),
            ("launch.queue", lambda: edit(lora, "  max_restarts: 2",
                                           "  max_restarts: 2\n  queue: production")),
        ]
        for what, change in metadata_only:
            change()
            code, selected, out = merge(ws, what, devcluster, capsys)
            assert code == 0 and lora in selected, (what, out)
            assert "no new run: metadata only: its JobSet exists" in out, (what, out)
            assert "created " not in out, (what, out)
            assert [js["metadata"]["labels"][RUN_ID_LABEL] for js in runs_of(devcluster, lora)
                    ] == [rid], what
            assert sorted(p.name for p in (ws / "outputs-index").rglob("*__*.json")) == \
                entries, what
            if what == "launch.priority":
                assert "priority-class normal -> low applied to the queued run" in out, out
            if what == "launch.queue":
                assert "queue-name research -> production applied to the queued run" in out
        # Kueue moved the still-queued run: its workload has the new queue and priority
        (js,) = runs_of(devcluster, lora)
        wl = wait_for("the workload moved", lambda: (w := workload_of(
            devcluster, js["metadata"]["name"]))["spec"].get("queueName") == "production"
            and w, timeout=60)
        assert wl["spec"].get("priorityClassName") == "low" and wl["spec"]["priority"] == 100

        # a training change of a run is an edit: refused, nothing created
        edit(lora, "learning_rate: 1.0e-4", "learning_rate: 2.0e-4")
        code, selected, out = merge(ws, "edit the run's learning rate", devcluster, capsys)
        assert code == 1 and selected == [lora]
        assert "has already run" in out and "Traceback" not in out
        assert len(runs_of(devcluster, lora)) == 1
        # ... a deliberate re-run of the config is explicit, and launches once
        edit(lora, "learning_rate: 2.0e-4", "learning_rate: 1.0e-4")
        edit(lora, "  max_restarts: 2", "  max_restarts: 2\n  rerun: 1")
        code, _, out = merge(ws, "re-run the baseline", devcluster, capsys)
        assert code == 0 and "created " in out, out
        ids = {js["metadata"]["labels"][RUN_ID_LABEL] for js in runs_of(devcluster, lora)}
        created += sorted(ids - {rid})
        assert len(ids) == 2
        # ... and so is a new _v<N> with the changed config
        v2 = lora.replace("_v1.yaml", "_v2.yaml")
        (ws / v2).write_text((ws / lora).read_text().replace("learning_rate: 1.0e-4",
                                                             "learning_rate: 2.0e-4"))
        code, selected, out = merge(ws, "a v2 with a higher learning rate", devcluster, capsys)
        assert code == 0 and selected == [v2] and "created " in out, out
        created += [js["metadata"]["labels"][RUN_ID_LABEL] for js in runs_of(devcluster, v2)]
        assert len(created) == 4
    finally:
        delete_runs(devcluster, created)


def test_two_merges_before_the_first_launch_records_cannot_launch_two_configs(
        ws: Path, devcluster: Any, capsys: pytest.CaptureFixture[str]) -> None:
    """PR A launches the experiment (its record has not landed yet); PR B, merged after
    it, changed the training config of the same file: the launch job finds A's JobSet in
    the cluster and refuses B rather than running another config under the same name."""
    lora = own(ws, LORA, "race")
    args = ["--repo", str(ws), "apply", lora, *kube(devcluster)]  # no record (yet)
    assert main(args) == 0
    (first,) = runs_of(devcluster, lora)
    try:
        (ws / lora).write_text((ws / lora).read_text().replace("lora_rank: 8 ", "lora_rank: 16"))
        capsys.readouterr()
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "already has run" in err and "different launch identity" in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert len(runs_of(devcluster, lora)) == 1
    finally:
        delete_runs(devcluster, [first["metadata"]["labels"][RUN_ID_LABEL]])
