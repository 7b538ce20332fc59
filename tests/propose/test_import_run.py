"""`ftops import run:<run_id>`: one of our runs again, as the next _v<N>, with the same
config hash. A real local run (the tiny demo model, LLaMA-Factory training, the post-run
hook writing the index entry and run.json) in a real git repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from local_repo import git, make_repo

from render.cli import main
from render.propose.experiment import Workspace
from render.propose.lint import lint

DEMO = "experiments/demo/tiny-llama/sft_lora_v1.yaml"
pytestmark = pytest.mark.slow


def _hash(root: Path, rel: str) -> str:
    exp, findings = Workspace(root).load(root / rel)
    assert exp is not None and not findings
    return exp.config_hash


def test_reproduce_a_run(tmp_path: Path, demo_assets: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    repo, _ = make_repo(tmp_path, demo_assets)
    assert main(["--repo", str(repo), "launch", "--local", DEMO, "--work",
                 str(repo / "outputs"), "--no-progress"]) == 0
    (entry,) = (repo / "outputs-index/demo/tiny-llama").glob("sft_lora_v1__*.json")
    run_id = entry.stem.split("__")[1]
    record = json.loads(entry.read_text())
    assert record["status"] == "succeeded" and record["resolved_config"]
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "index")
    capsys.readouterr()

    # 1. from git: the experiment as it was at the launching commit
    assert main(["--repo", str(repo), "import", f"run:{run_id}"]) == 0
    out, err = capsys.readouterr()
    v2 = "experiments/demo/tiny-llama/sft_lora_v2.yaml"
    assert f"wrote {v2} (lints clean)" in out
    assert f"reproduces run {run_id} exactly" in err and "rebuilt from" in err
    assert _hash(repo, v2) == _hash(repo, DEMO) == record["config_hash"]
    meta = Workspace(repo).load(repo / v2)[0].metadata  # type: ignore[union-attr]
    assert meta["reproduces"] == run_id and meta["owner"] == record["owner"]
    # the same config as v1 is fine for a declared reproduction, and only for one
    assert lint(Workspace(repo)).ok
    text = (repo / v2).read_text()
    (repo / v2).write_text(text.replace(run_id, "nosuchrun"))
    findings = lint(Workspace(repo), [repo / v2]).findings
    assert [f.rule for f in findings] == ["history"]
    assert "'nosuchrun' is not in outputs-index/demo/tiny-llama/" in findings[0].message
    (repo / v2).unlink()

    # 2. without the commit: from the config the run recorded (index entry, then run.json)
    record["git_sha"] = "f" * 40
    entry.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    assert main(["--repo", str(repo), "import", f"run:{run_id}"]) == 0
    out, err = capsys.readouterr()
    assert "rebuilt from the config the run recorded" in err
    # the record holds the training config, not the demo's evaluate: block: import says
    # so, and with the block added by hand the config hash is the run's
    assert "its evaluate: block (holdout) is not in the record" in err
    evaluate = "evaluate:" + (repo / DEMO).read_text().split("\nevaluate:", 1)[1]
    (repo / v2).write_text((repo / v2).read_text() + evaluate)
    assert _hash(repo, v2) == record["config_hash"]
    (repo / v2).unlink()
    record["resolved_config"] = {}
    entry.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    assert main(["--repo", str(repo), "import", f"run:{run_id}"]) == 0
    (repo / v2).write_text((repo / v2).read_text() + evaluate)
    assert _hash(repo, v2) == record["config_hash"]
