"""`ftops changes`: which experiments a push or a pull request adds or changes.

The selection is what CI lints, renders and plans on a PR and what the launch workflow
applies on merge:

* an added, modified, renamed-to or copied experiment file selects itself;
* a changed `_defaults.yaml` (dataset or model level) or `dataset.yaml` selects every
  experiment under its folder, as of `head`;
* a changed DeepSpeed config `experiments/_deepspeed/*.json` selects the experiments
  (as of `head`) whose resolved `train.deepspeed` names it;
* a deleted experiment selects nothing; a deleted `_defaults.yaml`, `dataset.yaml` or
  DeepSpeed config selects what is left that it affected (their resolution changed);
* a `base` of all zeros (GitHub's "before" of a new branch) selects nothing;
* a changed file under experiments/ whose name holds a newline or another control
  character is refused (FatalError): such a name could become two arguments, or a
  flag, wherever a list of paths is passed on.

The diff is taken from the merge base of `base` and `head` to `head` (GitHub's "files
changed"): for a fast-forward push that is exactly `base..head`; for a pull request it
leaves out what the base branch gained since the branch point.

Git runs with list argv (never a shell); paths come from `-z` output, and
`ftops changes --null` hands them on NUL-delimited (the workflows read them with
`xargs --null`).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from render.errors import FatalError
from render.propose.experiment import DEFAULTS_NAME, EXPERIMENTS_DIR
from render.propose.layout import classify
from render.record.gitcmd import batch_objects

ZERO_SHA = re.compile(r"^0+$")
_REV = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._/^~@{}-]*$")


def _git(repo: Path, *args: str, input_bytes: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], input=input_bytes, capture_output=True,
            check=False)
    except FileNotFoundError as exc:
        raise FatalError("git is not installed or not on PATH") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise FatalError(f"git {args[0]} failed in {repo}: {err or f'exit {proc.returncode}'}")
    return proc.stdout


def _commit(repo: Path, rev: str, what: str) -> str:
    """The full SHA of `rev`, or a FatalError that says which argument is wrong."""
    if not _REV.match(rev):
        raise FatalError(f"{what} {rev!r} is not a commit name")
    proc = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        capture_output=True, check=False)
    if proc.returncode != 0:
        raise FatalError(f"{what} commit {rev!r} is not in the repository at {repo} "
                         "(unknown commit, or a shallow clone: check out with fetch-depth: 0)")
    return proc.stdout.decode().strip()


def _merge_base(repo: Path, base: str, head: str) -> str:
    proc = subprocess.run(["git", "-C", str(repo), "merge-base", base, head],
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise FatalError(f"{base[:12]} and {head[:12]} share no history (no merge base); "
                         "is the clone shallow? check out with fetch-depth: 0")
    return proc.stdout.decode().strip()


def diff_entries(repo: Path, base: str, head: str) -> list[tuple[str, str]]:
    """(status letter, path) of each change under experiments/; a rename or copy gives
    ('D', old) for a rename's source and (status, new) for its target."""
    out = _git(repo, "diff", "--name-status", "-z", "-M", "--no-ext-diff", "--no-textconv",
               base, head, "--", f"{EXPERIMENTS_DIR}/")
    fields = out.decode("utf-8", "surrogateescape").split("\0")
    if fields and fields[-1] == "":
        fields.pop()
    entries: list[tuple[str, str]] = []
    i = 0
    while i < len(fields):
        status = fields[i]
        letter = status[:1]
        if letter in ("R", "C"):
            old, new = fields[i + 1], fields[i + 2]
            if letter == "R":
                entries.append(("D", old))
            entries.append((letter, new))
            i += 3
        else:
            entries.append((letter, fields[i + 1]))
            i += 2
    return entries


def _ls_tree(repo: Path, rev: str, folder: str) -> list[str]:
    out = _git(repo, "ls-tree", "-r", "-z", "--name-only", "--full-tree", rev, "--",
               folder.rstrip("/") + "/")
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def _read_blobs(repo: Path, rev: str, paths: list[str]) -> dict[str, str | None]:
    """Text of each path at `rev` (None where absent), with one `git cat-file --batch`."""
    if not paths:
        return {}
    request = "".join(f"{rev}:{p}\n" for p in paths).encode("utf-8", "surrogateescape")
    out = _git(repo, "cat-file", "--batch", input_bytes=request)
    return {p: obj[1].decode("utf-8", "replace") if obj and obj[0] == b"blob" else None
            for p, obj in zip(paths, batch_objects(out, len(paths)), strict=True)}


def _layers(exp: str) -> list[str]:
    """The files an experiment resolves from, lowest first (see Workspace._load)."""
    parts = PurePosixPath(exp).parts
    dataset_dir = "/".join(parts[:2])
    model_dir = "/".join(parts[:3])
    return [f"{dataset_dir}/{DEFAULTS_NAME}", f"{model_dir}/{DEFAULTS_NAME}", exp]


def _deepspeed_of(texts: list[str | None], target: str) -> bool:
    """Whether the resolved train.deepspeed of these layers names `target`. A layer that
    does not parse is matched by its text, so a broken file is selected (and linted)."""
    resolved: Any = None
    for text in texts:
        if text is None:
            continue
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            if target in text:
                return True
            continue
        if not isinstance(data, dict) or "train" not in data:
            continue
        train = data["train"]
        if isinstance(train, dict):
            if "deepspeed" in train:
                resolved = train["deepspeed"]
        else:
            resolved = None  # a non-mapping train replaces the inherited one
    if not isinstance(resolved, str):
        return False
    return str(PurePosixPath(resolved.removeprefix("./"))) == target


def _experiments_under(repo: Path, rev: str, folder: str) -> list[str]:
    found = [p for p in _ls_tree(repo, rev, folder) if classify(p) == "experiment"]
    for path in found:  # they are selected, or read with `git cat-file --batch`
        _refuse_control_characters(path)
    return found


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _refuse_control_characters(path: str) -> None:
    if _CONTROL.search(path):
        shown = path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        shown = shown.encode("unicode_escape").decode("ascii")
        raise FatalError(f"{shown!r}: a file name with a control character (a newline, a "
                         "tab, ...) cannot be passed on safely as a path; rename it "
                         "(git mv) to letters, digits and . _ -")


def changed_experiments(repo: Path, before: str, after: str) -> list[str]:
    """Repo-relative experiment paths (sorted) that going from `before` to `after` adds
    or changes; see the module docstring for the rules."""
    repo = Path(repo)
    if ZERO_SHA.match(before):
        print("ftops changes: the base commit is all zeros (a new branch): nothing to "
              "compare against, so no experiment is selected", file=sys.stderr)
        return []
    base = _commit(repo, before, "base")
    head = _commit(repo, after, "head")
    base = _merge_base(repo, base, head)

    selected: set[str] = set()
    folders: set[str] = set()
    deepspeed: set[str] = set()
    entries = diff_entries(repo, base, head)
    for _, path in entries:
        _refuse_control_characters(path)
    for status, path in entries:
        kind = classify(path)
        deleted = status == "D"
        if kind == "experiment":
            if not deleted:
                selected.add(path)
        elif kind in ("defaults", "dataset"):
            folders.add(str(PurePosixPath(path).parent))
        elif kind == "deepspeed":
            deepspeed.add(path)
        # 'doc', 'other' and 'invalid' select nothing ('invalid' is lint's to report)

    for folder in sorted(folders):
        selected.update(_experiments_under(repo, head, folder))

    if deepspeed:
        experiments = _experiments_under(repo, head, EXPERIMENTS_DIR)
        layer_paths = sorted({layer for exp in experiments for layer in _layers(exp)})
        texts = _read_blobs(repo, head, layer_paths)
        for exp in experiments:
            layers = [texts.get(layer) for layer in _layers(exp)]
            if any(_deepspeed_of(layers, target) for target in deepspeed):
                selected.add(exp)
    return sorted(selected)
