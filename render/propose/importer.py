"""`ftops import SRC`: a LLaMA-Factory or LLaMA Board config (or one of our runs) in,
`experiments/<dataset>/<model>/<name>_v<N>.yaml` out, lint-clean or with a list of
exactly what is left to decide.

From the arguments (`importsrc.read_source`) it
- derives the folders (dataset: a name in `train.dataset`; model: the slug of
  `model_name_or_path`) and the next free `<name>_v<N>`;
- drops the keys ftops owns, one line each;
- points `deepspeed:` at the `experiments/_deepspeed/*.json` with the same content, or
  adds the file (read as untrusted: JSON, bounded, shaped like a DeepSpeed config);
- registers missing datasets in `experiments/<dataset>/dataset.yaml` from a
  `dataset_info.json` the user names (appended in place: the file's comments stay);
- takes the launch settings from the cluster profile (queue, priority and storage are
  left to it; a GPU type is chosen and said);
- never copies a literal secret: the value is dropped and `launch.env_from_secrets`
  references a Kubernetes Secret instead.
Then it lints what it wrote. Clean: done. Not clean: every finding is a decision left,
and nothing stays written (unless `keep`), so settling a decision and running the same
command again gives the same `_v<N>`.

A `Decision` has a stable `key` (tests list them per example file), a sentence, and
the option that settles it. `blocking` decisions stop the import; the others are
choices import made and says, so a person can change them.

One module of ~660 lines on purpose: the sections below (train, folders, deepspeed,
datasets, launch and metadata, lint) are steps that run in this order on one
`ImportResult`, and `import_config` reads as their list.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from render.errors import FatalError
from render.propose import board, textedit, untrusted
from render.propose.experiment import (
    DATASET_NAME,
    DEEPSPEED_DIR,
    EXPERIMENTS_DIR,
    Workspace,
    dataset_names,
    model_slug,
)
from render.propose.importsrc import Source
from render.propose.rules.names import FOLDER_NAME
from render.propose.rules.secrets import PATTERNS, SECRET_FIELD
from render.propose.rules.train import OWNED
from render.propose.schema import lf_keys
from render.propose.synonyms import SYNONYMS

SCHEMA_LINE = "# yaml-language-server: $schema=../../../schemas/experiment.schema.json\n"
DEEPSPEED_MAX_BYTES = 1024 * 1024
# Keys whose presence means a real DeepSpeed config (not any JSON file that happens to exist).
_DEEPSPEED_KEYS = {"zero_optimization", "train_batch_size", "train_micro_batch_size_per_gpu",
                   "gradient_accumulation_steps", "fp16", "bf16", "optimizer", "scheduler",
                   "zero_allow_untested_optimizer", "gradient_clipping"}
# Environment variables the libraries read instead of a literal argument.
SECRET_ENV = {"swanlab_api_key": "SWANLAB_API_KEY", "hf_hub_token": "HF_TOKEN",
              "hub_token": "HF_TOKEN", "ms_hub_token": "MODELSCOPE_API_TOKEN",
              "om_hub_token": "OPENMIND_HUB_TOKEN"}
_NAME_PART = re.compile(r"[^a-z0-9_.-]+")
# Kept from a Board file even at LLaMA-Factory's default: what a reader looks for first
# (and what plans and the index show).
ALWAYS_WRITTEN = ("stage", "finetuning_type", "learning_rate", "num_train_epochs",
                  "per_device_train_batch_size", "gradient_accumulation_steps", "cutoff_len",
                  "lora_rank", "pref_beta", "template")


@dataclass(frozen=True)
class Decision:
    key: str  # stable id, e.g. "gpu-type", "unknown-key:tensor_model_parallel_size"
    text: str
    option: str = ""  # the import option that settles it
    blocking: bool = False

    def format(self) -> str:
        return f"{self.text} ({self.option})" if self.option else self.text


@dataclass
class Options:
    dataset: str | None = None
    model: str | None = None
    name: str | None = None
    owner: str | None = None
    description: str | None = None
    dataset_info: Path | None = None
    data_uri: str | None = None
    data_revision: str | None = None
    deepspeed: Path | None = None
    gpu_type: str | None = None
    gpus_per_node: int | None = None
    nodes: int | None = None
    drop: tuple[str, ...] = ()
    keep: bool = False


@dataclass
class ImportResult:
    source: Source
    path: str = ""  # the experiment written (repo-relative), "" when none
    lines: list[str] = field(default_factory=list)  # what import did
    decisions: list[Decision] = field(default_factory=list)
    written: list[str] = field(default_factory=list)
    clean: bool = False

    @property
    def blocking(self) -> list[Decision]:
        return [d for d in self.decisions if d.blocking]


class _Writes:
    """Files import changes, so a blocked import leaves nothing behind."""

    def __init__(self) -> None:
        self.done: list[tuple[Path, str | None]] = []  # path, previous text

    def write(self, path: Path, text: str) -> None:
        before = path.read_text(encoding="utf-8") if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.ftops-import")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        self.done.append((path, before))

    def undo(self) -> None:
        for path, before in reversed(self.done):
            if before is None:
                path.unlink(missing_ok=True)
                parent = path.parent
                while parent.name != EXPERIMENTS_DIR and parent.exists() and \
                        not any(parent.iterdir()):
                    parent.rmdir()
                    parent = parent.parent
            else:
                path.write_text(before, encoding="utf-8")


def import_config(ws: Workspace, src: Source, opts: Options) -> ImportResult:
    res = ImportResult(src)
    res.lines.extend(src.notes)
    train = _clean_train(src, opts, res)
    dataset = _dataset_folder(train, opts, res)
    model = _model_folder(train, opts, res)
    if dataset is None or model is None:
        return res
    writes = _Writes()
    try:
        _deepspeed(ws, src, train, opts, res, writes)
        _register(ws, dataset, train, opts, res, writes)
        launch = _launch(ws, src, train, opts, res)
        metadata = _metadata(ws, src, opts, res)
        name = _name(ws, dataset, model, src, opts, res)
        rel = f"{EXPERIMENTS_DIR}/{dataset}/{model}/{name}.yaml"
        path = ws.root / rel
        doc = {"metadata": metadata, "launch": launch, "train": train}
        if src.evaluate:  # what the run evaluated is part of what it ran
            doc["evaluate"] = src.evaluate
        header = SCHEMA_LINE + f"# Imported by `ftops import` from {_one_line(src.label)}\n"
        writes.write(path, header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True,
                                                   default_flow_style=False, width=100))
        res.path = rel
        _lint(ws, rel, res)
        if src.reproduces and res.clean:
            _verify_reproduction(ws, rel, src, res)
    except BaseException:
        writes.undo()
        raise
    if res.blocking and not opts.keep:
        writes.undo()
        res.path = ""
    else:
        res.written = [ws.rel(p) for p, _ in writes.done]
    return res


def _one_line(text: str) -> str:
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text)[:200]


# --------------------------------------------------------------------------- train


def _clean_train(src: Source, opts: Options, res: ImportResult) -> dict[str, Any]:
    known = lf_keys()
    defaults = board.lf_defaults()
    train: dict[str, Any] = {}
    dropped_defaults = []
    for key, value in src.train.items():
        if not isinstance(key, str):
            res.decisions.append(Decision(f"key:{str(key)[:40]}", f"{str(key)[:40]!r} is not "
                                          "an argument name", "", True))
            continue
        if key in OWNED:
            # a Board "Save arguments" file has no output folder: it is not worth a line
            if not (src.kind == "board" and key == "output_dir") and \
                    (value is not None or src.kind != "board-run"):
                res.lines.append(f"dropped {key}: {json.dumps(value, default=str)[:80]} "
                                 f"({OWNED[key]})")
            _remote_hint(key, value, opts, res)
            continue
        if key == "cache_dir" and src.kind in ("board", "board-run"):
            if value:
                res.lines.append(f"dropped cache_dir: {str(value)[:80]} (the Board's "
                                 "download cache on the machine it ran on)")
            continue
        if key in opts.drop:
            res.lines.append(f"dropped {key} (--drop)")
            continue
        if _secret(key, value, res):
            continue
        if src.drop_defaults and key not in ALWAYS_WRITTEN and key in defaults and \
                board.same_arg(key, value, defaults[key]):
            dropped_defaults.append(key)
            continue
        if key not in known:
            syn = SYNONYMS.get(key)
            hint = syn.hint(key) if syn is not None and syn.target in known else \
                _unknown_why(key) or "not an argument of LLaMA-Factory 0.9.5"
            res.decisions.append(Decision(
                f"unknown-key:{key}", f"train.{key}: {hint}", f"--drop {key}", True))
        train[key] = value
    if dropped_defaults:
        res.lines.append(f"left out {len(dropped_defaults)} argument(s) the Board writes at "
                         "LLaMA-Factory's default value: " + ", ".join(dropped_defaults))
    if isinstance(train.get("dataset"), list):
        train["dataset"] = ",".join(str(d).strip() for d in train["dataset"])
    if opts.model:
        if train.get("model_name_or_path") not in (None, opts.model):
            res.lines.append(f"model_name_or_path: {train.get('model_name_or_path')} -> "
                             f"{opts.model} (--model)")
        train["model_name_or_path"] = opts.model
    if "do_train" not in train:
        train["do_train"] = True
        res.lines.append("added do_train: true (an experiment trains)")
    for key in ("ray_num_workers", "ray_init_kwargs"):
        if key in train:
            res.decisions.append(Decision(
                f"ray:{key}", f"train.{key}: ftops runs torchrun, not Ray; the value has no "
                "effect (the GPU count is launch.gpus_per_node)", f"--drop {key}"))
    return train


def _unknown_why(key: str) -> str:
    mcore = ("tensor_model_parallel_size", "pipeline_model_parallel_size",
             "sequence_parallel", "expert_model_parallel_size", "use_distributed_optimizer",
             "recompute_granularity", "moe_", "overlap_", "bias_activation_fusion",
             "apply_rope_fusion")
    if key.startswith(mcore):
        return ("a Megatron-Core argument, read only with USE_MCA=1 and mcore_adapter, "
                "which ftops does not run")
    return ""


def _remote_hint(key: str, value: Any, opts: Options, res: ImportResult) -> None:
    if key == "dataset_dir" and isinstance(value, str) and value.startswith("REMOTE:") \
            and not opts.data_uri:
        repo = value[len("REMOTE:"):].strip()
        if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*", repo):
            opts.data_uri = f"hf://{repo}"
            res.lines.append(f"data source: hf://{repo} (from dataset_dir {value})")


def _secret(key: str, value: Any, res: ImportResult) -> bool:
    """A literal secret: never copied. True when the key was taken out."""
    literal = isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip()
    shaped = [what for what, pattern in PATTERNS
              if pattern.search(json.dumps(value, default=str))]
    named = bool(literal and (SECRET_FIELD.search(key) or key in SECRET_ENV))
    if not named and not shaped:
        return False
    what = shaped[0] if shaped else "a literal secret"
    if not named:  # a token inside an ordinary value (a run name, a path): drop the value
        res.lines.append(f"not copied: {key} held {what}")
        res.decisions.append(Decision(
            f"secret:{key}", f"train.{key} was left out because its value held {what}; write "
            "it again without the secret, and revoke that secret (it was stored in plain "
            "text)", ""))
        return True
    env = SECRET_ENV.get(key, re.sub(r"[^A-Z0-9_]", "_", key.upper()))
    secret = env.lower().replace("_", "-")  # the profile's convention: HF_TOKEN -> hf-token
    res.lines.append(f"not copied: {key} held {what}; launch.env_from_secrets gets "
                     f"{env}: {secret}/value")
    res.decisions.append(Decision(
        f"secret:{key}", f"create the Secret: kubectl create secret generic {secret} "
        f"--from-literal=value=... in the training namespace, and revoke the old value (it "
        "was stored in plain text)"))
    res.source.launch.setdefault("env_from_secrets", {})
    if isinstance(res.source.launch["env_from_secrets"], dict):
        res.source.launch["env_from_secrets"][env] = f"{secret}/value"
    return True


# --------------------------------------------------------------------------- folders


def _dataset_folder(train: dict[str, Any], opts: Options, res: ImportResult) -> str | None:
    names = dataset_names(train.get("dataset"))
    if opts.dataset:
        if not names:
            train["dataset"] = opts.dataset
            names = [opts.dataset]
        elif opts.dataset not in names:
            raise FatalError(f"--dataset {opts.dataset}: the config trains on "
                             f"{', '.join(names)}; the folder must be one of them")
        folder = opts.dataset
    elif not names:
        res.decisions.append(Decision("dataset", "the config names no dataset",
                                      "--dataset NAME", True))
        return None
    else:
        folder = names[0]
        if len(names) > 1:
            res.decisions.append(Decision(
                "dataset-folder", f"folder experiments/{folder}/: the first of "
                f"{', '.join(names)}", "--dataset NAME"))
    if not FOLDER_NAME.match(folder) or len(folder) > 100:
        res.decisions.append(Decision(
            "dataset-name", f"dataset {folder[:60]!r} cannot name a folder (lowercase "
            "letters, digits, '_', '.', '-'): register it under such a name and use that",
            "--dataset NAME", True))
        return None
    return folder


def _model_folder(train: dict[str, Any], opts: Options, res: ImportResult) -> str | None:
    path = train.get("model_name_or_path")
    if not isinstance(path, str) or not path.strip():
        res.decisions.append(Decision("model", "the config names no model_name_or_path",
                                      "--model HUB_ID_OR_PATH", True))
        return None
    slug = model_slug(path)
    if not FOLDER_NAME.match(slug) or len(slug) > 100:
        res.decisions.append(Decision("model-name", f"model {path[:60]!r} gives no usable "
                                      "folder name", "--model HUB_ID_OR_PATH", True))
        return None
    if path.startswith(("/", "./", "../", "~")) or path.count("/") > 1:
        res.decisions.append(Decision(
            "model-path", f"model_name_or_path {path[:80]} looks like a path on the machine "
            "the config came from; the cluster needs a hub id or a path on its storage",
            "--model HUB_ID_OR_PATH"))
    return slug


def _name(ws: Workspace, dataset: str, model: str, src: Source, opts: Options,
          res: ImportResult) -> str:
    raw = opts.name or src.name_hint or "imported"
    base = _NAME_PART.sub("_", raw.lower()).strip("_.-")
    base = re.sub(r"_v[0-9]+$", "", base)[:80].strip("_.-") or "imported"
    if not base[0].isalnum():
        base = "x" + base
    folder = ws.root / EXPERIMENTS_DIR / dataset / model
    taken = sorted(folder.glob(f"{base}_v*.yaml")) if folder.is_dir() else []
    numbers = [int(m.group(1)) for p in taken
               if (m := re.fullmatch(re.escape(base) + r"_v([0-9]+)", p.stem))]
    n = max(numbers, default=0) + 1
    if numbers and not opts.name and not src.reproduces:
        parent = _NAME_PART.sub("_", src.base_dir.name.lower()).strip("_.-") \
            if src.base_dir is not None else ""
        res.decisions.append(Decision(
            "name-taken", f"{base}_v{max(numbers)} already exists in {ws.rel(folder)}/; this "
            f"is written as its next version {base}_v{n} — if it is a different experiment, "
            "give it its own name", f"--name {parent + '_' if parent else ''}{base}"))
    if raw != base and opts.name:
        res.lines.append(f"name {raw[:40]!r} -> {base} (lowercase [a-z0-9_.-])")
    return f"{base}_v{n}"


# --------------------------------------------------------------------------- deepspeed


def _looks_like_deepspeed(data: Any) -> bool:
    return isinstance(data, dict) and bool(_DEEPSPEED_KEYS & set(data))


def _find_deepspeed(value: str, src: Source, opts: Options) -> Path | None:
    if opts.deepspeed is not None:
        return opts.deepspeed
    rel = PurePosixPath(value)
    if rel.is_absolute():
        return Path(value)
    candidates = []
    base = src.base_dir.resolve() if src.base_dir is not None else None
    for _ in range(6):
        if base is None:
            break
        candidates.append(base / value)
        base = base.parent if base.parent != base else None
    candidates.append(Path.cwd() / value)
    return next((c for c in candidates if c.is_file()), None)


def _deepspeed(ws: Workspace, src: Source, train: dict[str, Any], opts: Options,
               res: ImportResult, writes: _Writes) -> None:
    value = train.get("deepspeed")
    if value is None and opts.deepspeed is None:
        return
    config: Any = src.deepspeed_config
    origin = str(value)
    if isinstance(value, dict):
        config, origin = value, "the inline deepspeed mapping"
    elif isinstance(value, str) and value.startswith(f"{EXPERIMENTS_DIR}/{DEEPSPEED_DIR}/") \
            and (ws.root / value).is_file() and config is None and opts.deepspeed is None:
        return  # already one of ours
    if config is None:
        found = _find_deepspeed(str(value), src, opts) if isinstance(value, str) or \
            opts.deepspeed else None
        if found is None:
            res.decisions.append(Decision(
                "deepspeed", f"deepspeed: {str(value)[:80]} not found next to the source",
                "--deepspeed PATH_TO_JSON", True))
            return
        if found.suffix != ".json":
            raise FatalError(f"{found}: a DeepSpeed config is a .json file")
        config = untrusted.load_json(found, "a DeepSpeed config", DEEPSPEED_MAX_BYTES)
        origin = str(found)
    if not _looks_like_deepspeed(config):
        raise FatalError(f"{origin}: not a DeepSpeed config (none of "
                         f"{', '.join(sorted(_DEEPSPEED_KEYS)[:4])}, ...)")
    folder = ws.root / EXPERIMENTS_DIR / DEEPSPEED_DIR
    for existing in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            if json.loads(existing.read_text(encoding="utf-8")) == config:
                train["deepspeed"] = ws.rel(existing)
                res.lines.append(f"deepspeed: {origin} -> {ws.rel(existing)} (same content)")
                return
        except (OSError, ValueError):
            continue
    stem = Path(str(value)).stem if isinstance(value, str) else "ds_config"
    stem = _NAME_PART.sub("_", stem.lower()).strip("_.-")[:60] or "ds_config"
    target, n = folder / f"{stem}.json", 2
    while target.exists():
        target, n = folder / f"{stem}_{n}.json", n + 1
    writes.write(target, json.dumps(config, indent=2) + "\n")
    train["deepspeed"] = ws.rel(target)
    res.lines.append(f"deepspeed: {origin} -> {ws.rel(target)} (added)")


# --------------------------------------------------------------------------- datasets


def _load_dataset_info(path: Path) -> dict[str, Any]:
    data = untrusted.load_json(path, "a dataset_info.json", 8 * 1024 * 1024)
    if not isinstance(data, dict):
        raise FatalError(f"{path}: a dataset_info.json maps dataset names to entries")
    return data


def _entry_problem(name: str, entry: Any) -> str:
    if not isinstance(entry, dict):
        return "its entry is not a mapping"
    file_name = entry.get("file_name")
    if file_name is not None:
        parts = PurePosixPath(str(file_name)).parts
        if not isinstance(file_name, str) or str(file_name).startswith(("/", "~")) \
                or ".." in parts:
            return "its file_name leaves the data folder"
    return ""


def _register(ws: Workspace, folder: str, train: dict[str, Any], opts: Options,
              res: ImportResult, writes: _Writes) -> None:
    from render.propose.yamlsource import YamlError, parse

    names = dataset_names(train.get("dataset"))
    path = ws.root / EXPERIMENTS_DIR / folder / DATASET_NAME
    text = path.read_text(encoding="utf-8") if path.is_file() else None
    registered: dict[str, Any] = {}
    doc = None
    if text is not None:
        try:
            doc = parse(text, ws.rel(path))
        except YamlError:
            res.decisions.append(Decision("dataset-yaml", f"{ws.rel(path)} does not parse; "
                                          "fix it first (ftops lint shows where)", "", True))
            return
        info = doc.data.get("dataset_info") if isinstance(doc.data, dict) else None
        registered = info if isinstance(info, dict) else {}
    missing = [n for n in names if n not in registered]
    if not missing:
        return
    if opts.dataset_info is None:
        res.decisions.append(Decision(
            "dataset-info", f"{', '.join(missing)} not registered in {ws.rel(path)}: name the "
            "dataset_info.json that describes them (LLaMA-Factory's own demo data: "
            "data/dataset_info.json in its repository)", "--dataset-info PATH", True))
        return
    info = _load_dataset_info(opts.dataset_info)
    entries: dict[str, Any] = {}
    for name in missing:
        if name not in info:
            res.decisions.append(Decision(
                f"dataset-entry:{name}", f"dataset {name!r} is in neither {ws.rel(path)} nor "
                f"{opts.dataset_info}: add its entry to one of them", "--dataset-info PATH",
                True))
            continue
        problem = _entry_problem(name, info[name])
        if problem:
            res.decisions.append(Decision(f"dataset-entry:{name}", f"dataset {name!r} in "
                                          f"{opts.dataset_info}: {problem}", "", True))
            continue
        entries[name] = info[name]
    if not entries:
        return
    if text is None:
        source = _data_source(entries, opts, res)
        if source is None:
            return
        data = {"description": f"Registered by ftops import from {opts.dataset_info.name}: "
                               + ", ".join(entries)[:200],
                "source": source, "dataset_info": entries}
        header = "# yaml-language-server: $schema=../../schemas/dataset.schema.json\n"
        writes.write(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True,
                                                   width=100))
        res.lines.append(f"{ws.rel(path)}: created with {', '.join(entries)} from "
                         f"{opts.dataset_info}")
        return
    assert doc is not None
    node = textedit.find(doc.node, "dataset_info")
    edit = textedit.append_to_mapping(text, node[1], entries) \
        if node is not None and isinstance(node[1], yaml.MappingNode) else None
    if edit is None:
        res.decisions.append(Decision(
            "dataset-yaml", f"add {', '.join(entries)} under dataset_info: in "
            f"{ws.rel(path)} by hand (its dataset_info is not a block mapping)", "", True))
        return
    writes.write(path, textedit.apply(text, [edit]))
    res.lines.append(f"{ws.rel(path)}: added {', '.join(entries)} from {opts.dataset_info}")


def _data_source(entries: dict[str, Any], opts: Options, res: ImportResult
                 ) -> dict[str, str] | None:
    uri, revision = opts.data_uri, opts.data_revision
    hubs = {str(e.get("hf_hub_url")) for e in entries.values() if e.get("hf_hub_url")}
    if uri is None and len(hubs) == 1 and all(e.get("hf_hub_url") for e in entries.values()):
        uri = f"hf://{next(iter(hubs))}"
        res.lines.append(f"data source: {uri} (the entries' hf_hub_url)")
    if uri is None or revision is None:
        res.decisions.append(Decision(
            "data-source", "where the data files live and which version: a new dataset.yaml "
            "needs source.uri (gs://bucket/path/, hf://owner/name) and source.revision",
            "--data-uri URI --data-revision REV", True))
        return None
    return {"uri": uri, "revision": revision}


# --------------------------------------------------------------------------- launch, metadata


def _launch(ws: Workspace, src: Source, train: dict[str, Any], opts: Options,
            res: ImportResult) -> dict[str, Any]:
    profile = ws.profile
    launch = dict(src.launch)
    if opts.gpu_type is not None:
        if opts.gpu_type not in profile.gpu_types:
            raise FatalError(f"--gpu-type {opts.gpu_type}: the cluster profile offers "
                             + ", ".join(profile.gpu_types))
        launch["gpu_type"] = opts.gpu_type
        launch["gpus_per_node"] = profile.gpu_types[opts.gpu_type].gpus_per_node
    if "gpu_type" not in launch:
        gpu = [g for g in profile.gpu_types.values() if g.gpus_per_node > 0]
        cpu = [g for g in profile.gpu_types.values() if g.gpus_per_node == 0]
        # fine-tuning a language model wants GPUs; CPU only where the profile has no GPU
        chosen = (gpu or cpu)[0]
        launch["gpu_type"] = chosen.name
        launch["gpus_per_node"] = chosen.gpus_per_node
        why = ""
        if chosen.gpus_per_node > 1 and _one_process(train):
            # LLaMA-Factory refuses these distributed (rules/train.py); its own examples
            # of them run on one GPU
            launch["gpus_per_node"] = 1
            why = " (one GPU: layer-wise GaLore/APOLLO and BAdam without DeepSpeed train " \
                "in a single process)"
        res.decisions.append(Decision(
            "gpu-type", f"launch: {launch['gpus_per_node']} x {chosen.name} per node, the "
            "cluster profile's first " + ("GPU type" if chosen.gpus_per_node else "CPU type")
            + why, "--gpu-type TYPE, --gpus-per-node N, --nodes N"))
    if opts.gpus_per_node is not None:
        launch["gpus_per_node"] = opts.gpus_per_node
    if opts.nodes is not None:
        launch["nodes"] = opts.nodes
    launch.setdefault("nodes", 1)
    ordered: dict[str, Any] = {k: launch[k] for k in ("nodes", "gpus_per_node", "gpu_type")
                               if k in launch}
    ordered.update({k: v for k, v in launch.items() if k not in ordered})
    return ordered


def _one_process(train: dict[str, Any]) -> bool:
    """A config LLaMA-Factory trains only in one process when no DeepSpeed is given."""
    if train.get("deepspeed") is not None:
        return False
    return bool(train.get("use_badam")) or any(
        train.get(f"use_{m}") and train.get(f"{m}_layerwise") for m in ("galore", "apollo"))


def _git_user(root: Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(root), "config", "user.name"],
                             capture_output=True, text=True, check=False, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.stdout.strip()


def _metadata(ws: Workspace, src: Source, opts: Options, res: ImportResult) -> dict[str, Any]:
    meta = dict(src.metadata)
    if opts.owner:
        meta["owner"] = opts.owner
    if not meta.get("owner"):
        who = re.sub(r"[^A-Za-z0-9._-]+", "-", _git_user(ws.root) or os.environ.get("USER", ""))
        who = who.strip("-._")[:63]
        if who:
            meta["owner"] = who
            res.decisions.append(Decision("owner", f"owner: {who} (git config user.name or "
                                          "$USER)", "--owner HANDLE"))
        else:
            res.decisions.append(Decision("owner", "who owns this experiment", "--owner HANDLE",
                                          True))
    if opts.description:
        meta["description"] = opts.description
    elif src.reproduces:
        meta["description"] = (f"Reproduces run {src.reproduces} of "
                               f"{_one_line(src.label.split(' of ', 1)[-1])}.")
    elif not meta.get("description"):
        kind = {"cli": "LLaMA-Factory config", "board": "LLaMA Board config",
                "board-run": "LLaMA Board run", "experiment": "experiment"}.get(src.kind, "")
        meta["description"] = f"Imported {kind} {_one_line(Path(src.label).name)[:100]}."
    if src.reproduces:
        meta["reproduces"] = src.reproduces
    tags: list[Any] = meta["tags"] if isinstance(meta.get("tags"), list) else []
    if "imported" not in tags and not src.reproduces:
        tags = [*tags, "imported"]
    if tags:
        meta["tags"] = tags
    order = ("owner", "description", "tags", "reproduces")
    return {k: meta[k] for k in order if k in meta} | {k: v for k, v in meta.items()
                                                        if k not in order}


# --------------------------------------------------------------------------- lint


def _lint(ws: Workspace, rel: str, res: ImportResult) -> None:
    from render.propose.lint import lint

    result = lint(Workspace(ws.root, ws.profile), [ws.root / rel])
    seen = {d.key for d in res.decisions if d.blocking}
    data_decided = any(k.startswith(("dataset-info", "dataset-entry", "data-source",
                                     "dataset-yaml")) for k in seen)
    for finding in result.findings:
        key = f"lint:{finding.rule}:{finding.path}"
        if finding.rule == "schema" and finding.path.startswith("$.train.") and \
                f"unknown-key:{finding.path[len('$.train.'):]}" in seen:
            continue
        if finding.rule == "deepspeed" and "deepspeed" in seen:
            continue
        if finding.rule == "consistency" and data_decided and (
                DATASET_NAME in finding.message or "is not registered" in finding.message):
            continue
        res.decisions.append(Decision(key, finding.format(), "", True))
    res.clean = result.ok


def _verify_reproduction(ws: Workspace, rel: str, src: Source, res: ImportResult) -> None:
    exp, _ = Workspace(ws.root, ws.profile).load(ws.root / rel)
    if exp is None:
        return
    if exp.config_hash == src.config_hash:
        res.lines.append(f"reproduces run {src.reproduces} exactly (config hash "
                         f"{exp.config_hash[:12]})")
    else:
        res.decisions.append(Decision(
            "reproduction", f"the config hash is {exp.config_hash[:12]}, the run's was "
            f"{src.config_hash[:12]}: the defaults, dataset registration or DeepSpeed config "
            "changed since; compare with `ftops lint --show`", ""))
