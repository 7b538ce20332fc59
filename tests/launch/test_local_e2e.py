"""The main job end to end on one machine, with real parts: LLaMA-Factory training on
the tiny demo model and its evaluation after training (the demo's `evaluate:` block:
LLaMA-Factory's predict step), the post-run hook, a bare git remote for the index, a GCS
emulator server for bucket storage, and an MLflow tracking server."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_repo import git, make_repo

from render.cli import main
from render.manifests.runspec import RunSpec, git_commit
from render.propose.experiment import Workspace
from render.record.runrecord import RunRecord

DEMO = "experiments/demo/tiny-llama/sft_lora_v1.yaml"
pytestmark = pytest.mark.slow


@pytest.fixture
def repo(tmp_path: Path, demo_assets: Path) -> tuple[Path, Path]:
    return make_repo(tmp_path, demo_assets)


def run_dir(repo: Path, path: str = DEMO) -> Path:
    ws = Workspace(repo)
    exp, _ = ws.load(repo / path)
    assert exp is not None
    return repo / "outputs" / RunSpec(exp, git_commit(repo)).run_path


def clone(remote: Path, dest: Path) -> Path:
    git(remote.parent, "clone", "-q", str(remote), str(dest))
    return dest


def test_demo_end_to_end_publishes_to_bare_remote(repo: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    work, remote = repo
    assert main(["--repo", str(work), "lint"]) == 0
    assert main(["--repo", str(work), "render", DEMO]) == 0
    code = main(["--repo", str(work), "launch", "--local", DEMO, "--work",
                 str(work / "outputs"), "--no-progress", "--index-remote", str(remote)])
    out = capsys.readouterr().out
    assert code == 0, out
    out_dir = run_dir(work)
    for name in ("run.json", "loss_curve.png", "trainer_log.jsonl", "trainer_state.json",
                 "adapter_model.safetensors", "all_results.json"):
        assert (out_dir / name).is_file(), name
    record = RunRecord.from_json((out_dir / "run.json").read_text())
    assert record.status == "succeeded" and record.exit_code == 0
    assert record.metrics.final_train_loss is not None
    assert record.metrics.best_train_loss <= record.metrics.final_train_loss
    assert record.git_sha == git_commit(work)
    assert record.loss_curve.endswith("loss_curve.png")
    # the evaluation after training: LLaMA-Factory's predict step on the trained adapter
    holdout = record.evaluations["holdout"]
    assert holdout.status == "succeeded" and holdout.exit_code == 0, holdout.message
    assert holdout.dataset == "demo_eval" and holdout.samples == 8  # max_samples
    for key in ("bleu-4", "rouge-1", "rouge-2", "rouge-l", "runtime"):
        assert isinstance(holdout.metrics[key], float), key
    predictions = out_dir / "eval/holdout/generated_predictions.jsonl"
    assert holdout.predictions == predictions.as_uri()  # linked, not copied
    assert len(predictions.read_text().splitlines()) == 8
    assert (out_dir / "logs/eval-holdout.log").is_file()
    assert record.metrics.eval_loss is not None  # the in-training eval on demo_eval
    checkout = clone(remote, tmp_path / "checkout")
    index = checkout / "outputs-index"
    entry = index / record.index_key
    assert RunRecord.from_json(entry.read_text()).evaluations == record.evaluations
    readme = (index / "README.md").read_text()
    assert record.run_id in readme and "succeeded" in readme
    # the index shows the evaluation: the leaderboard the demo's dataset.yaml names
    # (BLEU-4 of holdout, higher first), the model README's columns, runs.csv
    bleu = format(holdout.metrics["bleu-4"], ".4g")
    assert f"| BLEU-4 (holdout) ↑ | **{bleu}** | sft_lora_v1 · {record.run_id} |" in readme
    board = (index / "demo/README.md").read_text()
    assert f"| 1 | [sft_lora_v1](../../{DEMO}) · {record.run_id} |" in board
    model = (index / "demo/tiny-llama/README.md").read_text()
    assert "| BLEU-4 (holdout) ↑ | eval loss | links |" in model
    assert f"[predictions]({predictions.as_uri()})" in model
    log = next(csv.DictReader(io.StringIO((index / "demo/runs.csv").read_text())))
    assert float(log["holdout/bleu-4"]) == holdout.metrics["bleu-4"]
    assert main(["--repo", str(checkout), "index", "check"]) == 0
    # a second launch never overwrites the run
    assert main(["--repo", str(work), "launch", "--local", DEMO, "--work",
                 str(work / "outputs"), "--no-progress"]) == 1
    assert "never overwritten" in capsys.readouterr().err


def test_killed_run_resumes_from_checkpoint_as_one_run(repo: tuple[Path, Path]) -> None:
    work, _ = repo
    long = work / "experiments/demo/tiny-llama/sft_lora_long_v1.yaml"
    long.write_text((work / DEMO).read_text().replace("num_train_epochs: 2.0",
                                                      "num_train_epochs: 12.0"))
    rel = str(long.relative_to(work))
    out_dir = run_dir(work, rel)
    cmd = [sys.executable, "-m", "render", "--repo", str(work), "launch", "--local", rel,
           "--work", str(work / "outputs"), "--no-progress"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while not list(out_dir.glob("checkpoint-*/trainer_state.json")):
        assert proc.poll() is None, "training ended before a checkpoint appeared"
        assert time.time() < deadline
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    state = json.loads((out_dir / "trainer_state.json").read_text()) if (
        out_dir / "trainer_state.json").exists() else {}
    assert not (out_dir / "run.json").exists()
    complete = sorted(int(p.parent.name.split("-")[1])
                      for p in out_dir.glob("checkpoint-*/trainer_state.json"))
    assert state.get("global_step", 0) < 192
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    log = (out_dir / "logs" / "train.log").read_text()
    assert f"Resuming training from {out_dir}/checkpoint-{complete[-1]}" in log
    final = json.loads((out_dir / "trainer_state.json").read_text())
    assert final["global_step"] == 192  # 64 examples / 4 per step x 12 epochs
    record = RunRecord.from_json((out_dir / "run.json").read_text())
    assert record.status == "succeeded"
    entries = list((work / "outputs-index").rglob("sft_lora_long_v1__*.json"))
    assert [e.name for e in entries] == [f"sft_lora_long_v1__{record.run_id}.json"]


FIRST_PUSH_ONLY = """#!/bin/sh
n=$(cat pushes 2>/dev/null || echo 0)
echo $((n + 1)) > pushes
[ "$n" -eq 0 ] && exit 0
echo 'pushes are closed' >&2
exit 1
"""


def test_refused_push_loses_nothing_and_reconcile_heals(repo: tuple[Path, Path],
                                                       tmp_path: Path) -> None:
    """The run's start is recorded (the `launched` entry: the remote takes that first
    push), then the remote refuses every push: the run succeeds, its record waits in
    storage, and reconcile lands it, checked against the launched entry."""
    work, remote = repo
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(FIRST_PUSH_ONLY)
    hook.chmod(0o755)
    code = main(["--repo", str(work), "launch", "--local", DEMO, "--work",
                 str(work / "outputs"), "--no-progress", "--index-remote", str(remote)])
    assert code == 0  # the run succeeded; only publishing its end failed
    out_dir = run_dir(work)
    record = RunRecord.from_json((out_dir / "run.json").read_text())
    assert record.status == "succeeded"
    started = clone(remote, tmp_path / "started")
    assert RunRecord.from_json((started / "outputs-index" / record.index_key).read_text()
                               ).status == "launched"
    hook.unlink()
    assert main(["--repo", str(work), "index", "reconcile", "--storage",
                 str(work / "outputs"), "--remote", str(remote)]) == 0
    checkout = clone(remote, tmp_path / "checkout")
    entry = RunRecord.from_json((checkout / "outputs-index" / record.index_key).read_text())
    assert entry.to_json() == record.to_json()
    assert record.run_id in (checkout / "outputs-index" / "README.md").read_text()


def test_an_index_that_cannot_record_the_start_starts_nothing(
        repo: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    work, remote = repo
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'pushes are closed' >&2\nexit 1\n")
    hook.chmod(0o755)
    code = main(["--repo", str(work), "launch", "--local", DEMO, "--work",
                 str(work / "outputs"), "--no-progress", "--index-remote", str(remote)])
    err = capsys.readouterr().err
    assert code == 1 and "cannot record the start of run" in err and "Nothing was trained" in err
    assert not list(run_dir(work).glob("logs/*")) and not (run_dir(work) / "run.json").exists()


def test_the_demo_leaves_the_checkout_as_it_was(repo: tuple[Path, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`ftops demo` (the README's first command) records its run in .demo/outputs-index/
    and changes no tracked file, so the README's second command runs on the same tree."""
    from render.browse.readme import render_readme

    work, _ = repo
    git(work, "add", "-A")
    git(work, "commit", "-qm", "a clean tree", "--allow-empty")
    assert main(["--repo", str(work), "demo", "--work", str(work / "outputs")]) == 0
    out = capsys.readouterr().out
    assert "browse: .demo/outputs-index/demo/tiny-llama/README.md" in out
    assert git(work, "status", "--porcelain", "--untracked-files=all") == ""
    assert (work / "outputs-index/README.md").read_text() == render_readme([])
    demo_index = work / ".demo/outputs-index"
    (entry,) = demo_index.rglob("sft_lora_v1__*.json")
    assert RunRecord.from_json(entry.read_text()).status == "succeeded"
    # the demo's index ranks by the leaderboard its dataset.yaml names, as the real one
    assert "ranked by **BLEU-4 (holdout)**" in (demo_index / "demo/README.md").read_text()
    assert main(["--repo", str(work), "index", "check"]) == 0
    assert main(["--repo", str(work), "lint"]) == 0


def test_bucket_storage_uploads_artifacts(repo: tuple[Path, Path], gcs_emulator: object) -> None:
    from render.record.storage import open_storage

    work, _ = repo
    root = gcs_emulator.root  # type: ignore[attr-defined]
    assert main(["--repo", str(work), "launch", "--local", DEMO, "--work",
                 str(work / "outputs"), "--storage", root, "--no-progress"]) == 0
    storage = open_storage(root)
    runs = storage.list_keys("experiments/", "/run.json")
    assert len(runs) == 1
    record = RunRecord.from_json(storage.read_text(runs[0]) or "")
    assert record.artifacts_uri.startswith("gs://") and record.status == "succeeded"
    prefix = runs[0].rsplit("/", 1)[0]
    keys = storage.list_keys(prefix + "/")
    assert f"{prefix}/adapter_model.safetensors" in keys
    assert f"{prefix}/loss_curve.png" in keys
    # the evaluation's predictions went up with the run, and the record links them there
    assert f"{prefix}/eval/holdout/generated_predictions.jsonl" in keys
    assert record.evaluations["holdout"].predictions == storage.uri(
        f"{prefix}/eval/holdout/generated_predictions.jsonl")
    # the local index entry points at the bucket
    entry = work / "outputs-index" / record.index_key
    assert RunRecord.from_json(entry.read_text()).artifacts_uri == record.artifacts_uri


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    log = open(root / "server.log", "w")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, (root / "server.log").read_text()[-2000:]
            assert time.time() < deadline, "mlflow server did not start"
            time.sleep(1)
    yield url
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:  # gunicorn workers slow to stop on a busy machine
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    log.close()


def test_mlflow_run_carries_our_name_and_tags(repo: tuple[Path, Path], mlflow_server: str,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    work, _ = repo
    exp_file = work / "experiments/demo/tiny-llama/sft_lora_mlflow_v1.yaml"
    exp_file.write_text((work / DEMO).read_text().replace("report_to: none",
                                                          "report_to: mlflow"))
    # the profile names this server and where people open it (its `mlflow_ui`)
    profile = work / "k8s-base/cluster-profile.yaml"
    profile.write_text(profile.read_text().replace(
        "mlflow_tracking_uri: http://mlflow.mlops.svc.cluster.local:5000",
        f"mlflow_tracking_uri: {mlflow_server}").replace(
        "mlflow_ui: https://mlflow.example.com", "mlflow_ui: https://mlflow-ui.example/"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "demo/tiny-llama")
    monkeypatch.delenv("FTOPS_MLFLOW_UI", raising=False)
    rel = str(exp_file.relative_to(work))
    assert main(["--repo", str(work), "launch", "--local", rel, "--work",
                 str(work / "outputs"), "--no-progress"]) == 0
    record = RunRecord.from_json((run_dir(work, rel) / "run.json").read_text())
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("demo/tiny-llama")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id],
                                f"tags.`ftops.run_id` = '{record.run_id}'")
    assert run.info.run_name == f"sft_lora_mlflow_v1-{record.run_id}"
    assert run.data.tags["ftops.experiment_path"] == rel
    assert run.data.tags["ftops.config_hash"] == record.config_hash
    assert run.data.tags["ftops.git_sha"] == record.git_sha
    assert "train_loss" in run.data.metrics or "loss" in run.data.metrics
    # the record links the run in the profile's MLflow UI ...
    assert record.tracker_url == (f"https://mlflow-ui.example/#/experiments/"
                                  f"{experiment.experiment_id}/runs/{run.info.run_id}")
    # ... and the run holds the evaluation's scores beside the training metrics
    holdout = record.evaluations["holdout"]
    assert holdout.status == "succeeded"
    assert run.data.metrics["holdout/bleu-4"] == pytest.approx(holdout.metrics["bleu-4"])
    assert run.data.metrics["holdout/rouge-l"] == pytest.approx(holdout.metrics["rouge-l"])
    # the README links it as "tracker"
    readme = (work / "outputs-index/demo/tiny-llama/README.md").read_text()
    assert f"[tracker]({record.tracker_url})" in readme
