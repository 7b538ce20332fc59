"""`ftops compare` (render.browse.compare): finding runs, the config diff, the metrics
table, the overlaid loss curves, and the command's output files."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from run_records import make_record

from render.browse.compare import compare, render_markdown, resolve
from render.cli import main
from render.errors import FatalError
from render.record.evaluation import Evaluation
from render.record.index import write_entry
from render.record.runrecord import Metrics, RunRecord

CURVE = [[1, 2.5], [2, 2.0], [4, 1.5], [8, 1.0]]


def rec(run_id: str, **kw: Any) -> RunRecord:
    return make_record(run_id, **kw)


def cfg(**over: Any) -> dict[str, Any]:
    base = {"model_name_or_path": "meta-llama/Llama-3.1-8B", "stage": "sft",
            "learning_rate": 1e-4, "lora_rank": 8, "output_dir": "/mnt/storage/x",
            "dataset_dir": "/etc/ftops", "run_name": "x", "overwrite_output_dir": False}
    return {**base, **over}


def pair() -> list[RunRecord]:
    return [
        rec("aaa111", resolved_config=cfg(), loss_points=CURVE, duration_s=7200.0,
            nodes=1, gpus_per_node=8, gpu_type="h100-80gb",
            metrics=Metrics(final_train_loss=1.0, eval_loss=1.2),
            evaluations={"holdout": Evaluation("succeeded", 0, "t", 8,
                                               {"bleu-4": 10.0, "rouge-l": 20.0})}),
        rec("bbb222", experiment="sft_lora_lr2e-4_v1",
            resolved_config=cfg(learning_rate=2e-4, output_dir="/elsewhere", run_name="y"),
            loss_points=[[1, 2.4], [8, 0.9]], duration_s=3600.0, nodes=2, gpus_per_node=8,
            gpu_type="h100-80gb", metrics=Metrics(final_train_loss=0.8, eval_loss=1.3),
            evaluations={"holdout": Evaluation("succeeded", 0, "t", 8,
                                               {"bleu-4": 12.5, "rouge-l": 19.0})}),
    ]


def table(markdown: str, first: str) -> dict[str, list[str]]:
    """A transposed table of the Markdown (the one whose first header cell is `first`):
    row label -> cells."""
    lines = markdown.splitlines()
    head = f"| {first} |" if first else "| |"
    start = next(i for i, ln in enumerate(lines) if ln.startswith(head))
    out = {}
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln)[1:-1]]
        out[cells[0]] = cells[1:]
    return out


def test_compare_two_runs() -> None:
    c = compare(pair())
    md = render_markdown(c, svg_path="cmp.svg")
    assert md.startswith("## 2 runs compared\n")
    who = table(md, "")
    assert who["run"] == ["`aaa111`", "`bbb222`"]
    assert who["experiment"][1] == "`experiments/alpaca/llama-3.1-8b/sft_lora_lr2e-4_v1.yaml`"
    metrics = table(md, "metric")
    # the best of each row in bold: lower losses, higher scores
    assert metrics["eval loss"] == ["**1.2**", "1.3"]
    assert metrics["final train loss"] == ["1", "**0.8**"]
    assert metrics["BLEU-4 (holdout)"] == ["10", "**12.5**"]
    assert metrics["ROUGE-L (holdout)"] == ["**20**", "19"]
    assert metrics["GPU-hours"] == ["16", "16"]  # 2 h x 8 GPUs; 1 h x 16
    config = table(md, "key")
    # only what differs, and never the per-run paths and names
    assert config == {"learning_rate": ["0.0001", "0.0002"], "(layout) nodes": ["1", "2"]}
    assert "6 other key(s) are the same in every run." in md  # 3 + gpus, type, image
    assert "![training loss of A, B](cmp.svg)" in md
    assert c.svg is not None and c.svg.count("<polyline") == 2


def test_a_run_without_a_recorded_config() -> None:
    runs = [*pair(), rec("ccc333", status="running")]
    md = render_markdown(compare(runs), svg_path=None)
    assert "No resolved config is recorded for C." in md
    assert "(the overlaid chart is written with `--output`)" in md
    assert table(md, "")["status"] == ["succeeded", "succeeded", "running"]


def test_hostile_values_keep_the_tables_whole() -> None:
    hostile = "a | b\n| --- |`x` <script>"
    runs = pair()
    runs[1].resolved_config["template"] = hostile
    runs[1].owner = hostile
    md = render_markdown(compare(runs), svg_path="x.svg")
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    widths = {len(re.split(r"(?<!\\)\|", ln)) - 2 for ln in rows}
    assert widths == {3}, rows
    assert "<script>" not in md


@pytest.mark.parametrize("n", [1, 7])
def test_two_to_six_runs(n: int) -> None:
    with pytest.raises(FatalError, match="2 to 6 different runs"):
        compare([rec(f"r{i}") for i in range(n)])


def index_with_runs(root: Path) -> Path:
    index = root / "outputs-index"
    for r in [*pair(), rec("aaa999", started_at="2026-01-01T00:00:00Z"),
              rec("zzz000", experiment="x__aaa5", started_at="2026-03-01T00:00:00Z")]:
        write_entry(index, r)
    return index


def test_resolve_run_ids_prefixes_and_experiments(tmp_path: Path) -> None:
    index = index_with_runs(tmp_path)
    assert [r.run_id for r in resolve(index, ["bbb", "aaa111"])] == ["bbb222", "aaa111"]
    # an experiment file: its latest run (by start time)
    [latest] = resolve(index, ["experiments/alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1.yaml"])
    assert latest.run_id == "aaa999"
    # the same run named twice counts once
    assert len(resolve(index, ["aaa111", "aaa111"])) == 1
    with pytest.raises(FatalError, match=r"'aaa' names 2 runs \(aaa111, aaa999\)"):
        resolve(index, ["aaa"])  # "x__aaa5" is an experiment name, not a run id
    with pytest.raises(FatalError, match="no run 'nope'"):
        resolve(index, ["nope"])
    with pytest.raises(FatalError, match="neither a run id nor an experiment file"):
        resolve(index, ["a*"])
    with pytest.raises(FatalError, match="no run of it in outputs-index/ yet"):
        resolve(index, ["experiments/alpaca/llama-3.1-8b/never_v1.yaml"])
    with pytest.raises(FatalError, match="not an experiment path"):
        resolve(index, ["notes.yaml"])


def test_cli_prints_or_writes_markdown_and_chart(tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    index_with_runs(tmp_path)
    assert main(["--repo", str(tmp_path), "compare", "aaa111", "bbb"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## 2 runs compared") and "| learning_rate | 0.0001 | 0.0002 |" in out
    target = tmp_path / "my compare.md"
    assert main(["--repo", str(tmp_path), "compare", "aaa111", "bbb", "--output",
                 str(target)]) == 0
    text = target.read_text()
    assert "![training loss of A, B](my%20compare.svg)" in text
    svg = (tmp_path / "my compare.svg").read_text()
    assert svg.startswith("<!-- Generated by `ftops index readme`") and "<polyline" in svg
    assert main(["--repo", str(tmp_path), "compare", "aaa111", "aaa111"]) == 1
    assert "these name 1" in capsys.readouterr().err
