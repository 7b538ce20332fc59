"""The index groups a sweep (render.browse.readme): one row per point with its label,
the best point by the leaderboard metric marked, and a chart of the metric against each
numeric swept value, numbers only in the SVG, every label escaped in the Markdown."""

from __future__ import annotations

from typing import Any

from run_records import make_record

from render.browse.readme import render_index
from render.browse.svg import render_sweep_svg
from render.record.runrecord import Metrics, RunRecord

MODEL_README = "alpaca/llama-3.1-8b/README.md"
SWEEP = "sft_lora_sweep_v1"


def point(i: int, lr: float, rank: int, loss: float | None, **kw: Any) -> RunRecord:
    label = f"learning_rate={lr!r},lora_rank={rank}"
    return make_record(f"{i:010x}", SWEEP, metrics=Metrics(eval_loss=loss),
                       sweep={"index": i, "label": label,
                              "overrides": {"train.learning_rate": lr,
                                            "train.lora_rank": rank}}, **kw)


def section(readme: str) -> list[str]:
    start = readme.index(f"## Sweep {SWEEP}")
    end = readme.find("\n## ", start + 1)
    return [ln for ln in readme[start:end if end > 0 else None].splitlines()
            if ln.startswith("| ") and not ln.startswith("| point")]


def test_a_sweep_has_one_row_per_point_the_best_marked_and_charts() -> None:
    runs = [point(0, 1e-4, 8, 1.30), point(1, 2e-4, 8, 1.10), point(2, 1e-4, 16, 1.25),
            point(3, 2e-4, 16, None, status="failed"),
            make_record("plain00001", "sft_lora_v1", metrics=Metrics(eval_loss=0.5))]
    files = render_index(runs)
    readme = files[MODEL_README]
    rows = section(readme)
    assert [r.split(" | ")[1] for r in rows] == [
        "learning_rate=0.0001,lora_rank=8", "learning_rate=0.0002,lora_rank=8",
        "learning_rate=0.0001,lora_rank=16", "learning_rate=0.0002,lora_rank=16"], rows
    best = [r for r in rows if "**best**" in r]
    assert len(best) == 1 and "0000000001" in best[0], rows
    assert "failed" in rows[3]
    # the plain run is not in the sweep's section (but in the run table)
    assert "plain00001" not in "\n".join(rows) and "plain00001" in readme
    lr_svg = files[f"alpaca/llama-3.1-8b/{SWEEP}__sweep-0.svg"]
    rank_svg = files[f"alpaca/llama-3.1-8b/{SWEEP}__sweep-1.svg"]
    assert lr_svg.count("<circle") == 3 and rank_svg.count("<circle") == 3  # 3 with a value
    assert f"]({SWEEP}__sweep-0.svg)" in readme and "eval loss against train.lora_rank" in readme


def test_hostile_labels_stay_text() -> None:
    hostile = make_record("abcdef0001", SWEEP, metrics=Metrics(eval_loss=1.0),
                          sweep={"index": 0, "label": "x | <script>alert(1)</script>\n# h",
                                 "overrides": {"train.x<y": "<svg/onload=1>"}})
    files = render_index([hostile, point(1, 2e-4, 8, 1.1)])
    readme = files[MODEL_README]
    assert "<script>" not in readme and "\n# h" not in readme
    assert all("<script" not in text and "onload" not in text
               for name, text in files.items() if name.endswith(".svg"))


def test_sweep_chart_needs_two_values_and_numbers() -> None:
    assert render_sweep_svg([(1.0, 2.0)]) is None
    assert render_sweep_svg([(1.0, 2.0), (1.0, 3.0)]) is None
    assert render_sweep_svg([(1.0, float("nan")), (2.0, 3.0)]) is None
    svg = render_sweep_svg([(1e-5, 1.0), (1e-3, 2.0)], best=0)
    assert svg is not None and svg.count("<circle") == 2 and "#cf222e" in svg
    assert ">1e-05<" in svg and ">0.001<" in svg  # a log axis spans the raw values


def test_every_point_of_a_large_sweep_has_its_row_in_order() -> None:
    runs = [point(i, 1e-5 * (1 + i % 20), 8 * (1 + i // 20), 1.0 + (i % 7) / 10)
            for i in range(64)]
    rows = section(render_index(list(reversed(runs)))[MODEL_README])
    assert [int(r.split(" | ")[0][2:]) for r in rows] == list(range(64))
