"""What `ftops import` reads: turn a source into LLaMA-Factory arguments plus what is
known about where they came from.

A source is one of
- a LLaMA-Factory CLI YAML (`llamafactory-cli train x.yaml`; LLaMA-Factory's examples);
- an ftops experiment file from elsewhere (metadata/launch/train);
- a LLaMA Board "Save arguments" file (`llamaboard_config/<name>.yaml`: element ids,
  widget values), derived exactly as the Board derives it (`board.board_to_args`);
- a Board output folder (`training_args.yaml`, what the Board trained, beside
  `llamaboard_config.yaml`, the widgets; the two are cross-checked);
- `run:<run_id>`: one of our runs, found in outputs-index/, rebuilt from the experiment
  at the commit that launched it (git), or else from the config the run recorded
  (the index entry, or `run.json` beside the artifacts).
Every file is read as untrusted (`untrusted`): bounded size and depth, no aliases.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from render.errors import FatalError
from render.propose import board, untrusted
from render.propose.experiment import Workspace

TRAINING_ARGS = "training_args.yaml"
BOARD_CONFIG = "llamaboard_config.yaml"
RUN_PREFIX = "run:"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass
class Source:
    kind: str  # cli | experiment | board | board-run | run
    label: str  # for people: the file, or the run
    train: dict[str, Any]
    name_hint: str  # the experiment name to start from
    base_dir: Path | None = None  # where relative paths in the config were meant from
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    launch: dict[str, Any] = field(default_factory=dict)
    deepspeed_config: dict[str, Any] | None = None  # content known from the source
    evaluate: dict[str, Any] = field(default_factory=dict)  # a run's evaluate: block
    reproduces: str = ""  # run id
    config_hash: str = ""  # the run's, to verify a reproduction
    drop_defaults: bool = False  # the Board writes every argument; drop LF defaults


def read_source(spec: str, ws: Workspace, *, model: str | None = None) -> Source:
    if spec.startswith(RUN_PREFIX):
        return _from_run(spec[len(RUN_PREFIX):], ws)
    path = Path(spec)
    if path.is_dir():
        return _from_board_run(path, model)
    if not path.is_file():
        raise FatalError(f"{spec}: no such file or folder (import takes a LLaMA-Factory "
                         "YAML, a LLaMA Board config or output folder, or run:<run_id>)")
    data = untrusted.load_yaml(path, "a config to import", yaml12=False)
    if _is_board_state(data):
        return _from_board_file(path, data, model)
    data = untrusted.load_yaml(path, "a config to import", yaml12=True)
    if not isinstance(data, dict):
        raise FatalError(f"{path}: expected a mapping of LLaMA-Factory arguments (key: value)")
    if "train" in data and set(data) <= {"metadata", "launch", "train"}:
        if not isinstance(data["train"], dict):
            raise FatalError(f"{path}: train: must be a mapping")
        meta = data["metadata"] if isinstance(data.get("metadata"), dict) else {}
        launch = data["launch"] if isinstance(data.get("launch"), dict) else {}
        return Source("experiment", str(path), dict(data["train"]), _stem(path),
                      path.parent, metadata=dict(meta), launch=dict(launch))
    return Source("cli", str(path), dict(data), _stem(path), path.parent)


def _stem(path: Path) -> str:
    return path.stem if path.name != TRAINING_ARGS else path.parent.name


def _is_board_state(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and all(
        isinstance(k, str) and k.startswith(("top.", "train.")) for k in data)


def _board_model_path(state: dict[str, Any], model: str | None, where: str) -> str:
    if model:
        return model
    name = state.get("top.model_name")
    path = board.table().models.get(str(name)) if name else None
    if not path:
        raise FatalError(f"{where}: the Board model is {name!r}, whose path the file does "
                         "not hold (the Board never saves top.model_path); pass --model "
                         "<hub id or path>")
    return path


def _split_board_file(data: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The saved fields, and a model path if a hand-made file carries one."""
    state = dict(data)
    model_path = state.pop("top.model_path", None)
    for key in board.NOT_SAVED:
        state.pop(key, None)
    return state, model_path if isinstance(model_path, str) and model_path else None


def _board_args(state: dict[str, Any], model_path: str, where: str) -> tuple[
        dict[str, Any], list[str], dict[str, Any] | None]:
    state = board.validate_state(state, where)
    # what "Start" would train: it drops every false, null and empty argument
    args = board.clean(board.board_to_args(state, model_path=model_path))
    notes = []
    defaults = board.defaults()
    for eid, why in sorted(board.lost_fields(state).items()):
        element = board.table().elements[eid]
        if eid == "train.dataset_dir" or board.same_value(element, state[eid], defaults[eid]):
            continue
        notes.append(f"not kept: {eid} = {json.dumps(state[eid], default=str)[:60]} "
                     f"({why}, so it has no effect on training)")
    ds = args.get("deepspeed")
    preset = None
    if isinstance(ds, str) and ds.startswith(board.CACHE_DIR + "/"):
        preset = board.table().deepspeed_presets.get(ds.split("/", 1)[1])
    return args, notes, preset


def _from_board_file(path: Path, data: dict[str, Any], model: str | None) -> Source:
    state, carried = _split_board_file(data)
    model_path = _board_model_path(state, model or carried, str(path))
    args, notes, preset = _board_args(state, model_path, str(path))
    name = path.stem if path.name != BOARD_CONFIG else path.parent.name
    src = Source("board", str(path), args, name, path.parent, notes=notes,
                 deepspeed_config=preset, drop_defaults=True)
    return src


def _from_board_run(folder: Path, model: str | None) -> Source:
    """A Board output folder: training_args.yaml is what trained."""
    cli_path, board_path = folder / TRAINING_ARGS, folder / BOARD_CONFIG
    if not cli_path.is_file():
        raise FatalError(f"{folder}: not a LLaMA Board output folder (no {TRAINING_ARGS}); "
                         "pass the folder the Board trained in (saves/<model>/<method>/<name>)")
    trained = untrusted.load_yaml(cli_path, "the Board's training_args.yaml", yaml12=True)
    if not isinstance(trained, dict):
        raise FatalError(f"{cli_path}: expected a mapping of LLaMA-Factory arguments")
    notes: list[str] = []
    preset = None
    ds = trained.get("deepspeed")
    if isinstance(ds, str) and ds.startswith(board.CACHE_DIR + "/"):
        preset = board.table().deepspeed_presets.get(ds.split("/", 1)[1])
    if board_path.is_file():
        data = untrusted.load_yaml(board_path, "the Board's llamaboard_config.yaml",
                                   yaml12=False)
        if not _is_board_state(data):
            raise FatalError(f"{board_path}: not a LLaMA Board config (element id: value)")
        state, _ = _split_board_file(data)
        path = str(trained.get("model_name_or_path") or "")
        args, lost, _ = _board_args(state, model or path, str(board_path))
        notes.extend(lost)
        derived = board.effective({k: v for k, v in args.items()
                                   if k not in ("output_dir", "cache_dir")})
        ran = board.effective({k: v for k, v in trained.items()
                               if k not in ("output_dir", "cache_dir")})
        for key in sorted(set(derived) | set(ran)):
            a, b = ran.get(key), derived.get(key)
            if not board.same_arg(key, a, b):
                notes.append(f"{TRAINING_ARGS} and {BOARD_CONFIG} disagree on {key} "
                             f"({json.dumps(a, default=str)[:40]} vs "
                             f"{json.dumps(b, default=str)[:40]}); imported what trained")
    return Source("board-run", str(folder), dict(trained), folder.name, folder, notes=notes,
                  deepspeed_config=preset, drop_defaults=True)


# --------------------------------------------------------------------------- our runs


def _from_run(run_id: str, ws: Workspace) -> Source:
    from render.record.index import read_entry

    if not _RUN_ID.match(run_id):
        raise FatalError(f"run:{run_id[:80]}: not a run id (see outputs-index/)")
    root = ws.root / "outputs-index"
    entries = sorted(root.glob(f"*/*/*__{run_id}.json")) if root.is_dir() else []
    if not entries:
        raise FatalError(f"run {run_id} is not in outputs-index/ (ftops status lists runs; "
                         "the index READMEs map them)")
    record = read_entry(entries[0], root)
    label = f"run {run_id} of {record.experiment_path}"
    src = Source("run", label, {}, record.experiment, reproduces=run_id,
                 config_hash=record.config_hash)
    src.launch = {"nodes": record.nodes, "gpus_per_node": record.gpus_per_node,
                  "gpu_type": record.gpu_type or "cpu"}
    src.metadata = {"owner": record.owner} if record.owner else {}
    exp = _experiment_at_commit(ws, record.experiment_path, record.git_sha)
    if exp is not None and exp.config_hash == record.config_hash:
        src.train = dict(exp.train)
        launch = exp.merged.get("launch")
        src.launch = dict(launch) if isinstance(launch, dict) else src.launch
        src.metadata = dict(exp.metadata)
        src.deepspeed_config = exp.deepspeed_config
        evaluate = exp.merged.get("evaluate")
        src.evaluate = dict(evaluate) if isinstance(evaluate, dict) else {}
        src.notes.append(f"rebuilt from {record.experiment_path} at commit "
                         f"{record.git_sha[:12]} (config hash {record.config_hash[:12]}, "
                         "as recorded)")
        return src
    resolved = record.resolved_config or _run_json_config(record.artifacts_uri)
    if not resolved:
        why = "that commit is not in this repository" if exp is None else \
            "its config hash at that commit differs from the recorded one"
        raise FatalError(f"{label}: cannot rebuild it: {why}, and neither its index entry "
                         f"nor {record.artifacts_uri}/run.json records the config it ran")
    train = dict(resolved)
    for key in ("output_dir", "dataset_dir", "overwrite_output_dir"):
        train.pop(key, None)
    if train.get("run_name") == f"{record.experiment}-{run_id}":
        del train["run_name"]  # ftops' default run name, not part of the experiment
    prefix = str(ws.root) + "/"
    for key in ("model_name_or_path", "deepspeed"):  # `launch --local` made them absolute
        value = train.get(key)
        if isinstance(value, str) and value.startswith(prefix):
            train[key] = value[len(prefix):]
    src.train = train
    src.notes.append(f"rebuilt from the config the run recorded (the experiment at "
                     f"{record.git_sha[:12]} is not available)")
    now = ws.root / record.experiment_path
    current, _ = ws.load(now) if now.is_file() else (None, [])
    launch = current.merged.get("launch") if current is not None else None
    if isinstance(launch, dict):
        # the record keeps the layout, not the storage profile or the Secrets
        src.launch = {**launch, **src.launch}
        src.notes.append(f"launch settings other than the layout from {record.experiment_path}"
                         " as it is now")
    if record.evaluations:
        src.notes.append(f"its evaluate: block ({', '.join(sorted(record.evaluations))}) is "
                         "not in the record: add it by hand to reproduce the evaluation too")
    return src


def _run_json_config(artifacts_uri: str) -> dict[str, Any]:
    from render.record.runrecord import RunRecord
    from render.record.storage import open_storage

    try:
        text = open_storage(artifacts_uri).read_text("run.json") if artifacts_uri else None
    except (FatalError, OSError, ValueError):
        return {}
    if not text:
        return {}
    try:
        data = untrusted.loads_json(text, f"{artifacts_uri}/run.json", "a run record")
        return dict(RunRecord.from_dict(data).resolved_config) if isinstance(data, dict) else {}
    except (FatalError, TypeError, ValueError):
        return {}


def _git_show(root: Path, commit: str, rel: str) -> bytes | None:
    if not re.fullmatch(r"[0-9a-f]{7,64}", commit or ""):
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "show", f"{commit}:{rel}"],
                             capture_output=True, check=False, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout if out.returncode == 0 else None


def _experiment_at_commit(ws: Workspace, rel: str, commit: str) -> Any:
    """The experiment as it was at `commit` (its file, defaults, dataset.yaml and
    DeepSpeed config, read from git), loaded in a scratch copy of the layout."""
    parts = Path(rel).parts
    if len(parts) != 4 or parts[0] != "experiments" or ".." in parts:
        return None
    text = _git_show(ws.root, commit, rel)
    if text is None:
        return None
    with tempfile.TemporaryDirectory(prefix="ftops-run-") as scratch:
        root = Path(scratch)
        (root / Path(rel).parent).mkdir(parents=True)
        (root / rel).write_bytes(text)
        for extra in (f"experiments/{parts[1]}/_defaults.yaml",
                      f"experiments/{parts[1]}/{parts[2]}/_defaults.yaml",
                      f"experiments/{parts[1]}/dataset.yaml"):
            blob = _git_show(ws.root, commit, extra)
            if blob is not None:
                (root / extra).write_bytes(blob)
        ws_then = Workspace(root, ws.profile)
        exp, findings = ws_then.load(root / rel)
        if exp is None:
            return None
        ds = exp.train.get("deepspeed")
        if isinstance(ds, str) and ds.startswith("experiments/_deepspeed/") and ".." not in ds:
            blob = _git_show(ws.root, commit, ds)
            if blob is not None:
                try:
                    exp.deepspeed_config = json.loads(blob)
                except ValueError:
                    exp.deepspeed_config = None
                exp.__dict__.pop("config_hash", None)
        _ = exp.config_hash  # computed while the scratch files exist
        return exp
