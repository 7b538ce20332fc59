"""The committed LLaMA Board table is what the installed Board says (no drift)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from render.propose.board import TABLE_PATH, table

pytestmark = pytest.mark.slow
SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gen_llamaboard_table.py"


def test_committed_table_matches_regeneration(tmp_path: Path) -> None:
    fresh = tmp_path / "table.json"
    env = {k: v for k, v in os.environ.items()
           if k not in ("USE_MCA", "ALLOW_EXTRA_ARGS", "USE_RAY", "USE_KT", "USE_V1")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(fresh)], cwd=tmp_path,
                          capture_output=True, text=True, check=False, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert fresh.read_bytes() == TABLE_PATH.read_bytes(), (
        f"{TABLE_PATH.name} is stale: run python scripts/gen_llamaboard_table.py")


def test_table_shape() -> None:
    t = table()
    assert len(t.saved) == 87  # 8 top.* + 79 train.* (the Board's "Save arguments")
    assert sum(eid.startswith("top.") for eid in t.saved) == 8
    assert t.stages["Supervised Fine-Tuning"] == "sft" and len(t.stages) == 6
    assert set(t.deepspeed_presets) == {"ds_z2_config.json", "ds_z2_offload_config.json",
                                        "ds_z3_config.json", "ds_z3_offload_config.json"}
    assert "packing" in t.no_skip_keys and "bf16" not in t.no_skip_keys
    assert t.models["Qwen3-4B-Instruct-2507"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert t.elements["train.learning_rate"].default == "5e-5"
