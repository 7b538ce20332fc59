"""`ftops launch --local` checks what the run needs before it starts anything: on a
fresh clone (no `.demo/` yet) the demo experiment says, in one line, that `ftops demo`
makes its model and data, and no output folder or index entry appears."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from lint_harness import make_workspace

from render.cli import main
from render.errors import FatalError
from render.launch.local import check_prerequisites
from render.manifests.runspec import RunSpec
from render.propose.experiment import Workspace

DEMO = "experiments/demo/tiny-llama/sft_lora_v1.yaml"


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    return make_workspace(tmp_path)  # experiments and k8s-base, no .demo/


def launch(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, float]:
    start = time.monotonic()
    code = main(["--repo", str(root), "launch", "--local", DEMO, "--work",
                 str(root / "outputs"), "--no-progress"])
    took = time.monotonic() - start
    return code, capsys.readouterr().err, took


def test_fresh_clone_says_what_makes_the_model(clone: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, err, took = launch(clone, capsys)
    assert code == 1
    (line,) = err.strip().splitlines()
    assert line.startswith(f"ftops: error: {DEMO}: model .demo/tiny-llama "
                           "(train.model_name_or_path) does not exist: `ftops demo` makes it")
    assert line.endswith("Nothing was started")
    assert "Traceback" not in err and took < 30
    assert not (clone / "outputs").exists()  # no run folder, no record
    assert not list((clone / "outputs-index").rglob("*.json"))


def test_missing_data_is_named_too(clone: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clone / ".demo/tiny-llama").mkdir(parents=True)  # a model, but no data
    code, err, _ = launch(clone, capsys)
    (line,) = err.strip().splitlines()
    assert code == 1 and "data .demo/data (source.uri in experiments/demo/dataset.yaml) " \
        "does not exist: `ftops demo` makes it" in line
    (clone / ".demo/data").mkdir()
    code, err, _ = launch(clone, capsys)
    (line,) = err.strip().splitlines()
    assert code == 1 and "data .demo/data/demo.json" in line
    assert not (clone / "outputs").exists()


def test_hub_models_and_other_paths(clone: Path) -> None:
    ws = Workspace(clone)
    lora = "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"
    exp, _ = ws.load(clone / lora)
    assert exp is not None
    check_prerequisites(ws, RunSpec(exp, "0" * 40))  # a hub id and gs:// data: not here
    demo, _ = ws.load(clone / DEMO)
    assert demo is not None
    demo.train["model_name_or_path"] = str(clone / "models/mine")
    with pytest.raises(FatalError, match="create it, or name a model or data that exists"):
        check_prerequisites(ws, RunSpec(demo, "0" * 40))
    (clone / "models/mine").mkdir(parents=True)
    data = clone / ".demo/data"
    data.mkdir(parents=True)
    (data / "demo.json").write_text(json.dumps([]))
    (data / "demo_eval.json").write_text(json.dumps([]))
    check_prerequisites(ws, RunSpec(demo, "0" * 40))
