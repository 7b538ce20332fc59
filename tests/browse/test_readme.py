"""The generated files of outputs-index/ (render.browse): READMEs, SVGs, sync."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from run_records import make_record

from render.browse.readme import README_HEADER, best_runs, render_index, render_readme
from render.browse.svg import render_loss_svg
from render.browse.sync import check_readme, generated_files, stale_files, write_readme
from render.errors import FatalError
from render.markdown import esc
from render.record.index import write_entry
from render.record.runrecord import MAX_LOSS_POINTS, Metrics, RunRecord

MODEL_README = "alpaca/llama-3.1-8b/README.md"
CELLS = 10  # columns of a model README's run table


def rec(run_id: str = "r1", **kw: Any) -> RunRecord:
    return make_record(run_id, **kw)


def table_rows(readme: str) -> list[str]:
    """Rows of a model README's run table."""
    return [ln for ln in readme.splitlines() if ln.startswith("| [") or ln.startswith("| sft")]


def model_readme(runs: list[RunRecord], key: str = MODEL_README) -> str:
    return render_index(runs)[key]


def cell_count(row: str) -> int:
    """Cells in a GFM table row: split on pipes not escaped by a backslash."""
    return len(re.split(r"(?<!\\)\|", row)) - 2


# ------------------------------------------------------------------- README


def sample_runs() -> list[RunRecord]:
    return [
        rec("r1", metrics=Metrics(final_train_loss=1.0, best_train_loss=0.9, eval_loss=1.2)),
        rec("r2", metrics=Metrics(final_train_loss=0.8, eval_loss=0.95), duration_s=3725.0),
        rec("r3", status="failed", exit_code=137, metrics=Metrics(eval_loss=0.1)),
        rec("r4", status="running"),
        rec(
            "r5",
            model="qwen2.5-7b",
            experiment="sft_full_v1",
            experiment_path="experiments/alpaca/qwen2.5-7b/sft_full_v1.yaml",
            metrics=Metrics(eval_loss=1.5),
        ),  # fmt: skip
        rec("r6", dataset="wiki", metrics=Metrics(final_train_loss=2.0)),
        rec("r7", dataset="wiki", metrics=Metrics(final_train_loss=1.5)),
        rec("r8", dataset="wiki", status="cancelled", metrics=Metrics(final_train_loss=0.1)),
    ]


def test_readme_header_and_summary() -> None:
    text = render_readme(sample_runs())
    assert text.splitlines()[0] == README_HEADER
    assert text.endswith("\n")
    assert "8 runs, 2 datasets, 3 dataset/model pairs." in text
    # one row per dataset/model: counts by status, link to the model's README
    assert (
        "| alpaca | [llama-3.1-8b](alpaca/llama-3.1-8b/README.md) | 4 | 0 | 1 | 2 | 1 | 0 "
        "| sft_lora_lr1e-4_v1 r2 (eval loss 0.95) |" in text
    )
    assert "| alpaca | [qwen2.5-7b](alpaca/qwen2.5-7b/README.md) | 1 | 0 | 0 | 1 | 0 | 0 |" in text
    assert "| wiki | [llama-3.1-8b](wiki/llama-3.1-8b/README.md) | 3 |" in text
    # one row per dataset: its best run and metric
    assert (
        "| alpaca | 5 | sft_lora_lr1e-4_v1 r2 | [llama-3.1-8b](alpaca/llama-3.1-8b/README.md) "
        "| eval loss 0.95 |" in text
    )
    assert "| wiki | 3 | sft_lora_lr1e-4_v1 r7 |" in text and "final train loss 1.5 |" in text
    # the map has no per-run rows
    assert not table_rows(text) and "(exit 137)" not in text


def test_top_readme_stays_small() -> None:
    runs = [
        rec(f"r{i}", dataset=f"d{i % 3}", model=f"m{i % 4}", owner="x" * 100,
            loss_points=[[s, 1.0 / s] for s in range(1, 65)])
        for i in range(600)
    ]  # fmt: skip
    files = render_index(runs)
    assert len(files["README.md"]) < 3000  # 12 model rows, 3 dataset rows
    assert sum(k.endswith(".svg") for k in files) == 600
    assert sum(k.endswith("/README.md") for k in files) == 12


def test_latest_run_per_model() -> None:
    runs = [
        rec("old", started_at="2026-01-01T00:00:00Z"),
        rec("new", status="running", started_at="2026-02-01T00:00:00Z"),
        rec("none"),  # no start time: never the latest over one that has one
    ]
    assert "| sft_lora_lr1e-4_v1 new (running) |" in render_readme(runs)


def test_readme_is_deterministic() -> None:
    runs = sample_runs() + [
        rec("p1", loss_points=[[1, 2.0], [2, 1.5]]),
        rec("p2", dataset="wiki", loss_points=[[10, 3], [20, 2.5], [30, 2.25]]),
    ]
    first = render_index(runs)
    for seed in range(5):
        shuffled = runs[:]
        random.Random(seed).shuffle(shuffled)
        assert render_index(shuffled) == first
        assert render_readme(shuffled) == first["README.md"]
    assert render_index(runs + runs) == first  # duplicates collapse to one row each
    assert set(first) == {
        "README.md",
        "alpaca/llama-3.1-8b/README.md",
        "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__p1.svg",
        "alpaca/qwen2.5-7b/README.md",
        "wiki/llama-3.1-8b/README.md",
        "wiki/llama-3.1-8b/sft_lora_lr1e-4_v1__p2.svg",
    }
    for text in first.values():
        assert text.startswith(("<!-- Generated by `ftops index readme`", README_HEADER))


def test_readme_marks_best_run_per_dataset() -> None:
    runs = sample_runs()
    best = best_runs(runs)
    # alpaca: lowest eval_loss among succeeded (r3 failed with 0.1 does not count)
    assert best["alpaca"].run_id == "r2"
    # wiki: no eval loss anywhere -> lowest final train loss among succeeded
    assert best["wiki"].run_id == "r7"
    files = render_index(runs)
    best_rows = [
        ln for text in files.values() for ln in text.splitlines() if "**best**" in ln
    ]  # fmt: skip
    assert len(best_rows) == 2
    assert "| r2 | succeeded **best** |" in best_rows[0]
    assert "| r7 | succeeded **best** |" in best_rows[1]
    text = files[MODEL_README]
    assert (
        "Best run of alpaca: **sft_lora_lr1e-4_v1** run r2 on this model (eval loss 0.95)."
        in text
    )
    qwen = files["alpaca/qwen2.5-7b/README.md"]
    assert (
        "Best run of alpaca: **sft_lora_lr1e-4_v1** run r2 on "
        "[llama-3.1-8b](../../alpaca/llama-3.1-8b/README.md) (eval loss 0.95)." in qwen
    )
    assert "Best run on this model: **sft_full_v1** run r5 (eval loss 1.5)." in qwen
    assert "(final train loss 1.5)" in files["wiki/llama-3.1-8b/README.md"]


def test_model_readme_header() -> None:
    text = model_readme(sample_runs())
    assert text.startswith(README_HEADER + "\n\n# alpaca / llama-3.1-8b\n")
    assert "[Experiment index](../../README.md) · 4 runs: 1 running, 2 succeeded, 1 failed." in text
    assert len(table_rows(text)) == 4
    assert text.endswith("|\n")


def test_readme_row_content() -> None:
    r = rec(
        "r9",
        metrics=Metrics(final_train_loss=0.51234, best_train_loss=0.49, eval_loss=0.6),
        hyperparameters={
            "learning_rate": 1e-4,
            "num_train_epochs": 3.0,
            "lora_rank": 8,
            "finetuning_type": "lora",
            "zzz": "not shown first",
        },
        duration_s=125,
        artifacts_url="https://console.cloud.google.com/storage/browser/b/x",
        loss_curve="gs://bucket/exp/training_loss.png",
        tracker_url="http://mlflow.local/#/runs/1",
        loss_points=[[1, 2.5], [5, 1.25], [9, 0.75]],
    )
    [row] = table_rows(model_readme([r]))
    assert row.startswith(
        "| [sft_lora_lr1e-4_v1](../../../experiments/alpaca/llama-3.1-8b/"
        "sft_lora_lr1e-4_v1.yaml) | r9 | succeeded **best** | jk | finetuning_type=lora, "
        "lr=0.0001, epochs=3, lora_rank=8, zzz=not shown first | 0.5123 / 0.49 | 0.6 "
        "| 2m 05s | ![loss](sft_lora_lr1e-4_v1__r9.svg) | "
    )
    assert "[artifacts](https://console.cloud.google.com/storage/browser/b/x)" in row
    assert "[loss curve](https://storage.cloud.google.com/bucket/exp/training_loss.png)" in row
    assert "[tracker](http://mlflow.local/#/runs/1)" in row
    assert cell_count(row) == CELLS


def test_hyperparameter_values_keep_their_type() -> None:
    runs = [rec("a", hyperparameters={"x": True}), rec("b", hyperparameters={"x": 1})]
    rows = table_rows(model_readme(runs))
    assert "| x=true |" in rows[0] and "| x=1 |" in rows[1]


def test_failed_row_shows_exit_code() -> None:
    [row] = table_rows(model_readme([rec(status="failed", exit_code=3)]))
    assert "| failed (exit 3) |" in row


HOSTILE = [
    "a | b",
    "line1\nline2\r\n| --- |",
    "`code` ``` <script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "[click](javascript:alert(1))",
    "back\\slash\\|pipe",
    "&#124; &lt;",
    "\u2028sep\x00nul\x1b[31m",
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_strings_cannot_break_the_table(hostile: str) -> None:
    r = rec(
        owner=hostile,
        hyperparameters={"learning_rate": hostile},
        artifacts_url="https://x/" + hostile,
        tracker_url=hostile,
        loss_curve="javascript:" + hostile,
        experiment_path=hostile,
        message=hostile,
        image=hostile,
        loss_points=[[1, 2.0], [2, 1.0]],
    )
    files = render_index([r])
    text = files[MODEL_README]
    rows = table_rows(text)
    assert len(rows) == 1, text
    [row] = rows
    assert cell_count(row) == CELLS
    assert row.endswith(" | ![loss](sft_lora_lr1e-4_v1__r1.svg) | " + row.rsplit(" | ", 1)[1])
    # the SVG is a function of the points alone
    assert files["alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r1.svg"] == render_loss_svg(
        [[1, 2.0], [2, 1.0]]
    )
    # the map shows none of these strings
    assert files["README.md"] == render_readme([rec()])
    assert "<" not in row and ">" not in row  # no raw HTML
    assert not re.search(r"(?<!\\)\]\(javascript", row)  # no javascript: link
    assert "\n" not in row and "\r" not in row


def test_esc_escapes_everything_markdown_cares_about() -> None:
    assert esc("a|b") == "a\\|b"
    assert esc("`x`") == "\\`x\\`"
    assert esc("<b>&") == "&lt;b&gt;&amp;"
    assert esc("[a](b)") == "\\[a\\](b)"
    assert esc("a\nb") == "a b"
    assert esc("x" * 500).endswith("\u2026") and len(esc("x" * 500)) == 160


def test_hostile_paths_are_not_linked() -> None:
    for path in ["/etc/passwd", "https://evil/x.yaml", "../../x.yaml", ""]:
        [row] = table_rows(model_readme([rec(experiment_path=path)]))
        assert row.startswith("| sft_lora_lr1e-4_v1 | r1 |"), row


def test_empty_readme() -> None:
    text = render_readme([])
    assert text.startswith(README_HEADER + "\n")
    assert "No runs recorded yet." in text
    assert render_index([]) == {"README.md": text}


def test_write_and_check_readme(tmp_path: Path) -> None:
    assert not check_readme(tmp_path)  # missing
    for r in sample_runs():
        write_entry(tmp_path, r)
    path = write_readme(tmp_path)
    assert path == tmp_path / "README.md"
    assert path.read_text() == render_readme(sample_runs())
    assert check_readme(tmp_path)
    # a new entry makes it stale
    write_entry(tmp_path, rec("r10"))
    assert not check_readme(tmp_path)
    write_readme(tmp_path)
    assert check_readme(tmp_path)
    # a hand edit makes it stale
    path.write_text(path.read_text() + "\nhand edit\n")
    assert not check_readme(tmp_path)


# ------------------------------------------------------------------- all generated files

CURVE = [[1, 2.5], [2, 2.0], [4, 1.5], [8, 1.0]]


def curve_runs() -> list[RunRecord]:
    return sample_runs() + [
        rec("c1", loss_points=CURVE, metrics=Metrics(final_train_loss=1.0)),
        rec("c2", dataset="wiki", model="qwen2.5-7b", loss_points=[[5, 0.5]]),
    ]


def on_disk(root: Path) -> dict[str, str]:
    """Every non-entry file under root."""
    return {
        p.relative_to(root).as_posix(): p.read_text()
        for p in root.rglob("*")
        if p.is_file() and p.suffix != ".json"
    }


def test_write_readme_writes_every_generated_file(tmp_path: Path) -> None:
    runs = curve_runs()
    for r in runs:
        write_entry(tmp_path, r)
    write_readme(tmp_path)
    assert on_disk(tmp_path) == render_index(runs)
    assert generated_files(tmp_path) == sorted(render_index(runs))
    assert check_readme(tmp_path) and stale_files(tmp_path) == []
    assert "![loss](sft_lora_lr1e-4_v1__c1.svg)" in (tmp_path / MODEL_README).read_text()
    # idempotent: nothing rewritten when nothing changed
    mtimes = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    write_readme(tmp_path)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == mtimes


def test_stale_generated_files_are_removed(tmp_path: Path) -> None:
    runs = curve_runs()
    for r in runs:
        write_entry(tmp_path, r)
    write_readme(tmp_path)
    notes = tmp_path / "wiki/qwen2.5-7b/notes.txt"  # not a generated name: kept
    notes.write_text("mine\n")
    # the only wiki/qwen run goes (entries are never deleted by ftops; a person may)
    (tmp_path / "wiki/qwen2.5-7b/sft_lora_lr1e-4_v1__c2.json").unlink()
    # a curve for a run that has none, and a model folder with no entries at all
    (tmp_path / "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r1.svg").write_text("<svg/>")
    (tmp_path / "gone/model").mkdir(parents=True)
    (tmp_path / "gone/model/README.md").write_text("old\n")
    (tmp_path / "gone/model/x__y.svg").write_text("<svg/>")
    assert stale_files(tmp_path) == [
        "README.md",
        "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__r1.svg",
        "gone/model/README.md",
        "gone/model/x__y.svg",
        "wiki/qwen2.5-7b/README.md",
        "wiki/qwen2.5-7b/sft_lora_lr1e-4_v1__c2.svg",
    ]
    entries_before = sorted(p.name for p in tmp_path.rglob("*.json"))
    write_readme(tmp_path)
    left = [r for r in runs if r.run_id != "c2"]
    assert on_disk(tmp_path) == {**render_index(left), "wiki/qwen2.5-7b/notes.txt": "mine\n"}
    assert not (tmp_path / "gone").exists()  # emptied folders go too
    assert sorted(p.name for p in tmp_path.rglob("*.json")) == entries_before
    assert check_readme(tmp_path)


@pytest.mark.parametrize(
    "change",
    [
        "edit model README",
        "delete model README",
        "edit svg",
        "delete svg",
        "extra svg",
        "extra model README",
        "svg symlink",
    ],
)
def test_check_readme_sees_every_generated_file(tmp_path: Path, change: str) -> None:
    for r in curve_runs():
        write_entry(tmp_path, r)
    write_readme(tmp_path)
    assert check_readme(tmp_path)
    model = tmp_path / MODEL_README
    svg = tmp_path / "alpaca/llama-3.1-8b/sft_lora_lr1e-4_v1__c1.svg"
    if change == "edit model README":
        model.write_text(model.read_text().replace("| c1 |", "| c9 |"))
    elif change == "delete model README":
        model.unlink()
    elif change == "edit svg":
        svg.write_text(svg.read_text().replace("points=", "points=\"0 0\" x="))
    elif change == "delete svg":
        svg.unlink()
    elif change == "extra svg":
        (svg.parent / "sft_lora_lr1e-4_v1__nope.svg").write_text(svg.read_text())
    elif change == "extra model README":
        (tmp_path / "alpaca/mistral").mkdir()
        (tmp_path / "alpaca/mistral/README.md").write_text(model.read_text())
    elif change == "svg symlink":  # same bytes, but not a plain file
        target = tmp_path.parent / "elsewhere.svg"
        target.write_text(svg.read_text())
        svg.unlink()
        svg.symlink_to(target)
    assert not check_readme(tmp_path)
    assert len(stale_files(tmp_path)) == 1
    write_readme(tmp_path)
    assert check_readme(tmp_path)
    assert not svg.is_symlink()
    if change == "svg symlink":
        assert target.read_text() == svg.read_text()  # replaced, never written through


SVG_TEXT = re.compile(
    r'<!-- Generated by `ftops index readme` from the run\'s loss_points\. Do not edit by '
    r'hand\. -->\n<svg xmlns="http://www\.w3\.org/2000/svg" width="160" height="40" '
    r'viewBox="0 0 160 40"><rect width="160" height="40" rx="3" fill="#f6f8fa"/>'
    r'<polyline fill="none" stroke="#0969da" stroke-width="1\.5" stroke-linecap="round" '
    r'stroke-linejoin="round" vector-effect="non-scaling-stroke" '
    r'transform="translate\([0-9]+ [0-9]+\) scale\([-0-9.e+]+ [-0-9.e+]+\) '
    r'translate\([-0-9.e+]+ [-0-9.e+]+\)" points="[-0-9.e+ ]+"/></svg>\n'
)


def test_svg_sparkline_is_exact_and_deterministic() -> None:
    svg = render_loss_svg(CURVE)
    assert svg is not None and SVG_TEXT.fullmatch(svg), svg
    # x: steps 1..8 onto 3..157 (154/7 = 22 per step); y: 1.0..2.5 onto 37..3
    assert 'transform="translate(3 37) scale(22 -22.6667) translate(-1 -1)"' in svg
    assert 'points="1 2.5 2 2 4 1.5 8 1"/>' in svg
    # equal values give equal text (1 == 1.0), whatever came first
    assert render_loss_svg([[1.0, 2.5], [2.0, 2], [4, 1.5], [8, 1.0]]) == svg
    assert render_loss_svg([tuple(p) for p in CURVE]) == svg
    # degenerate curves: one point (a dot), a flat loss (a line in the middle)
    one = render_loss_svg([[5, 0.5]])
    assert one is not None and 'translate(80 20) scale(1 -1) translate(-5 -0.5)' in one
    flat = render_loss_svg([[1, 0.5], [2, 0.5]])
    assert flat is not None and "translate(3 20) scale(154 -1)" in flat
    big = render_loss_svg([[10**6 + i, 1e-5 * i] for i in range(MAX_LOSS_POINTS)])
    assert big is not None and SVG_TEXT.fullmatch(big)


@pytest.mark.parametrize(
    "points",
    [
        [],
        [[1, "<script>alert(1)</script>"]],
        [["</svg><script>", 1]],
        [[1, float("nan")], [2, 1.0]],
        [[1, float("inf")], [2, 1.0]],
        [[1, 2, 3]],
        [[1]],
        [[1, [2]]],
        [{"a": 1, "b": 2}],
        ["12"],
        [[1, None]],
        [[s, 1.0] for s in range(MAX_LOSS_POINTS + 1)],
        "1 2",
        None,
        7,
    ],
)
def test_hostile_points_never_reach_an_svg(points: Any) -> None:
    assert render_loss_svg(points) is None
    files = render_index([rec(loss_points=points, owner="<svg onload=alert(1)>")])
    assert [k for k in files if k.endswith(".svg")] == []
    [row] = table_rows(files[MODEL_README])
    assert cell_count(row) == CELLS and "![loss]" not in row


def test_odd_but_valid_names_make_safe_file_names() -> None:
    runs = [
        rec("r-1.x", experiment="a+b", loss_points=CURVE),
        rec("R_2", experiment="x.y-z_", loss_points=CURVE),
        rec("3", experiment="1", owner="| ![x](javascript:alert(1)) <b>", loss_points=CURVE),
    ]
    files = render_index(runs)
    svgs = sorted(k for k in files if k.endswith(".svg"))
    assert svgs == [
        "alpaca/llama-3.1-8b/1__3.svg",
        "alpaca/llama-3.1-8b/a+b__r-1.x.svg",
        "alpaca/llama-3.1-8b/x.y-z___R_2.svg",
    ]
    assert all(files[k] == render_loss_svg(CURVE) for k in svgs)
    rows = table_rows(files[MODEL_README])
    assert len(rows) == 3 and all(cell_count(r) == CELLS for r in rows)
    assert "| ![loss](1__3.svg) |" in rows[0] and "<b>" not in rows[0]


@pytest.mark.parametrize("field", ["dataset", "model", "experiment", "run_id"])
def test_names_that_cannot_be_files_are_refused(field: str) -> None:
    with pytest.raises(FatalError, match=field):
        render_index([rec(**{field: "../x"}, loss_points=CURVE)])


@settings(max_examples=200, deadline=None)
@given(owner=st.text(max_size=300), msg=st.text(max_size=50))
def test_any_owner_keeps_the_row_shape(owner: str, msg: str) -> None:
    rows = table_rows(model_readme([rec(owner=owner, hyperparameters={msg or "k": msg})]))
    assert len(rows) == 1
    assert cell_count(rows[0]) == CELLS
