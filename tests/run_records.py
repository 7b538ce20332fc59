"""RunRecords for tests: one factory with the defaults of an alpaca/llama-3.1-8b run."""

from __future__ import annotations

from typing import Any

from render.record.runrecord import RunRecord


def make_record(run_id: str = "r1", experiment: str = "sft_lora_lr1e-4_v1",
                **fields: Any) -> RunRecord:
    """A succeeded run of `experiment` on alpaca/llama-3.1-8b; `fields` override."""
    values: dict[str, Any] = {
        "run_id": run_id,
        "experiment": experiment,
        "experiment_path": f"experiments/alpaca/llama-3.1-8b/{experiment}.yaml",
        "dataset": "alpaca",
        "model": "llama-3.1-8b",
        "config_hash": "sha256:abc",
        "git_sha": "0" * 40,
        "owner": "jk",
        "status": "succeeded",
    }
    values.update(fields)
    return RunRecord(**values)
