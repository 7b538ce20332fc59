"""Leaderboards: the primary metric a dataset.yaml or the profile names, how runs rank
by it, and that the generated READMEs follow it (`ftops index check` sees a change)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from run_records import make_record

from render.browse.leaderboard import Boards, load_boards
from render.browse.readme import render_index
from render.cli import main
from render.errors import FatalError
from render.record.evaluation import Evaluation
from render.record.index import write_entry
from render.record.results import (
    DEFAULT_LEADERBOARD,
    Leaderboard,
    metric_label,
    metric_value,
    parse_leaderboard,
)
from render.record.runrecord import Metrics, RunRecord

REPO = Path(__file__).resolve().parents[2]


def rec(run_id: str, bleu: float | None = None, **kw: Any) -> RunRecord:
    if bleu is not None:
        kw["evaluations"] = {"holdout": Evaluation("succeeded", 0, "t", 4, {"bleu-4": bleu})}
    return make_record(run_id, **kw)


def test_metric_values_and_labels() -> None:
    r = rec("a", bleu=12.5, metrics=Metrics(eval_loss=0.5, final_train_loss=1.0))
    assert metric_value(r, "holdout/bleu-4") == 12.5
    assert metric_value(r, "holdout/rouge-l") is None
    assert metric_value(r, "other/bleu-4") is None
    assert metric_value(r, "eval_loss") == 0.5
    assert metric_value(r, "total_flos") is None  # not a metric id
    r.evaluations["holdout"].status = "failed"
    assert metric_value(r, "holdout/bleu-4") is None  # a failed evaluation has no score
    assert metric_label("holdout/bleu-4") == "BLEU-4 (holdout)"
    assert metric_label("eval_loss") == "eval loss"


def test_rank_follows_the_direction() -> None:
    runs = [rec("a", bleu=10.0), rec("b", bleu=30.0), rec("c", bleu=20.0),
            rec("d", bleu=99.0, status="failed"), rec("e"), rec("f", bleu=30.0)]
    higher = Leaderboard("holdout/bleu-4", "higher")
    assert [r.run_id for _, r in higher.rank(runs)] == ["b", "f", "c", "a"]  # tie: entry path
    lower = Leaderboard("holdout/bleu-4", "lower")
    assert [r.run_id for _, r in lower.rank(runs)] == ["a", "c", "b", "f"]
    assert higher.best(runs) is runs[1] and higher.arrow == "↑" and lower.arrow == "↓"


@pytest.mark.parametrize("data,message", [
    ({"metric": "bleu", "direction": "higher"}, "leaderboard.metric 'bleu' is not a metric id"),
    ({"metric": "holdout/bleu-4", "direction": "up"}, "must be higher or lower"),
    ({"metric": "eval_loss", "direction": "lower", "x": 1}, "unknown key"),
    ("eval_loss", "must be a mapping"),
])
def test_a_bad_leaderboard_names_the_file(data: Any, message: str) -> None:
    with pytest.raises(FatalError, match=message) as err:
        parse_leaderboard(data, "experiments/x/dataset.yaml")
    assert str(err.value).startswith("experiments/x/dataset.yaml: ")


def repo_with(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    shutil.copytree(REPO / "k8s-base", root / "k8s-base")
    shutil.copytree(REPO / "experiments", root / "experiments")
    return root


def test_boards_come_from_dataset_yaml_then_the_profile(tmp_path: Path) -> None:
    root = repo_with(tmp_path)
    boards = load_boards(root)
    # the demo names its own; the others take the profile's
    assert boards.of("demo") == Leaderboard("holdout/bleu-4", "higher",
                                            "experiments/demo/dataset.yaml")
    assert boards.of("alpaca_en") == Leaderboard("eval_loss", "lower",
                                                 "k8s-base/cluster-profile.yaml")
    profile = root / "k8s-base/cluster-profile.yaml"
    profile.write_text(profile.read_text().replace(
        "  metric: eval_loss\n  direction: lower", "  metric: final_train_loss\n"
        "  direction: lower"))
    assert load_boards(root).of("alpaca_en").metric == "final_train_loss"
    assert load_boards(tmp_path / "nowhere") == Boards()  # no files: the built-in default
    assert Boards().of("x") == DEFAULT_LEADERBOARD
    (root / "experiments/demo/dataset.yaml").write_text("leaderboard: [\n")
    with pytest.raises(FatalError, match="experiments/demo/dataset.yaml: not valid YAML"):
        load_boards(root)


def test_readmes_rank_by_each_datasets_board() -> None:
    runs = [rec("a", bleu=10.0, metrics=Metrics(eval_loss=0.5)),
            rec("b", bleu=30.0, metrics=Metrics(eval_loss=0.9)),
            rec("w1", dataset="wiki", metrics=Metrics(eval_loss=2.0)),
            rec("w2", dataset="wiki", metrics=Metrics(eval_loss=1.0))]
    boards = Boards(by_dataset={"alpaca": Leaderboard("holdout/bleu-4", "higher")})
    files = render_index(runs, boards)
    top = files["README.md"]
    assert ("| [alpaca](alpaca/README.md) | [2](alpaca/runs.csv) | BLEU-4 (holdout) ↑ "
            "| **30** |") in top
    assert ("| [wiki](wiki/README.md) | [2](wiki/runs.csv) | eval loss ↓ | **1** "
            "| sft_lora_lr1e-4_v1 · w2 |") in top
    alpaca = files["alpaca/README.md"]
    assert "Runs are ranked by **BLEU-4 (holdout)** (higher is better; the default)." in alpaca
    first, second = [ln for ln in alpaca.splitlines() if ln.startswith(("| 1 |", "| 2 |"))]
    assert "· b |" in first and "| **30** | eval loss 0.9 |" in first
    assert "· a |" in second
    # links to compare: the top runs side by side, below the table
    assert "[Compare the top 2 side by side](#top-runs-compared)" in alpaca
    assert "`ftops compare b a` shows the same" in alpaca
    assert "![training loss of A, B](top-runs.svg)" not in alpaca  # no curves: no chart
    wiki = files["wiki/README.md"]
    assert wiki.index("· w2 |") < wiki.index("· w1 |")


def test_index_check_follows_the_leaderboard(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = repo_with(tmp_path)
    for r in [rec("a", bleu=10.0, dataset="demo", model="tiny-llama", metrics=Metrics(
                  eval_loss=0.5)),
              rec("b", bleu=30.0, dataset="demo", model="tiny-llama", metrics=Metrics(
                  eval_loss=0.9))]:
        write_entry(root / "outputs-index", r)
    assert main(["--repo", str(root), "index", "readme"]) == 0
    assert main(["--repo", str(root), "index", "check"]) == 0
    board = (root / "outputs-index/demo/README.md").read_text()
    assert "ranked by **BLEU-4 (holdout)**" in board
    assert "named in `experiments/demo/dataset.yaml`" in board
    dataset_yaml = root / "experiments/demo/dataset.yaml"
    dataset_yaml.write_text(dataset_yaml.read_text().replace(
        "metric: holdout/bleu-4\n  direction: higher", "metric: eval_loss\n  direction: lower"))
    capsys.readouterr()
    assert main(["--repo", str(root), "index", "check"]) == 1
    assert "demo/README.md" in capsys.readouterr().err
    assert main(["--repo", str(root), "index", "readme"]) == 0
    assert "ranked by **eval loss**" in (root / "outputs-index/demo/README.md").read_text()
