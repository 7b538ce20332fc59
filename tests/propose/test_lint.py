from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from lint_harness import REPO, fixtures, make_workspace, read_fixture, record_run

from render.cli import main
from render.propose.experiment import Workspace
from render.propose.lint import lint


@pytest.fixture
def ws_root(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


def place(root: Path, source: Path) -> tuple[Path, list[str]]:
    fx = read_fixture(source)
    dest = root / fx.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(fx.text, encoding="utf-8")
    return dest, fx.expect


def test_every_shipped_experiment_lints_clean() -> None:
    result = lint(Workspace(REPO))
    assert [f.format() for f in result.findings] == []
    shipped = {p.relative_to(REPO).as_posix() for p in (REPO / "experiments").rglob("*_v*.yaml")}
    assert {e.path for e in result.experiments} == shipped
    assert len(shipped) >= 4


@pytest.mark.parametrize("source", fixtures("valid"), ids=lambda p: p.stem)
def test_valid_fixture(ws_root: Path, source: Path) -> None:
    dest, _ = place(ws_root, source)
    result = lint(Workspace(ws_root), [dest])
    assert [f.format() for f in result.findings] == []
    assert len(result.experiments) == 1


@pytest.mark.parametrize("source", fixtures("invalid"), ids=lambda p: p.stem)
def test_invalid_fixture(ws_root: Path, source: Path) -> None:
    dest, expect = place(ws_root, source)
    assert expect, f"{source}: an invalid fixture needs '# expect:' lines"
    result = lint(Workspace(ws_root), [dest])
    assert sorted(f.format() for f in result.findings) == sorted(expect)


def test_cli_reports_all_and_exits_1(ws_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = ws_root / "experiments/demo/tiny-llama/bad_v1.yaml"
    bad.write_text("metadata: {owner: x}\nlaunch: {nodes: 0}\ntrain: {learnig_rate: 1}\n")
    assert main(["--repo", str(ws_root), "lint", str(bad)]) == 1
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    assert len(lines) >= 4
    assert all(line.startswith("experiments/demo/tiny-llama/bad_v1.yaml:") for line in lines)
    assert "did you mean 'learning_rate'?" in out
    assert "problem(s)" in err


def test_cli_json_format(ws_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = ws_root / "experiments/demo/tiny-llama/bad_v1.yaml"
    bad.write_text("metadata: [\n")
    assert main(["--repo", str(ws_root), "lint", "--format", "json", str(bad)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["ok"] is False
    (finding,) = data["findings"]
    assert finding["file"] == "experiments/demo/tiny-llama/bad_v1.yaml"
    assert finding["rule"] == "yaml" and finding["line"] == 2


def test_defaults_change_rechecks_every_experiment_under_it(ws_root: Path) -> None:
    defaults = ws_root / "experiments/alpaca_en/_defaults.yaml"
    defaults.write_text(defaults.read_text() + "  cutof_len: 10\n")
    result = lint(Workspace(ws_root), [defaults])
    assert len(result.experiments) == 2
    # reported once, at the defaults file, where it has to be fixed
    unknown = [f for f in result.findings if "cutof_len" in f.message]
    assert len(unknown) == 1
    assert unknown[0].file == "experiments/alpaca_en/_defaults.yaml"
    assert unknown[0].hint == "did you mean 'cutoff_len'?"


def test_edit_after_run_is_refused(ws_root: Path) -> None:
    ws = Workspace(ws_root)
    path = ws_root / "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"
    exp, _ = ws.load(path)
    assert exp is not None
    record_run(ws_root, exp.path, "abc123", exp.config_hash)
    assert lint(Workspace(ws_root), [path]).ok  # unchanged: fine
    # metadata edits do not change what the run computes
    path.write_text(path.read_text().replace("the baseline", "our baseline"))
    assert lint(Workspace(ws_root), [path]).ok
    path.write_text(path.read_text().replace("lora_rank: 8 ", "lora_rank: 16"))
    (finding,) = lint(Workspace(ws_root), [path]).findings
    assert finding.rule == "history"
    assert "copy it to sft_lora_r8_lr1e-4_v2.yaml" in finding.hint


def test_duplicate_configs_are_reported(ws_root: Path) -> None:
    src = ws_root / "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"
    copy = src.with_name("sft_lora_copy_v1.yaml")
    shutil.copy(src, copy)
    findings = lint(Workspace(ws_root), [copy]).findings
    assert [f.rule for f in findings] == ["duplicates"]
    assert "sft_lora_r8_lr1e-4_v1.yaml" in findings[0].message


def test_layout_rejects_stray_files(ws_root: Path) -> None:
    stray = ws_root / "experiments/alpaca_en/notes.yml"
    stray.write_text("x: 1\n")
    (finding,) = lint(Workspace(ws_root), [stray]).findings
    assert finding.rule == "layout" and finding.hint.startswith("use the .yaml extension")


def test_secret_message_never_echoes_the_secret(ws_root: Path) -> None:
    token = "hf_" + "a1B2c3D4e5" * 4
    exp = ws_root / "experiments/demo/tiny-llama/sft_lora_v1.yaml"
    exp.write_text(exp.read_text() + f"# token for later: {token}\n")
    findings = lint(Workspace(ws_root), [exp]).findings
    assert [f.rule for f in findings] == ["secrets"]
    assert token not in findings[0].format()


@pytest.mark.slow
def test_deep_check_runs_llamafactorys_own_parser(ws_root: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """What only LLaMA-Factory's parser knows: do_predict needs predict_with_generate."""
    exp = ws_root / "experiments/demo/tiny-llama/sft_lora_v1.yaml"
    other = "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"
    assert main(["--repo", str(ws_root), "lint", "--deep", str(exp), other]) == 0
    exp.write_text(exp.read_text().replace("  report_to: none", "  report_to: none\n"
                                           "  do_predict: true"))
    assert main(["--repo", str(ws_root), "lint", "--deep", str(exp), other]) == 1
    (line,) = capsys.readouterr().out.strip().splitlines()[-1:]
    assert line.startswith("experiments/demo/tiny-llama/sft_lora_v1.yaml:")
    assert "LLaMA-Factory rejects the arguments" in line and "predict_with_generate" in line


def test_tag_only_image_is_a_warning_and_a_digest_is_not(
        ws_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    exp = ws_root / "experiments/demo/tiny-llama/sft_lora_v1.yaml"
    result = lint(Workspace(ws_root), [exp])
    assert result.ok and result.findings == []
    (warning,) = result.warnings
    assert warning.file == "k8s-base/cluster-profile.yaml" and warning.path == "$.default_image"
    profile_lines = (ws_root / warning.file).read_text().splitlines()
    assert profile_lines[warning.line - 1].startswith("default_image:")
    assert "not pinned by digest" in warning.message and warning.severity == "warning"
    assert main(["--repo", str(ws_root), "lint", str(exp)]) == 0
    out, err = capsys.readouterr()
    assert "warning: $.default_image" in err and "warning" not in out

    # an experiment's own tag-only image is reported where it is set
    exp.write_text(exp.read_text().replace("  time_limit: 30m", "  time_limit: 30m\n"
                                           "  image: us-docker.pkg.dev/my-project/llm/lf:latest"))
    (warning,) = lint(Workspace(ws_root), [exp]).warnings
    assert (warning.file, warning.path) == (exp.relative_to(ws_root).as_posix(),
                                            "$.launch.image")
    digest = "us-docker.pkg.dev/my-project/llm/lf@sha256:" + "ab" * 32
    exp.write_text(exp.read_text().replace("us-docker.pkg.dev/my-project/llm/lf:latest", digest))
    assert lint(Workspace(ws_root), [exp]).warnings == []
    assert main(["--repo", str(ws_root), "lint", "--format", "json", str(exp)]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
