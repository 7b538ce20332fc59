"""Sweeps (render.propose.sweep): one file, many runs. Expansion (grid x points, the
de-duplication the launch identity implies, caps), every point linted as a full
experiment, and each point its own launch identity, run id, JobSet and record label."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from lint_harness import make_workspace, record_run

from render.errors import FatalError
from render.manifests.overlay import render
from render.manifests.plan import plan
from render.manifests.runspec import RunSpec
from render.propose.experiment import Workspace
from render.propose.lint import lint, require_clean
from render.record.identity import SWEEP_POINT_ANNOTATION
from render.record.runrecord import RunRecord

SWEEP = "experiments/alpaca_en/llama-3.1-8b/sft_lora_sweep_v1.yaml"
BODY = """\
metadata:
  owner: jk
  description: LoRA rank x learning rate sweep of Llama 3.1 8B on Alpaca.
launch:
  nodes: 1
  gpus_per_node: 8
  time_limit: 6h
train:
  stage: sft
  do_train: true
  finetuning_type: lora
  lora_target: all
  lora_rank: 8
  learning_rate: 1.0e-4
  num_train_epochs: 1.0
"""
GRID = """\
sweep:
  grid:
    train.learning_rate: [1.0e-4, 2.0e-4]
    train.lora_rank: [8, 16]
  points:
    - {train.learning_rate: 5.0e-5, train.lora_rank: 64}
  max_runs: 8
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)


def write(root: Path, sweep: str, body: str = BODY) -> None:
    (root / SWEEP).write_text(body + sweep)


def more(*points: str) -> str:
    """GRID with more explicit points."""
    return GRID.replace("  max_runs: 8\n", "".join(f"    - {p}\n" for p in points)
                        + "  max_runs: 8\n")


def points(root: Path) -> list[RunSpec]:
    return [RunSpec(e, "1" * 40) for e in require_clean(Workspace(root), [Path(SWEEP)])]


def findings(root: Path) -> list[str]:
    return [f.format() for f in lint(Workspace(root), [root / SWEEP]).findings]


def test_grid_times_points_expands_in_order_with_labels(root: Path) -> None:
    write(root, GRID)
    specs = points(root)
    assert [s.exp.point.label for s in specs if s.exp.point] == [
        "learning_rate=0.0001,lora_rank=8", "learning_rate=0.0001,lora_rank=16",
        "learning_rate=0.0002,lora_rank=8", "learning_rate=0.0002,lora_rank=16",
        "learning_rate=5e-05,lora_rank=64"]
    assert [s.exp.train["lora_rank"] for s in specs] == [8, 16, 8, 16, 64]
    assert "sweep" not in specs[0].exp.merged
    # each point: its own launch identity, run id, JobSet and output folder
    assert len({s.exp.config_hash for s in specs}) == 5
    assert len({s.run_id for s in specs}) == 5
    assert len({s.jobset for s in specs}) == 5
    assert len({s.artifacts_uri for s in specs}) == 5


def test_points_equal_after_normalization_are_one_run(root: Path) -> None:
    # 0.0001 is 1.0e-4, 8.0 is 8 for LLaMA-Factory: the explicit points repeat the grid
    write(root, """\
sweep:
  grid:
    train.learning_rate: [1.0e-4, 0.0001]
    train.lora_rank: [8]
  points:
    - {train.learning_rate: 0.0001, train.lora_rank: 8.0}
    - {train.lora_rank: 32}
""")
    specs = points(root)
    assert [s.exp.point.label for s in specs if s.exp.point] == [
        "learning_rate=0.0001,lora_rank=8", "lora_rank=32"]
    assert [s.exp.point.total for s in specs if s.exp.point] == [2, 2]


def test_a_point_keeps_its_run_id_when_points_are_added(root: Path) -> None:
    write(root, GRID)
    before = {s.exp.point.label: s.run_id for s in points(root) if s.exp.point}
    write(root, more("{train.learning_rate: 3.0e-4, train.lora_rank: 4}"))
    after = {s.exp.point.label: s.run_id for s in points(root) if s.exp.point}
    assert len(after) == 6
    assert all(after[label] == run for label, run in before.items())


def test_empty_expansion_is_refused(root: Path) -> None:
    write(root, "sweep:\n  max_runs: 4\n")
    out = findings(root)
    assert any("sft_lora_sweep_v1.yaml:" in f and "$.sweep: the sweep expands to no run" in f
               for f in out), out


def test_over_max_runs_is_refused_at_max_runs(root: Path) -> None:
    write(root, GRID.replace("max_runs: 8", "max_runs: 4"))
    out = findings(root)
    line = BODY.count("\n") + 7
    assert any(f.startswith(f"{SWEEP}:{line}:") and "expands to 5 runs, more than max_runs: 4"
               in f for f in out), out


def test_over_the_profile_cap_is_refused(root: Path) -> None:
    profile = root / "k8s-base/cluster-profile.yaml"
    profile.write_text(profile.read_text().replace("max_sweep_runs: 32", "max_sweep_runs: 3"))
    write(root, GRID)
    out = findings(root)
    assert any("more than the cluster profile allows in one sweep (3)" in f
               and "limits.max_sweep_runs" in f for f in out), out


def test_unknown_paths_are_refused_with_a_suggestion(root: Path) -> None:
    write(root, """\
sweep:
  grid:
    train.learnin_rate: [1.0e-4, 2.0e-4]
    launch.queue: [research, production]
""")
    out = findings(root)
    assert any("unknown sweep path 'train.learnin_rate'" in f and "learning_rate" in f
               for f in out), out
    assert any("unknown sweep path 'launch.queue'" in f for f in out), out
    write(root, "sweep:\n  grid:\n    model.x: [1]\n")
    assert any("$.sweep.grid" in f for f in findings(root))


def test_every_point_is_checked_as_a_full_experiment(root: Path) -> None:
    # one point asks for 8 GPUs of a type whose nodes have 4; another for a bad value
    write(root, more("{launch.gpu_type: l4, train.lora_rank: 4}", "{train.lora_rank: eight}"))
    out = findings(root)
    assert any("sweep point 5 (launch.gpu_type=l4,lora_rank=4)" in f for f in out), out
    assert any("sweep point 6 (lora_rank=eight)" in f for f in out), out
    # a point's finding about a swept key points at the entry that made it
    bad = next(f for f in out if "sweep point 6" in f)
    assert bad.startswith(f"{SWEEP}:{BODY.count(chr(10)) + 8}:"), bad
    # no finding about the points that are fine
    assert not any(f"sweep point {i} " in f for f in out for i in range(5)), out
    # a problem every point shares is said once, without a point
    write(root, GRID, BODY.replace("  owner: jk\n", ""))
    out = findings(root)
    assert sum("owner" in f for f in out) == 1 and "sweep point" not in out[0], out


def test_a_point_that_ran_is_not_an_edit_and_the_rest_launch(root: Path) -> None:
    write(root, GRID)
    first = points(root)[0]
    record_run(root, SWEEP, first.run_id, first.exp.config_hash, gpus_per_node=8,
               duration_s=3600.0, sweep=first.exp.point.as_dict() if first.exp.point else {})
    assert findings(root) == []
    text = plan(Workspace(root), points(root))
    assert "4 experiment(s) will launch" in text or "4 run(s) will launch" in text, text
    assert f"`{first.run_id}`" in text


def test_removing_a_point_that_ran_is_a_plan_note(root: Path) -> None:
    write(root, GRID)
    gone = points(root)[-1]
    record_run(root, SWEEP, gone.run_id, gone.exp.config_hash)
    points_block = "  points:\n    - {train.learning_rate: 5.0e-5, train.lora_rank: 64}\n"
    write(root, GRID.replace(points_block, ""))
    assert findings(root) == []
    text = plan(Workspace(root), points(root))
    assert "no longer in the sweep" in text and gone.run_id in text, text


def test_plan_shows_one_row_per_point_and_the_total(root: Path) -> None:
    write(root, GRID)
    specs = points(root)
    text = plan(Workspace(root), specs)
    for spec in specs:
        assert spec.exp.point is not None
        assert spec.run_id in text and spec.exp.point.label in text
    assert "sweep of 5 points" in text
    assert "GPU-hours in all" in text


def test_label_in_annotation_and_record_not_in_names(root: Path, tmp_path: Path) -> None:
    write(root, GRID)
    specs = points(root)
    rendered = render(specs, tmp_path / "out", root)
    for r in rendered:
        js = next(m for m in r.manifests if m["kind"] == "JobSet")
        assert r.spec.exp.point is not None
        assert js["metadata"]["annotations"][SWEEP_POINT_ANNOTATION] == r.spec.exp.point.label
        assert "=" not in js["metadata"]["name"] and "lora_rank" not in js["metadata"]["name"]
        assert r.folder.name == r.spec.run_id
        spec_json = json.loads(next(m for m in r.manifests if m["kind"] == "ConfigMap")
                               ["data"]["spec.json"])
        assert spec_json["sweep"]["label"] == r.spec.exp.point.label
    record = RunRecord.launched(specs[1].identity())
    data = json.loads(record.to_json())
    assert data["sweep"] == {"index": 1, "label": "learning_rate=0.0001,lora_rank=16",
                             "overrides": {"train.learning_rate": 0.0001,
                                           "train.lora_rank": 16}}
    assert RunRecord.from_json(record.to_json()).sweep == data["sweep"]


def test_a_plain_record_has_no_sweep_key(root: Path) -> None:
    (exp,) = require_clean(Workspace(root),
                           [Path("experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml")])
    data = json.loads(RunRecord.launched(RunSpec(exp, "1" * 40).identity()).to_json())
    assert "sweep" not in data and "needs" not in data


def test_launching_one_experiment_names_the_sweep(root: Path) -> None:
    from render.cli import main

    write(root, GRID)
    assert main(["--repo", str(root), "launch", "--local", SWEEP]) == 1


def test_require_clean_refuses_a_bad_sweep(root: Path) -> None:
    write(root, "sweep:\n  max_runs: 4\n")
    with pytest.raises(FatalError):
        require_clean(Workspace(root), [Path(SWEEP)])


def test_a_sibling_equal_to_a_point_is_a_duplicate(root: Path) -> None:
    write(root, GRID)
    plain = root / "experiments/alpaca_en/llama-3.1-8b/sft_lora_r16_v1.yaml"
    plain.write_text(BODY.replace("lora_rank: 8", "lora_rank: 16"))
    out = [f.format() for f in lint(Workspace(root), [plain]).findings]
    assert any(f"same resolved config as {SWEEP}" in f for f in out), out
