"""`ftops changes` on real git repositories made in tmp_path."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from render.errors import FatalError
from render.propose.changes import changed_experiments

ZERO = "0" * 40

DS_JSON = "experiments/_deepspeed/ds_z3.json"
DS2_JSON = "experiments/_deepspeed/ds_z2.json"
A_DEF = "experiments/alpaca/_defaults.yaml"
A_DATA = "experiments/alpaca/dataset.yaml"
A_L_DEF = "experiments/alpaca/llama/_defaults.yaml"
A_L_1 = "experiments/alpaca/llama/sft_lora_v1.yaml"
A_L_FULL = "experiments/alpaca/llama/sft_full_v1.yaml"
A_Q_1 = "experiments/alpaca/qwen/sft_lora_v1.yaml"
A_Q_DS = "experiments/alpaca/qwen/sft_full_v1.yaml"
U_L_1 = "experiments/uf/llama/dpo_lora_v1.yaml"
U_DATA = "experiments/uf/dataset.yaml"


@pytest.fixture()
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Hermetic git: no user or system config, fixed identity and dates."""
    env = {
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z",
        "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
        "HOME": str(tmp_path / "home"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class Repo:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        return subprocess.run(["git", "-C", str(self.root), *args], check=True,
                              capture_output=True, text=True).stdout.strip()

    def write(self, rel: str, text: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def commit(self, message: str = "change") -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def changed(self, before: str, after: str = "HEAD") -> list[str]:
        return changed_experiments(self.root, before, after)


def exp(lr: str = "1.0e-4", deepspeed: str | None = None) -> str:
    text = f"launch:\n  nodes: 1\ntrain:\n  stage: sft\n  learning_rate: {lr}\n"
    if deepspeed:
        text += f"  deepspeed: {deepspeed}\n"
    return text


@pytest.fixture()
def repo(tmp_path: Path, git_env: dict[str, str]) -> Repo:
    r = Repo(tmp_path / "repo")
    r.write("README.md", "# repo\n")
    r.write("experiments/README.md", "# experiments\n")
    r.write(DS_JSON, '{"zero_optimization": {"stage": 3}}\n')
    r.write(DS2_JSON, '{"zero_optimization": {"stage": 2}}\n')
    r.write(A_DEF, "train:\n  cutoff_len: 1024\n")
    r.write(A_DATA, "dataset_info: {}\n")
    r.write(A_L_DEF, f"train:\n  model_name_or_path: meta-llama/x\n  deepspeed: {DS_JSON}\n")
    r.write(A_L_1, exp())
    r.write(A_L_FULL, exp("1.0e-5"))  # inherits ds_z3 from the model defaults
    r.write(A_Q_1, exp())
    r.write(A_Q_DS, exp("1.0e-5", deepspeed=DS2_JSON))
    r.write(U_DATA, "dataset_info: {}\n")
    r.write(U_L_1, exp())
    r.commit("initial")
    return r


def test_added_experiment(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    new = "experiments/uf/llama/dpo_lora_v2.yaml"
    repo.write(new, exp("5.0e-5"))
    repo.commit()
    assert repo.changed(base) == [new]


def test_edited_experiment(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(A_Q_1, exp("2.0e-4"))
    repo.commit()
    assert repo.changed(base) == [A_Q_1]


def test_renamed_experiment_selects_the_new_path(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    new = "experiments/alpaca/qwen/sft_lora_r8_v1.yaml"
    repo.git("mv", A_Q_1, new)
    repo.commit()
    assert "R" in repo.git("diff", "--name-status", "-M", base, "HEAD")
    assert repo.changed(base) == [new]


def test_copied_experiment_selects_the_copy(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    new = "experiments/alpaca/qwen/sft_lora_v2.yaml"
    repo.write(new, exp())
    repo.commit()
    assert repo.changed(base) == [new]


def test_deleted_experiment_selects_nothing(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.git("rm", "-q", A_Q_1)
    repo.commit()
    assert repo.changed(base) == []


def test_dataset_level_defaults_select_the_whole_dataset(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(A_DEF, "train:\n  cutoff_len: 2048\n")
    repo.commit()
    assert repo.changed(base) == sorted([A_L_FULL, A_L_1, A_Q_DS, A_Q_1])


def test_model_level_defaults_select_the_model_folder(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(A_L_DEF, f"train:\n  model_name_or_path: meta-llama/y\n  deepspeed: {DS_JSON}\n")
    repo.commit()
    assert repo.changed(base) == [A_L_FULL, A_L_1]


def test_new_model_defaults_select_the_model_folder(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("experiments/alpaca/qwen/_defaults.yaml", "train:\n  template: qwen\n")
    repo.commit()
    assert repo.changed(base) == [A_Q_DS, A_Q_1]


def test_dataset_yaml_selects_the_dataset(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(U_DATA, "dataset_info:\n  uf: {num_samples: 10}\n")
    repo.commit()
    assert repo.changed(base) == [U_L_1]


def test_defaults_change_uses_the_experiments_as_of_head(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(A_L_DEF, "train:\n  model_name_or_path: meta-llama/z\n")
    repo.git("rm", "-q", A_L_FULL)
    added = "experiments/alpaca/llama/sft_lora_v2.yaml"
    repo.write(added, exp())
    repo.commit()
    assert repo.changed(base) == [A_L_1, added]


def test_deleted_defaults_select_what_they_affected(repo: Repo) -> None:
    """Deleting a _defaults.yaml changes how the experiments left under it resolve."""
    base = repo.git("rev-parse", "HEAD")
    repo.git("rm", "-q", A_L_DEF)
    repo.commit()
    assert repo.changed(base) == [A_L_FULL, A_L_1]


def test_deepspeed_change_selects_the_experiments_that_resolve_to_it(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(DS_JSON, '{"zero_optimization": {"stage": 3, "overlap_comm": true}}\n')
    repo.commit()
    # ds_z3 comes from the llama model defaults: both llama experiments, nothing else
    assert repo.changed(base) == [A_L_FULL, A_L_1]


def test_deepspeed_override_in_the_experiment_wins(repo: Repo) -> None:
    repo.write(A_L_1, exp(deepspeed=DS2_JSON))  # overrides the inherited ds_z3
    base = repo.commit()
    repo.write(DS2_JSON, '{"zero_optimization": {"stage": 2, "overlap_comm": true}}\n')
    repo.commit()
    assert repo.changed(base) == [A_L_1, A_Q_DS]
    repo.write(DS_JSON, '{"zero_optimization": {"stage": 3, "x": 1}}\n')
    head = repo.commit()
    assert repo.changed(f"{head}~1", head) == [A_L_FULL]


def test_unused_deepspeed_config_selects_nothing(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("experiments/_deepspeed/ds_z1.json", "{}\n")
    repo.commit()
    assert repo.changed(base) == []


def test_non_experiment_changes_select_nothing(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("README.md", "# repo, edited\n")
    repo.write("experiments/README.md", "# experiments, edited\n")
    repo.write("render/x.py", "x = 1\n")
    repo.commit()
    assert repo.changed(base) == []


def test_invalid_layout_file_selects_nothing(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write("experiments/alpaca/llama/notes/x.yaml", "a: 1\n")  # lint reports it
    repo.commit()
    assert repo.changed(base) == []


def test_several_commits_in_one_push(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(A_Q_1, exp("3.0e-4"))
    repo.commit("one")
    repo.write(U_DATA, "dataset_info: {a: 1}\n")
    repo.commit("two")
    repo.write(A_Q_1, exp())  # back to the original: no net change
    repo.commit("three")
    assert repo.changed(base) == [U_L_1]


def test_pull_request_diff_leaves_out_what_main_gained(repo: Repo) -> None:
    branch_point = repo.git("rev-parse", "HEAD")
    repo.git("checkout", "-q", "-b", "feature")
    new = "experiments/uf/llama/dpo_lora_v2.yaml"
    repo.write(new, exp())
    head = repo.commit("feature")
    repo.git("checkout", "-q", "main")
    repo.write(A_Q_1, exp("9.0e-4"))  # lands on main after the branch point
    main_tip = repo.commit("main moves on")
    assert repo.changed(main_tip, head) == [new]
    assert repo.changed(branch_point, head) == [new]


def test_new_branch_selects_nothing_and_says_so(
        repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert repo.changed(ZERO) == []
    assert "all zeros" in capsys.readouterr().err


def test_unknown_commit_is_a_clear_error(repo: Repo) -> None:
    with pytest.raises(FatalError, match="base commit 'deadbeef' is not in the repository"):
        repo.changed("deadbeef")
    with pytest.raises(FatalError, match="head commit"):
        repo.changed("HEAD", "f" * 40)
    with pytest.raises(FatalError, match="not a commit name"):
        repo.changed("--output=/tmp/x")


def test_not_a_repository(tmp_path: Path, git_env: dict[str, str]) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(FatalError):
        changed_experiments(tmp_path / "plain", "HEAD~1", "HEAD")


def test_odd_file_names(repo: Repo) -> None:
    base = repo.git("rev-parse", "HEAD")
    new = "experiments/alpaca/qwen/sft lora é_v1.yaml"  # quoted by git without -z
    repo.write(new, exp())
    repo.commit()
    assert repo.changed(base) == [new]


def test_deepspeed_with_odd_names_and_missing_layers(repo: Repo) -> None:
    odd = "experiments/new set/m 1/sft 1_v1.yaml"  # no defaults files: missing layers
    repo.write(odd, exp(deepspeed=DS2_JSON))
    base = repo.commit()
    repo.write(DS2_JSON, '{"zero_optimization": {"stage": 2, "y": 1}}\n')
    repo.commit()
    assert repo.changed(base) == [A_Q_DS, odd]


def _parser() -> argparse.ArgumentParser:
    """The CLI's one parser table (render.cli)."""
    from render.cli import build_parser

    return build_parser()


def test_cli_lines_and_json(repo: Repo, capsys: pytest.CaptureFixture[str]) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(A_L_DEF, "train:\n  model_name_or_path: meta-llama/q\n")
    head = repo.commit()
    args = _parser().parse_args(["--repo", str(repo.root), "changes", "--base", base,
                                 "--head", head])
    assert args.func(args) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [A_L_FULL, A_L_1]
    assert "2 experiment(s)" in out.err
    args = _parser().parse_args(["--repo", str(repo.root), "changes", "--base", base,
                                 "--head", head, "--format", "json"])
    assert args.func(args) == 0
    assert json.loads(capsys.readouterr().out) == [A_L_FULL, A_L_1]


def test_cli_as_installed(repo: Repo) -> None:
    """Through the real `ftops` entry point (the console script)."""
    base = repo.git("rev-parse", "HEAD")
    repo.write(A_Q_1, exp("7.0e-4"))
    head = repo.commit()
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ftops"), "--repo", str(repo.root), "changes",
         "--base", base, "--head", head], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [A_Q_1]


def test_cli_github_output(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    base = repo.git("rev-parse", "HEAD")
    repo.write(A_Q_1, exp("6.0e-4"))
    head = repo.commit()
    out = tmp_path / "github_output"
    out.write_text("earlier=1\n", encoding="utf-8")
    monkeypatch.setenv("GITHUB_OUTPUT", str(out))
    argv = ["--repo", str(repo.root), "changes", "--base", base, "--head", head,
            "--github-output"]
    args = _parser().parse_args(argv)
    assert args.func(args) == 0
    assert out.read_text(encoding="utf-8") == "earlier=1\ncount=1\n"
    assert capsys.readouterr().out == A_Q_1 + "\n"
    monkeypatch.delenv("GITHUB_OUTPUT")
    with pytest.raises(FatalError, match="GITHUB_OUTPUT"):
        args.func(args)


# -- file names that could become structure (issue 10, item 8c) -------------------------

CONTROL_NAMES = [
    "experiments/alpaca/qwen/x_v1.yaml\n--dry-run.yaml",  # a newline: a second argument
    "experiments/alpaca/qwen/tab\there_v1.yaml",
    "experiments/alpaca/qwen/cr\rhere_v1.yaml",
    "experiments/alpaca/qwen/esc\x1b[31m_v1.yaml",
    "experiments/alpaca/qwen/del\x7f_v1.yaml",
    "experiments/alpaca/qwen\nx/sft_v1.yaml",  # in a folder name
]


@pytest.mark.parametrize("name", CONTROL_NAMES, ids=lambda n: repr(n)[1:-1][:40])
def test_names_with_control_characters_are_refused(repo: Repo, name: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from render.cli import main

    base = repo.git("rev-parse", "HEAD")
    repo.write(name, exp())
    repo.commit()
    with pytest.raises(FatalError, match="control character") as err:
        repo.changed(base)
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)
    assert main(["--repo", str(repo.root), "changes", "--base", base, "--head", "HEAD"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "Traceback" not in out.err
    (line,) = out.err.strip().splitlines()
    assert "rename it" in line


def test_a_control_character_under_a_changed_folder_is_refused(repo: Repo) -> None:
    repo.write("experiments/alpaca/llama/odd\nname_v1.yaml", exp())
    base = repo.commit()
    repo.write(A_DEF, "train:\n  cutoff_len: 2048\n")  # selects every experiment under it
    repo.commit()
    with pytest.raises(FatalError, match="control character"):
        repo.changed(base)


def test_paths_travel_nul_delimited_to_ftops(repo: Repo, tmp_path: Path) -> None:
    """The workflows' pipeline, for real: `ftops changes --null > changed.nul`, then
    `xargs --null --no-run-if-empty --arg-file=changed.nul <command>`: odd but legal
    names arrive as one argument each, and an empty list runs nothing."""
    base = repo.git("rev-parse", "HEAD")
    odd = ["experiments/alpaca/qwen/sft lora é_v1.yaml",
           "experiments/alpaca/qwen/--dry-run_v1.yaml",
           "experiments/alpaca/qwen/quote'\"_v1.yaml"]
    for name in odd:
        repo.write(name, exp())
    repo.commit()
    listed = tmp_path / "changed.nul"
    with listed.open("wb") as fh:
        subprocess.run([sys.executable, "-m", "render", "--repo", str(repo.root), "changes",
                        "--base", base, "--head", "HEAD", "--null"], stdout=fh, check=True)
    assert listed.read_bytes().endswith(b"\0") and b"\n" not in listed.read_bytes()
    show = [sys.executable, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))"]
    out = subprocess.run(["xargs", "--null", "--no-run-if-empty", f"--arg-file={listed}",
                          *show], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == sorted(odd)
    # --files-from reads the same list (an empty one selects nothing, not everything)
    from render.cli import _files_from

    assert [str(p) for p in _files_from(str(listed))] == sorted(odd)
    empty = tmp_path / "empty.nul"
    empty.write_bytes(b"")
    assert _files_from(str(empty)) == []
    ran = subprocess.run(["xargs", "--null", "--no-run-if-empty", f"--arg-file={empty}",
                          *show], capture_output=True, text=True, check=True).stdout
    assert ran == ""
    bad = tmp_path / "bad.nul"
    bad.write_bytes(b"experiments/a/b/x\n--dry-run.yaml\0")
    with pytest.raises(FatalError, match="control character"):
        _files_from(str(bad))
