"""The post-run hook stores the loss curve as index-sized points (render.record.hook)."""

from __future__ import annotations

import json
from pathlib import Path

from render.browse.readme import render_index
from render.browse.sync import write_readme
from render.record import hook
from render.record.identity import RunIdentity
from render.record.index import write_entry
from render.record.runrecord import MAX_LOSS_POINTS, RunRecord


def write_log(out: Path, entries: list[dict[str, object]]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(e) for e in entries]
    (out / "trainer_log.jsonl").write_text("\n".join(lines) + "\n{\"current_steps\": 9")


def test_loss_points_are_downsampled_and_rounded(tmp_path: Path) -> None:
    log: list[dict[str, object]] = [
        {"current_steps": s, "total_steps": 500, "loss": 3.0 / s + 0.123456789}
        for s in range(1, 501)
    ]
    log.insert(100, {"current_steps": 100, "eval_loss": 9.0})  # merged into step 100
    log.append({"current_steps": 250, "loss": 0.987654321})  # a resumed run: last wins
    write_log(tmp_path, log)
    points = hook.loss_points(tmp_path)
    assert len(points) == MAX_LOSS_POINTS
    assert points[0] == [1, 3.123] and points[-1][0] == 500  # first and last kept
    steps = [p[0] for p in points]
    assert steps == sorted(set(steps))
    gaps = {b - a for a, b in zip(steps, steps[1:], strict=False)}
    assert gaps <= {7, 8, 9}  # evenly spread over 1..500
    for step, loss in points:
        assert isinstance(step, int)
        assert loss == float(f"{loss:.4g}")  # 4 significant digits
        assert loss == (0.9877 if step == 250 else float(f"{3.0 / step + 0.123456789:.4g}"))
    assert hook.loss_points(tmp_path) == points  # deterministic


def test_short_or_missing_logs(tmp_path: Path) -> None:
    assert hook.loss_points(tmp_path) == []  # no trainer_log.jsonl
    write_log(tmp_path, [{"current_steps": 5, "loss": 1.23456}, {"current_steps": 10},
                         {"current_steps": 15, "loss": float("nan")},
                         {"current_steps": 20, "loss": 0.5}])  # fmt: skip
    assert hook.loss_points(tmp_path) == [[5, 1.235], [20, 0.5]]
    assert hook.loss_points(tmp_path, limit=1) == [[20, 0.5]]


def test_build_record_fills_loss_points_and_the_index_draws_them(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_log(out, [{"current_steps": s, "loss": 2.0 - s / 100} for s in range(1, 101)])
    identity = RunIdentity(
        run_id="abc123", experiment="sft_v1", experiment_path="experiments/demo/tiny/sft_v1.yaml",
        dataset="demo", model="tiny", config_hash="sha256:x", git_sha="0" * 40,
        artifacts_uri=str(tmp_path / "storage"))
    record = hook.build_record(identity, out, exit_code=0, started_at="2026-01-01T00:00:00Z",
                               finished_at="2026-01-01T00:01:00Z", mode="local")
    assert len(record.loss_points) == MAX_LOSS_POINTS
    assert record.loss_points[0] == [1, 1.99] and record.loss_points[-1] == [100, 1.0]
    assert RunRecord.from_json(record.to_json()) == record
    root = tmp_path / "outputs-index"
    write_entry(root, record)
    write_readme(root)
    svg = root / "demo/tiny/sft_v1__abc123.svg"
    assert svg.read_text() == render_index([record])["demo/tiny/sft_v1__abc123.svg"]
    assert "](sft_v1__abc123.svg)" in (root / "demo/tiny/README.md").read_text()
