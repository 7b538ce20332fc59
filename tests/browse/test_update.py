"""The incremental regeneration (render.browse.sync.update_readme, render.browse.update):
after a change to some folders it leaves the generated files exactly as a full
regeneration from every entry would, touching only what the change affects; the
summary it works from is checked by `ftops index check` like every generated file."""

from __future__ import annotations

import random
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from run_records import make_record

from render.browse import sync
from render.browse.leaderboard import Boards
from render.browse.sync import generated_files, stale_files, update_readme, write_readme
from render.browse.update import OnDisk
from render.cli import main
from render.record.evaluation import Evaluation
from render.record.index import write_entry
from render.record.results import Leaderboard
from render.record.runrecord import Metrics, RunRecord

DATASETS = ("alpaca", "wiki")
MODELS = ("llama-3.1-8b", "qwen2.5-7b", "gemma-2-2b")


def run(i: int, rng: random.Random, **kw: Any) -> RunRecord:
    ds, model = rng.choice(DATASETS), rng.choice(MODELS)
    status = rng.choice(["succeeded", "succeeded", "failed", "running"])
    values: dict[str, Any] = {
        "dataset": ds, "model": model, "status": status,
        "experiment_path": f"experiments/{ds}/{model}/sft_lora_lr1e-4_v1.yaml",
        "started_at": f"2026-01-{1 + i % 28:02d}T00:00:00Z",
        "metrics": Metrics(eval_loss=round(rng.uniform(0.5, 2), 3),
                           final_train_loss=1.0) if status == "succeeded" else Metrics(),
        "loss_points": [[1, 2.0], [2, round(rng.uniform(0.5, 1.9), 3)]],
    }
    values.update(kw)
    return make_record(f"r{i:03d}", **values)


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def full(tmp_path: Path, runs: list[RunRecord], boards: Boards | None = None
         ) -> dict[str, bytes]:
    """The tree a full regeneration from these runs gives."""
    root = tmp_path / "full" / "outputs-index"
    shutil.rmtree(root.parent, ignore_errors=True)
    for r in runs:
        write_entry(root, r)
    write_readme(root, boards or Boards())
    return snapshot(root)


@pytest.fixture
def index(tmp_path: Path) -> tuple[Path, list[RunRecord]]:
    rng = random.Random(7)
    runs = [run(i, rng) for i in range(60)]
    root = tmp_path / "repo" / "outputs-index"
    for r in runs:
        write_entry(root, r)
    write_readme(root, Boards())
    return root, runs


class Recorded(OnDisk):
    """A full tree on disk that says which folders ("<dataset>/<model>/") and entries
    were read."""

    def __init__(self, root: Path, fetched: list[str]) -> None:
        super().__init__(root)
        self.fetched = fetched

    def load(self, dataset: str, model: str) -> list[RunRecord]:
        self.fetched.append(f"{dataset}/{model}/")
        return super().load(dataset, model)

    def read(self, rels: list[str]) -> dict[str, str]:
        self.fetched += rels
        return super().read(rels)


def publish_locally(root: Path, records: list[RunRecord], boards: Boards | None = None,
                    fetched: list[str] | None = None) -> list[str]:
    """What a publish of `records` does to `root`; "" in `fetched` when it regenerated
    everything from every entry."""
    for r in records:
        write_entry(root, r)
    changed = {(r.dataset, r.model) for r in records}
    log = fetched if fetched is not None else []
    everything = sync._sync_generated

    def full(*args: Any, **kwargs: Any) -> list[str]:
        log.append("")
        return everything(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sync, "_sync_generated", full)
        return update_readme(root, changed, boards or Boards(), Recorded(root, log))


def test_a_run_that_is_not_the_best_regenerates_only_its_folder(
        index: tuple[Path, list[RunRecord]], tmp_path: Path) -> None:
    root, runs = index
    before = snapshot(root)
    new = make_record("r900", dataset="wiki", model="qwen2.5-7b", status="failed",
                      experiment_path="experiments/wiki/qwen2.5-7b/sft_lora_lr1e-4_v1.yaml",
                      loss_points=[[1, 3.0], [2, 2.5]])
    fetched: list[str] = []
    written = publish_locally(root, [new], fetched=fetched)
    after = snapshot(root)
    assert after == full(tmp_path, [*runs, new])
    changed = {p for p in after if before.get(p) != after[p]}
    assert changed == {
        "README.md", "summary.jsonl", "wiki/README.md", "wiki/runs.csv",
        "wiki/qwen2.5-7b/README.md", "wiki/qwen2.5-7b/sft_lora_lr1e-4_v1__r900.json",
        "wiki/qwen2.5-7b/sft_lora_lr1e-4_v1__r900.svg",
    }
    assert set(written) == changed - {"wiki/qwen2.5-7b/sft_lora_lr1e-4_v1__r900.json"}
    # only its folder and the entries the wiki leaderboard lists were asked for
    assert "wiki/qwen2.5-7b/" in fetched
    assert not [p for p in fetched if p.endswith("/") and p != "wiki/qwen2.5-7b/"]
    assert "" not in fetched


def test_a_new_best_run_rewrites_every_model_readme_of_its_dataset(
        index: tuple[Path, list[RunRecord]], tmp_path: Path) -> None:
    root, runs = index
    before = snapshot(root)
    best = make_record("r901", dataset="alpaca", model="gemma-2-2b",
                       experiment_path="experiments/alpaca/gemma-2-2b/x.yaml",
                       metrics=Metrics(eval_loss=0.01))
    publish_locally(root, [best])
    after = snapshot(root)
    assert after == full(tmp_path, [*runs, best])
    changed = {p for p in after if before.get(p) != after[p]}
    assert {f"alpaca/{m}/README.md" for m in MODELS} <= changed
    assert not [p for p in changed if p.startswith("wiki/")]  # another dataset: untouched


def test_new_folders_and_several_records_at_once(
        index: tuple[Path, list[RunRecord]], tmp_path: Path) -> None:
    root, runs = index
    rng = random.Random(3)
    new = [run(1000 + i, rng) for i in range(8)]
    new += [make_record("r999", dataset="gsm8k", model="phi-3-mini",
                        experiment_path="experiments/gsm8k/phi-3-mini/x.yaml",
                        metrics=Metrics(eval_loss=0.7))]
    new += [replace(runs[0], status="succeeded", metrics=Metrics(eval_loss=0.02))]  # update
    publish_locally(root, new)
    assert snapshot(root) == full(tmp_path, [*runs[1:], *new])


def test_a_new_evaluation_column_rewrites_its_datasets_runs_csv_only(
        index: tuple[Path, list[RunRecord]], tmp_path: Path) -> None:
    root, runs = index
    new = make_record("r902", dataset="wiki", model="gemma-2-2b",
                      experiment_path="experiments/wiki/gemma-2-2b/x.yaml",
                      metrics=Metrics(eval_loss=1.5),
                      evaluations={"holdout": Evaluation("succeeded", 0, "x", 4,
                                                         {"bleu-4": 12.5})})
    before = snapshot(root)
    fetched: list[str] = []
    publish_locally(root, [new], fetched=fetched)
    assert snapshot(root) == full(tmp_path, [*runs, new])
    # wiki's runs.csv gained a column, so every row of it is laid out anew: every wiki
    # folder was asked for, and nothing outside wiki/ (nor the whole index)
    assert "" not in fetched
    assert {p for p in fetched if p.endswith("/")} == {f"wiki/{m}/" for m in MODELS}
    after = snapshot(root)
    assert b"holdout/bleu-4" in after["wiki/runs.csv"].partition(b"\n")[0]
    assert not [p for p in after if p.startswith("alpaca/") and before.get(p) != after[p]]


@pytest.mark.parametrize("damage", ["missing", "tampered", "not json", "hostile name",
                                    "nested"])
def test_a_bad_summary_falls_back_to_a_full_regeneration(
        index: tuple[Path, list[RunRecord]], tmp_path: Path, damage: str) -> None:
    root, runs = index
    summary = root / "summary.jsonl"
    if damage == "missing":
        summary.unlink()
    elif damage == "tampered":
        summary.write_text(summary.read_text().replace('"ranked":', '"ranked":1', 1))
    elif damage == "hostile name":  # would be a link target and a git argument
        summary.write_text(summary.read_text().replace('"model":"', '"model":"--x](evil) ', 1))
    elif damage == "nested":
        summary.write_text(summary.read_text().replace("\n", "\n" + "[" * 100_000 + "\n", 1))
    else:
        summary.write_text("{")
    new = run(903, random.Random(1))
    fetched: list[str] = []
    publish_locally(root, [new], fetched=fetched)
    if damage != "tampered":  # still a summary in form (of a folder it re-summarises)
        assert "" in fetched  # regenerated from every entry
    assert snapshot(root) == full(tmp_path, [*runs, new])


def test_a_changed_leaderboard_falls_back_to_a_full_regeneration(
        index: tuple[Path, list[RunRecord]], tmp_path: Path) -> None:
    root, runs = index
    boards = Boards(by_dataset={"alpaca": Leaderboard("final_train_loss", "lower",
                                                      "experiments/alpaca/dataset.yaml")})
    new = run(904, random.Random(2), dataset="wiki")
    publish_locally(root, [new], boards)
    assert snapshot(root) == full(tmp_path, [*runs, new], boards)


def test_stale_generated_files_of_a_touched_folder_go(
        index: tuple[Path, list[RunRecord]], tmp_path: Path) -> None:
    root, runs = index
    (root / "wiki/qwen2.5-7b/old__gone.svg").write_text("<svg/>")
    new = make_record("r905", dataset="wiki", model="qwen2.5-7b", status="running",
                      experiment_path="experiments/wiki/qwen2.5-7b/x.yaml")
    written = publish_locally(root, [new])
    assert "wiki/qwen2.5-7b/old__gone.svg" in written
    assert snapshot(root) == full(tmp_path, [*runs, new])


def test_index_check_covers_the_summary(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    root = repo / "outputs-index"
    rng = random.Random(5)
    for i in range(10):
        write_entry(root, run(i, rng))
    assert main(["--repo", str(repo), "index", "readme"]) == 0
    assert "summary.jsonl" in generated_files(root)
    assert main(["--repo", str(repo), "index", "check"]) == 0
    summary = root / "summary.jsonl"
    good = summary.read_text()
    summary.write_text(good.replace('"csv_chars":', '"csv_chars":9', 1))
    assert stale_files(root) == ["summary.jsonl"]
    assert main(["--repo", str(repo), "index", "check"]) == 1
    assert main(["--repo", str(repo), "index", "readme"]) == 0
    assert summary.read_text() == good
    summary.unlink()
    assert main(["--repo", str(repo), "index", "check"]) == 1
