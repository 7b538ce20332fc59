"""Immutability is judged against the base branch, not the pull request
(`ftops lint --index-ref`, `ftops plan --base`, render.record.indexref), in a real git
repository: a PR cannot unlock an edit by deleting, rewriting or symlinking away the
index entry of a run; the plan flags PR edits of index entries, says "no new run" for
metadata-only changes, and shows what a k8s-base/ change does to the manifests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lint_harness import make_workspace, record_run
from local_repo import git

from render.browse.runlog import RUNS_CSV
from render.browse.summary import SUMMARY_NAME
from render.browse.sync import write_readme
from render.cli import main
from render.manifests.runspec import RunSpec
from render.propose.experiment import Workspace
from render.record.indexref import edits_since, entries_at

LORA = "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"
MODEL_INDEX = "outputs-index/alpaca_en/llama-3.1-8b"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main: the shipped experiments and a run of LORA in outputs-index/."""
    root = make_workspace(tmp_path)
    exp, _ = Workspace(root).load(root / LORA)
    assert exp is not None
    record_run(root, LORA, RunSpec(exp, "0" * 40).run_id, exp.config_hash, mode="cluster",
               image=exp.launch.image)
    write_readme(root / "outputs-index")
    git(tmp_path, "init", "-q", "-b", "main", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "main with one run")
    git(root, "checkout", "-qb", "pr")
    return root


def entry_of(root: Path) -> Path:
    (found,) = (root / MODEL_INDEX).glob("sft_lora_r8_lr1e-4_v1__*.json")
    return found


def edit_config(root: Path) -> None:
    path = root / LORA
    path.write_text(path.read_text().replace("learning_rate: 1.0e-4", "learning_rate: 3.0e-4"))


def lint_codes(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, int, str]:
    """(exit of `ftops lint`, exit of `ftops lint --index-ref main`, the latter's text)."""
    plain = main(["--repo", str(root), "lint"])
    capsys.readouterr()
    based = main(["--repo", str(root), "lint", "--index-ref", "main"])
    out = capsys.readouterr()
    return plain, based, out.out + out.err


def cheat_delete(root: Path) -> None:
    entry_of(root).unlink()
    write_readme(root / "outputs-index")


def cheat_rewrite_hash(root: Path) -> None:
    exp, _ = Workspace(root).load(root / LORA)
    assert exp is not None
    path = entry_of(root)
    data = json.loads(path.read_text())
    data["config_hash"] = exp.config_hash
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def cheat_symlink(root: Path) -> None:
    empty = root / "empty"
    empty.mkdir()
    shutil.rmtree(root / "outputs-index/alpaca_en")
    (root / "outputs-index/alpaca_en").symlink_to("../empty", target_is_directory=True)


@pytest.mark.parametrize("cheat", [cheat_delete, cheat_rewrite_hash, cheat_symlink],
                         ids=["delete the entry", "rewrite its config_hash",
                              "symlink the dataset folder away"])
def test_an_edit_cannot_be_unlocked_by_editing_the_index(repo: Path, cheat: object,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    edit_config(repo)
    assert lint_codes(repo, capsys)[:2] == (1, 1)  # refused either way, without a cheat
    cheat(repo)  # type: ignore[operator]
    plain, based, text = lint_codes(repo, capsys)
    assert plain == 0  # the checkout's index no longer knows the run ...
    assert based == 1  # ... main's does
    assert "has already run" in text and "Traceback" not in text
    # and the plan flags the edit of the index
    assert main(["--repo", str(repo), "plan", "--base", "main", "--files-from", "/dev/null"]
                ) == 0
    plan = capsys.readouterr().out
    assert "### outputs-index/ entries edited by this change" in plan
    assert "Only the bot writes entries" in plan


def test_plan_lists_each_index_edit(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_config(repo)
    cheat_rewrite_hash(repo)
    forged = repo / MODEL_INDEX / "sft_full_ds3_lr1e-5_v1__0123456789.json"
    forged.write_text(entry_of(repo).read_text())
    # what `ftops index readme` regenerates is not an edit (browse's names: one list)
    # (a dataset's runs.csv, and the one runs.csv at the top that came before them)
    for name in (RUNS_CSV, SUMMARY_NAME, f"alpaca_en/{RUNS_CSV}"):
        (repo / "outputs-index" / name).write_text("regenerated\n")
    edits = edits_since(repo, "main")
    assert [what for what, _ in edits] == ["added", "modified"]  # by path
    cheat_symlink(repo)
    edits = edits_since(repo, "main")
    assert ("added (a symlink)", "outputs-index/alpaca_en") in edits
    assert any(what == "deleted" for what, _ in edits)
    hostile = repo / "outputs-index" / "x@org` <img src=x>|y.json"
    hostile.write_text("{}")
    assert main(["--repo", str(repo), "plan", "--base", "main", "--files-from", "/dev/null"]
                ) == 0
    plan = capsys.readouterr().out
    assert "- added (a symlink) `outputs-index/alpaca_en`" in plan
    # a hostile name stays inside a code span (no HTML, no @mention)
    assert "- added `outputs-index/x@org' <img src=x>|y.json`" in plan


def test_entries_at_reads_git_not_the_working_tree(repo: Path) -> None:
    shutil.rmtree(repo / "outputs-index")
    at = entries_at(repo, "main")
    assert [r.experiment for r in at.records] == ["sft_lora_r8_lr1e-4_v1"]
    assert at.problems == []
    with pytest.raises(Exception, match="not a commit"):
        entries_at(repo, "--upload-pack=x")
    with pytest.raises(Exception, match="not a commit of the repository"):
        entries_at(repo, "no-such-branch")


def test_metadata_only_change_plans_no_new_run(repo: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    path = repo / LORA
    path.write_text(path.read_text().replace("the baseline", "our baseline")
                    .replace("num_train_epochs: 3.0", "num_train_epochs: 3"))
    assert main(["--repo", str(repo), "lint", "--index-ref", "main"]) == 0
    assert main(["--repo", str(repo), "plan", "--base", "main", LORA]) == 0
    plan = capsys.readouterr().out
    assert "0 experiment(s) will launch on merge, 0 GPU(s) in all; 1 changed without a " \
           "new run (metadata only)." in plan
    assert "**no new run: metadata only.**" in plan and "run id" not in plan
    # a training change of an experiment that never ran still launches
    full = "experiments/alpaca_en/llama-3.1-8b/sft_full_ds3_lr1e-5_v1.yaml"
    assert main(["--repo", str(repo), "plan", "--base", "main", full]) == 0
    plan = capsys.readouterr().out
    assert "1 experiment(s) will launch on merge, 16 GPU(s) in all." in plan


def test_k8s_base_change_shows_the_manifest_diff_of_what_it_affects(
        repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gcsfuse = repo / "k8s-base/components/storage-gcsfuse/kustomization.yaml"
    gcsfuse.write_text(gcsfuse.read_text().replace("implicit-dirs,", "implicit-dirs,ro,"))
    git(repo, "commit", "-qam", "gcsfuse: read-only mount option")
    # `ftops changes` selects nothing: no experiment is relaunched
    assert main(["--repo", str(repo), "changes", "--base", "main", "--head", "HEAD"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["--repo", str(repo), "plan", "--base", "main", "--files-from", "/dev/null"]
                ) == 0
    plan = capsys.readouterr().out
    assert "No experiment changes: nothing will launch." in plan
    assert "### k8s-base/ changes the manifests" in plan
    from render.propose.lint import require_clean

    # every run on gcsfuse storage: each sweep point, not a stage that waits for its input
    gcs = [e for e in require_clean(Workspace(repo))
           if "demo" not in e.path and not e.waiting]
    assert len(gcs) >= 10
    assert f"the rendered manifests of {len(gcs)} experiment(s) differ" in plan
    for exp in gcs:
        shown = exp.path if exp.point is None else f"{exp.path} ({exp.point.label})"
        assert f"<summary>`{shown}`</summary>" in plan
    assert "demo/tiny-llama" not in plan  # ephemeral storage: unaffected
    assert plan.count("+                  mountOptions: implicit-dirs,ro,file-cache") == len(gcs)
