"""Load and resolve experiments: the one place that reads experiment YAML.

An experiment is `experiments/<dataset>/<model>/<name>.yaml`. Under it are deep-merged
`experiments/<dataset>/_defaults.yaml` and `experiments/<dataset>/<model>/_defaults.yaml`
(the experiment file wins; mappings merge, lists and scalars replace), and
`experiments/<dataset>/dataset.yaml` registers the dataset. Every merged value keeps
the file it came from, so a problem is reported where a person has to fix it.
Everything downstream (lint rules, render, plan, local launch) takes an `Experiment`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from render.errors import Finding
from render.fsutil import symlink_under
from render.propose.profile import DURATION, Profile, duration_seconds, load_profile
from render.propose.yamlsource import (
    INT_MAX,
    INT_MIN,
    MAX_DEPTH,
    MAX_FILE_BYTES,
    PathPart,
    YamlDoc,
    YamlError,
    json_path,
    load,
)

EXPERIMENTS_DIR = "experiments"
DEFAULTS_NAME = "_defaults.yaml"
DATASET_NAME = "dataset.yaml"
DEEPSPEED_DIR = "_deepspeed"

if TYPE_CHECKING:
    from render.propose.needs import Input
    from render.propose.sweep import SweepPoint

Origins = dict[tuple[PathPart, ...], YamlDoc]


def model_slug(model_name_or_path: str) -> str:
    """Folder name for a model: the last path component, lowercased.

    meta-llama/Llama-3.1-8B -> llama-3.1-8b; .demo/tiny-llama -> tiny-llama
    """
    last = PurePosixPath(str(model_name_or_path).rstrip("/")).name
    return re.sub(r"[^a-z0-9._-]+", "-", last.lower()).strip("-")


def dataset_names(value: Any) -> list[str]:
    """train.dataset may be a comma-separated string or a list."""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return []


def symlink_finding(rel: str) -> Finding:
    """A symlink under experiments/ (or an input reached through one): never followed."""
    return Finding(rel, 1, 1, "$", "is a symbolic link; experiments/ holds only regular files "
                   "and folders", "replace the link with the file or folder itself (ftops "
                   "never follows links out of the checkout)", "layout")


def deepspeed_path_problem(ds: object) -> str | None:
    """Why `train.deepspeed` cannot name a shipped config, or None."""
    prefix = f"{EXPERIMENTS_DIR}/{DEEPSPEED_DIR}/"
    if (not isinstance(ds, str) or not ds.startswith(prefix) or "/" in ds[len(prefix):]
            or ds.endswith("/") or ".." in ds or "\\" in ds):
        return f"deepspeed must name a file in {prefix}"
    return None


def read_deepspeed(root: Path, ds: str) -> dict[str, Any]:
    """The DeepSpeed config `ds` (repository-relative), within the bounds every input has:
    a regular file (no symlink), at most MAX_FILE_BYTES, JSON nested at most MAX_DEPTH
    levels, finite numbers; ValueError saying what is wrong otherwise."""
    path = root / ds
    if symlink_under(root, path) is not None:
        raise ValueError("is a symbolic link; use the file itself")
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ValueError(f"is larger than {MAX_FILE_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8 text") from None

    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a finite number")

    try:
        data = json.loads(text, parse_constant=refuse_constant)
    except RecursionError:
        raise ValueError(f"nests deeper than {MAX_DEPTH} levels") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("must hold a JSON object")
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"nests deeper than {MAX_DEPTH} levels")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((v, depth + 1) for v in items)
        elif isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
            raise ValueError("holds an integer that does not fit in 64 bits")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError("holds a number too large for a float")
    return data


def used_datasets(train: dict[str, Any]) -> list[str]:
    """Every dataset a run reads: train.dataset, then train.eval_dataset (each once); all
    must be registered, and all are shipped in the run's dataset_info.json."""
    names = dataset_names(train.get("dataset")) + dataset_names(train.get("eval_dataset"))
    return list(dict.fromkeys(names))


def image_identity(image: str) -> str:
    """An image as a run's identity sees it: the digest when one is pinned (the same
    bytes under another tag or registry path are the same image), else the reference."""
    _, sep, digest = image.partition("@")
    return digest if sep and digest.startswith("sha256:") else image


def canonical_hash(data: Any) -> str:
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Launch:
    nodes: int
    gpus_per_node: int
    gpu_type: str
    queue: str
    priority: str
    max_restarts: int
    time_limit: str
    image: str
    storage: str
    env_from_secrets: dict[str, str] = field(default_factory=dict)
    rerun: int = 0  # a deliberate re-run of the same config: part of the run's identity

    @property
    def total_gpus(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def processes(self) -> int:
        """Training processes: one per GPU, one per node on CPU."""
        return self.nodes * max(self.gpus_per_node, 1)

    @property
    def time_limit_seconds(self) -> int:
        return duration_seconds(self.time_limit) or 86400


def uses_torchrun(processes: int, deepspeed: bool) -> bool:
    """Whether a run starts under torchrun (FORCE_TORCHRUN=1): with more than one process,
    or for DeepSpeed (which needs a process group even for one). One process alone is
    not distributed: LLaMA-Factory refuses layer-wise GaLore, layer-wise APOLLO and
    BAdam in a distributed run, even of world size 1. The JobSet and `launch --local`
    both decide with this."""
    return processes > 1 or deepspeed


@dataclass
class Experiment:
    """The resolved, immutable view of one experiment file."""

    path: str  # repo-relative, posix: experiments/<dataset>/<model>/<name>.yaml
    dataset: str
    model: str
    name: str
    merged: dict[str, Any]  # the merged document (defaults + file)
    origins: Origins
    doc: YamlDoc  # the experiment file itself
    dataset_doc: YamlDoc | None
    profile: Profile
    deepspeed_config: dict[str, Any] | None = None
    # the sweep point this is (`render.propose.sweep.expand`), None for a plain experiment
    point: SweepPoint | None = None
    # its `needs:` resolved against the index (`render.propose.needs.resolve`)
    inputs: tuple[Input, ...] = ()

    @property
    def waiting(self) -> str | None:
        """Why this pipeline stage cannot launch yet (its first unresolved need)."""
        return next((i.waiting for i in self.inputs if i.waiting), None)

    # -- views -------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        value = self.merged.get("metadata")
        return value if isinstance(value, dict) else {}

    @property
    def train(self) -> dict[str, Any]:
        value = self.merged.get("train")
        return value if isinstance(value, dict) else {}

    @property
    def evaluate(self) -> dict[str, dict[str, Any]]:
        """The `evaluate:` entries (name -> LLaMA-Factory predict arguments); entries
        that are not mappings are left out (the schema reports them)."""
        value = self.merged.get("evaluate")
        if not isinstance(value, dict):
            return {}
        return {str(k): v for k, v in value.items() if isinstance(v, dict)}

    @property
    def eval_datasets(self) -> list[str]:
        """Dataset names the run evaluates on: train.eval_dataset (during training) and
        every `evaluate:` entry's eval_dataset, in that order, each once."""
        names = dataset_names(self.train.get("eval_dataset"))
        for entry in self.evaluate.values():
            names += dataset_names(entry.get("eval_dataset"))
        return list(dict.fromkeys(names))

    @property
    def registration(self) -> dict[str, Any]:
        data = self.dataset_doc.data if self.dataset_doc else None
        return data if isinstance(data, dict) else {}

    @property
    def launch(self) -> Launch:
        raw = self.merged.get("launch")
        raw = raw if isinstance(raw, dict) else {}
        p = self.profile

        # Values of the wrong type fall back to defaults here: the schema reports them,
        # and the rules that read launch settings must not crash meanwhile.
        def num(key: str, default: int) -> int:
            value = raw.get(key, default)
            return value if isinstance(value, int) and not isinstance(value, bool) else default

        def text(key: str, default: str, pattern: re.Pattern[str] | None = None) -> str:
            value = raw.get(key, default)
            if not isinstance(value, str) or (pattern and not pattern.fullmatch(value)):
                return default
            return value

        secrets = raw.get("env_from_secrets")
        return Launch(
            nodes=num("nodes", 1),
            gpus_per_node=num("gpus_per_node", 0),
            gpu_type=text("gpu_type", "cpu"),
            queue=text("queue", p.default_queue),
            priority=text("priority", p.default_priority),
            max_restarts=num("max_restarts", 2),
            time_limit=text("time_limit", "24h", DURATION),
            image=text("image", p.default_image),
            storage=text("storage", p.default_storage),
            env_from_secrets={str(k): str(v) for k, v in secrets.items()}
            if isinstance(secrets, dict) else {},
            rerun=num("rerun", 0),
        )

    @property
    def key(self) -> str:
        """dataset/model/name: unique within the repository."""
        return f"{self.dataset}/{self.model}/{self.name}"

    def launch_identity(self) -> dict[str, Any]:
        """What decides what a run computes and where: the run is this experiment path
        plus this value (and `launch.rerun`, kept apart so that the immutability and
        duplicate rules can ignore it).

        The train arguments as LLaMA-Factory reads them (`render.propose.normalize`,
        with the tracker default the render fills in), the DeepSpeed config's content,
        the `dataset_info` entries of the train and eval datasets and the data source
        (URI and revision), the image (its digest when pinned), the process layout, the
        storage profile and the secrets it reads (by name). Not metadata (owner,
        description, tags), queue, priority, time limit or restarts: changing those is
        not a new run.
        """
        from render.propose.normalize import normalize_train

        launch = self.launch
        train = dict(self.train)
        train.setdefault("report_to", self.profile.report_to)  # as the render fills it
        if self.deepspeed_config is not None:
            train.pop("deepspeed", None)  # the content below, wherever the file lives
        train = normalize_train(train)
        names = list(dict.fromkeys(used_datasets(self.train) + self.eval_datasets))
        info = self.registration.get("dataset_info") or {}
        identity = {
            "train": train,
            "datasets": {n: info.get(n) for n in names} if isinstance(info, dict) else {},
            "source": self.registration.get("source"),
            "deepspeed": self.deepspeed_config,
            "image": image_identity(launch.image),
            "layout": [launch.nodes, launch.gpus_per_node, launch.gpu_type],
            "storage": launch.storage,
            "secrets": dict(sorted(launch.env_from_secrets.items())),
        }
        # what is evaluated after training (only when there is any: earlier identities
        # stay as they were)
        if "evaluate" in self.merged:
            identity["evaluate"] = self.merged["evaluate"]
        # the earlier runs a pipeline stage starts from: a new input is a new run
        if self.inputs:
            identity["needs"] = [i.identity() for i in self.inputs]
        return identity

    @cached_property
    def config_hash(self) -> str:
        """Hash of the launch identity (`launch_identity`): equal for configs that
        LLaMA-Factory reads the same, whatever metadata or scheduling changed."""
        return canonical_hash(self.launch_identity())

    # -- locations -----------------------------------------------------------------
    def finding(
        self, parts: tuple[PathPart, ...] | list[PathPart], message: str, hint: str = "",
        rule: str = "",
    ) -> Finding:
        """A finding at a merged path, located in the file that set the value."""
        parts = tuple(parts)
        if not parts:
            return Finding(self.doc.file, 1, 1, "$", message, hint, rule)
        for cut in range(len(parts), 0, -1):
            doc = self.origins.get(parts[:cut])
            if doc is not None:
                line, col = doc.locate(parts)
                return Finding(doc.file, line, col, json_path(parts), message, hint, rule)
        line, col = self.doc.locate(parts)
        return Finding(self.doc.file, line, col, json_path(parts), message, hint, rule)

    def resolved(self) -> dict[str, Any]:
        """The merged document with launch defaults filled in (for `lint --show`)."""
        launch = self.launch
        return {
            "metadata": self.metadata,
            "launch": {
                "nodes": launch.nodes,
                "gpus_per_node": launch.gpus_per_node,
                "gpu_type": launch.gpu_type,
                "queue": launch.queue,
                "priority": launch.priority,
                "max_restarts": launch.max_restarts,
                "time_limit": launch.time_limit,
                "image": launch.image,
                "storage": launch.storage,
                "env_from_secrets": launch.env_from_secrets,
                "rerun": launch.rerun,
            },
            "train": self.train,
            **({"evaluate": self.merged["evaluate"]} if "evaluate" in self.merged else {}),
            "config_hash": self.config_hash,
        }


def deep_merge(
    base: dict[str, Any], over: dict[str, Any], origins: Origins, doc: YamlDoc,
    prefix: tuple[PathPart, ...] = (),
) -> dict[str, Any]:
    """Merge `over` into a copy of `base`, recording which doc set each path."""
    out = dict(base)
    for key, value in over.items():
        path = (*prefix, key)
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value, origins, doc, path)
        else:
            out[key] = value
            _drop_origins_under(origins, path)
            _record(origins, value, path, doc)
        origins[path] = doc
    return out


def _record(origins: Origins, value: Any, path: tuple[PathPart, ...], doc: YamlDoc) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            origins[(*path, key)] = doc
            _record(origins, sub, (*path, key), doc)


def _drop_origins_under(origins: Origins, path: tuple[PathPart, ...]) -> None:
    n = len(path)
    for key in [k for k in origins if len(k) > n and k[:n] == path]:
        del origins[key]


class Workspace:
    """The repository being checked: its root, profile, and a cache of parsed files."""

    def __init__(self, root: Path, profile: Profile | None = None) -> None:
        self.root = root.resolve()
        self.profile = profile or load_profile(self.root)
        self._docs: dict[Path, YamlDoc | YamlError | None] = {}
        self._loaded: dict[Path, tuple[Experiment | None, list[Finding]]] = {}
        self._siblings: dict[tuple[str, str], list[Path]] = {}

    def rel(self, path: Path) -> str:
        if not path.is_absolute():
            path = self.root / path
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            pass
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def doc(self, path: Path) -> YamlDoc | None:
        """Parsed file, cached; None when absent; raises YamlError when invalid or reached
        through a symlink (never followed: it could point outside the checkout)."""
        if path not in self._docs:
            link = symlink_under(self.root, path)
            if link is not None:
                self._docs[path] = YamlError(symlink_finding(self.rel(link)))
            elif not path.is_file():
                self._docs[path] = None
            else:
                try:
                    self._docs[path] = load(path, self.rel(path))
                except YamlError as exc:
                    self._docs[path] = exc
        cached = self._docs[path]
        if isinstance(cached, YamlError):
            raise cached
        return cached

    def experiment_files(self) -> Iterator[Path]:
        base = self.root / EXPERIMENTS_DIR
        for path in sorted(base.rglob("*.yaml")):
            parts = path.relative_to(base).parts
            if len(parts) == 3 and parts[2] != DEFAULTS_NAME and not parts[0].startswith("_"):
                yield path

    def siblings(self, dataset: str, model: str) -> list[Path]:
        """Experiment files in one <dataset>/<model> folder (listed once)."""
        key = (dataset, model)
        if key not in self._siblings:
            folder = self.root / EXPERIMENTS_DIR / dataset / model
            self._siblings[key] = sorted(
                p for p in folder.glob("*.yaml") if p.name != DEFAULTS_NAME)
        return self._siblings[key]

    def load(self, path: Path) -> tuple[Experiment | None, list[Finding]]:
        """Load one experiment file with its defaults (cached per path)."""
        path = path if path.is_absolute() else self.root / path
        if path not in self._loaded:
            self._loaded[path] = self._load(path)
        return self._loaded[path]

    def _load(self, path: Path) -> tuple[Experiment | None, list[Finding]]:
        findings: list[Finding] = []
        rel = PurePosixPath(self.rel(path))
        parts = rel.parts
        if len(parts) != 4 or parts[0] != EXPERIMENTS_DIR:
            return None, [Finding(str(rel), 1, 1, "$", "not an experiment path",
                                  f"experiments live at {EXPERIMENTS_DIR}/<dataset>/<model>/"
                                  "<name>_v<N>.yaml", "layout")]
        _, dataset, model, filename = parts
        folder = path.parent
        layers: list[YamlDoc] = []
        for layer in (folder.parent / DEFAULTS_NAME, folder / DEFAULTS_NAME, path):
            try:
                doc = self.doc(layer)
            except YamlError as exc:
                findings.append(exc.finding)
                continue
            if doc is None:
                continue
            if doc.data is None and layer != path:
                continue
            if not isinstance(doc.data, dict):
                findings.append(doc.finding((), "the file must hold a mapping (key: value)",
                                            "see schemas/experiment.schema.json", "schema"))
                continue
            layers.append(doc)
        if findings or not layers or layers[-1].file != str(rel):
            return None, findings
        origins: Origins = {}
        merged: dict[str, Any] = {}
        for doc in layers:
            merged = deep_merge(merged, doc.data, origins, doc)
        dataset_doc: YamlDoc | None = None
        try:
            dataset_doc = self.doc(folder.parent / DATASET_NAME)
        except YamlError as exc:
            findings.append(exc.finding)
        exp = Experiment(
            path=str(rel), dataset=dataset, model=model, name=filename[: -len(".yaml")],
            merged=merged, origins=origins, doc=layers[-1], dataset_doc=dataset_doc,
            profile=self.profile,
        )
        ds = exp.train.get("deepspeed")
        if isinstance(ds, str) and deepspeed_path_problem(ds) is None:
            try:
                exp.deepspeed_config = read_deepspeed(self.root, ds)
            except ValueError:
                exp.deepspeed_config = None  # the deepspeed rule reports it
        return exp, findings
