"""`ftops export EXP --cli | --board`: an experiment out, for a workstation.

Both write into one folder (default `.exported/<dataset>/<model>/<name>/`):
- `dataset_info.json`: the experiment's dataset entries, file names made absolute
  (`file://` data in the repository; other data from `--data-dir`), so LLaMA-Factory
  finds the data without ftops;
- `--cli`: `train.yaml`, the resolved LLaMA-Factory config, run as is with
  `llamafactory-cli train <folder>/train.yaml` (output_dir is where
  `ftops launch --local` would train the same run, `dataset_dir` is this folder,
  DeepSpeed and local model paths are absolute);
- `--board`: `<name>.yaml`, a LLaMA Board "Load arguments" file: every Board field, the
  rest in `train.extra_args`, `train.dataset_dir` pointing at this folder. What the Board
  cannot represent, and what to do after loading, is returned to be printed on stderr.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from render.errors import FatalError
from render.manifests.runspec import RunSpec, git_commit
from render.propose import board
from render.propose.experiment import Experiment, Workspace

EXPORT_DIR = ".exported"


@dataclass
class ExportResult:
    files: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # for stderr
    command: str = ""


def default_folder(ws: Workspace, exp: Experiment) -> Path:
    return ws.root / EXPORT_DIR / exp.dataset / exp.model / exp.name


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.ftops-export")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _dataset_info(ws: Workspace, spec: RunSpec, data_dir: Path | None,
                  res: ExportResult) -> dict[str, Any]:
    uri = str(spec.exp.registration.get("source", {}).get("uri", ""))
    if data_dir is not None:
        base = str(data_dir.resolve())
    elif uri.startswith("file://"):
        base = str((ws.root / uri[len("file://"):]).resolve())
    else:
        base = ""
    info = spec.dataset_info(ws.root)
    for name, entry in info.items():
        if "file_name" in entry and not base:
            res.warnings.append(f"dataset {name}: its files live at {uri}; copy them to this "
                                f"machine and export again with --data-dir DIR")
        elif "file_name" in entry and data_dir is not None:
            raw = (spec.exp.registration.get("dataset_info") or {}).get(name, {})
            entry["file_name"] = f"{base}/{raw.get('file_name')}"
    return info


def _local(ws: Workspace, value: str) -> str:
    candidate = ws.root / value
    return str(candidate.resolve()) if value and not os.path.isabs(value) and \
        candidate.exists() else value


def _say_inputs(exp: Experiment, res: ExportResult) -> None:
    """A pipeline stage's inputs (`needs:`): what the export cannot fill in by itself."""
    for need in exp.inputs:
        if need.waiting:
            res.warnings.append(f"{need.as_} is left out: this stage {need.waiting}; set it "
                                "to that stage's output folder yourself")
        else:
            res.warnings.append(f"{need.as_} is run {need.run_id} of {need.experiment} "
                                f"({need.artifacts_uri}): copy that folder here if it is in "
                                "central storage")


def export_cli(ws: Workspace, exp: Experiment, folder: Path, *,
               data_dir: Path | None = None) -> ExportResult:
    res = ExportResult()
    spec = RunSpec(exp, git_commit(ws.root))
    info = _dataset_info(ws, spec, data_dir, res)
    ds = exp.train.get("deepspeed")
    output_dir = (ws.root / "outputs" / spec.run_path).resolve()
    cfg = spec.train_config(output_dir=str(output_dir), dataset_dir=str(folder.resolve()),
                            deepspeed=str((ws.root / ds).resolve()) if isinstance(ds, str)
                            else None, tracker={}, inputs=spec.input_paths("local"))
    cfg["model_name_or_path"] = _local(ws, str(cfg.get("model_name_or_path", "")))
    _say_inputs(exp, res)
    _write(folder / "dataset_info.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    train_yaml = folder / "train.yaml"
    _write(train_yaml, f"# Written by `ftops export --cli` from {exp.path}.\n"
           f"# Run it: llamafactory-cli train {train_yaml.resolve()}\n"
           + yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True, width=100))
    res.files = [train_yaml, folder / "dataset_info.json"]
    res.command = f"llamafactory-cli train {train_yaml.resolve()}"
    return res


def export_board(ws: Workspace, exp: Experiment, folder: Path, *,
                 data_dir: Path | None = None) -> ExportResult:
    res = ExportResult()
    spec = RunSpec(exp, git_commit(ws.root))
    info = _dataset_info(ws, spec, data_dir, res)
    if isinstance(exp.train.get("deepspeed"), str) and exp.deepspeed_config is None:
        raise FatalError(f"{exp.path}: its DeepSpeed config cannot be read; run ftops lint")
    out = board.args_to_board(exp.train, dataset_dir=str(folder.resolve()),
                              deepspeed_config=exp.deepspeed_config)
    _write(folder / "dataset_info.json", json.dumps(info, indent=2, sort_keys=True) + "\n")
    path = folder / f"{exp.name}.yaml"
    _write(path, yaml.safe_dump(out.state, allow_unicode=True))
    res.files = [path, folder / "dataset_info.json"]
    _say_inputs(exp, res)
    res.warnings.extend(f"the Board cannot represent {line}" for line in out.unrepresentable)
    res.warnings.extend(out.notes)
    res.warnings.append(
        "load it: in the Board's Train tab type " + str(path.resolve()) + " into the config "
        "path box (or copy the file into llamaboard_config/ beside where llamafactory-cli "
        "webui runs) and press Load arguments; loading a different stage or model makes the "
        "Board clear the dataset and reset the template, so press Load arguments a second "
        "time")
    res.command = str(path.resolve())
    return res
