"""outputs-index/ as of a commit, read through git: what has run, judged against the base
branch rather than the pull request.

A pull request can delete an index entry, rewrite its `config_hash`, or replace
`outputs-index/<dataset>` with a symlink; lint and plan in CI therefore read the runs
from the base commit (`ftops lint --index-ref <base>`, `ftops plan --base <base>`):

* `entries_at(repo, ref)`: every entry file of the commit's tree (regular files only:
  a symlink or submodule is not an entry), parsed by `render.record.index.parse_entry`
  (the one parser of entries); an entry that does not parse, or that is stored at the
  wrong path, is left out and named in `problems`.
* `edits_since(repo, ref)`: what the working tree changed under outputs-index/ against
  the commit (only the bot writes entries: the plan flags every such change). The
  generated READMEs and SVGs are not edits (`ftops index check` judges them).

git runs with list argv in the checkout, as `ftops changes` does.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from render.errors import FatalError
from render.record.gitcmd import batch_objects
from render.record.index import ENTRY_SUFFIX, INDEX_DIR, parse_entry
from render.record.runrecord import RunRecord

_REV = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._/^~@{}-]*$")
_REGULAR = {"100644", "100755"}
# What `ftops index readme` generates (render.browse: the READMEs and charts anywhere,
# summary.jsonl at the top, runs.csv in each dataset folder, and at the top before that):
# regenerating them is not an edit to flag.
_GENERATED = (".md", ".svg")
_GENERATED_TOP = frozenset((f"{INDEX_DIR}/runs.csv", f"{INDEX_DIR}/summary.jsonl"))


def _generated(path: str) -> bool:
    return (path.endswith(_GENERATED) or path in _GENERATED_TOP
            or (path.startswith(f"{INDEX_DIR}/") and path.count("/") == 2
                and path.endswith("/runs.csv")))


@dataclass
class IndexAt:
    """The entries of one commit's outputs-index/."""

    commit: str
    records: list[RunRecord] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def runs_of(self, dataset: str, model: str, experiment: str) -> list[RunRecord]:
        return [r for r in self.records
                if (r.dataset, r.model, r.experiment) == (dataset, model, experiment)]


def _git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], input=stdin,
                              capture_output=True, check=False)
    except FileNotFoundError as exc:
        raise FatalError("git is not installed or not on PATH") from exc
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise FatalError(f"git {args[0]} failed in {repo}: {err or f'exit {proc.returncode}'}")
    return proc.stdout


def resolve(repo: Path, ref: str) -> str:
    """The full SHA of commit `ref`, or a FatalError saying why it is not one."""
    if not _REV.match(ref):
        raise FatalError(f"index ref {ref!r} is not a commit name")
    proc = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "--quiet",
                           f"{ref}^{{commit}}"], capture_output=True, check=False)
    if proc.returncode != 0:
        raise FatalError(f"index ref {ref!r} is not a commit of the repository at {repo} "
                         "(unknown, or a shallow clone: check out with fetch-depth: 0)")
    return proc.stdout.decode().strip()


def entries_at(repo: Path, ref: str) -> IndexAt:
    """The entries of outputs-index/ in commit `ref` (see the module docstring)."""
    commit = resolve(repo, ref)
    out = _git(repo, "ls-tree", "-r", "-z", "--full-tree", commit, "--", f"{INDEX_DIR}/")
    blobs: list[tuple[str, str]] = []  # (object id, path)
    for item in out.decode("utf-8", "surrogateescape").split("\0"):
        if not item:
            continue
        meta, _, path = item.partition("\t")
        mode, kind, oid = (meta.split(" ") + ["", "", ""])[:3]
        if path.endswith(ENTRY_SUFFIX) and kind == "blob" and mode in _REGULAR:
            blobs.append((oid, path))
    found = IndexAt(commit)
    if not blobs:
        return found
    raw = _git(repo, "cat-file", "--batch", stdin="".join(f"{o}\n" for o, _ in blobs).encode())
    for (_oid, path), obj in zip(blobs, batch_objects(raw, len(blobs)), strict=True):
        if obj is None:
            found.problems.append(f"{path}: cannot be read at {commit[:12]}")
            continue
        text = obj[1].decode("utf-8", "replace")
        try:
            record = parse_entry(text, path)
        except FatalError as exc:
            found.problems.append(str(exc))
            continue
        if path != f"{INDEX_DIR}/{record.index_key}":
            found.problems.append(f"{path}: stored at the wrong path for its content")
            continue
        found.records.append(record)
    return found


def edits_since(repo: Path, ref: str) -> list[tuple[str, str]]:
    """Each change under outputs-index/ from commit `ref` to the working tree, as
    (what, path): added, deleted, modified, type changed, "(a symlink)"; by path."""
    commit = resolve(repo, ref)
    out = _git(repo, "diff", "--raw", "-z", "--no-renames", "--no-ext-diff", commit, "--",
               f"{INDEX_DIR}/")
    fields = out.decode("utf-8", "surrogateescape").split("\0")
    edits: list[tuple[str, str]] = []
    i = 0
    while i + 1 < len(fields):
        meta, path = fields[i], fields[i + 1]
        i += 2
        parts = meta.lstrip(":").split(" ")
        if len(parts) < 5:
            continue
        old_mode, new_mode, status = parts[0], parts[1], parts[4][:1]
        special = {old_mode, new_mode} - _REGULAR - {"000000"}
        if not special and _generated(path):
            continue
        what = {"A": "added", "D": "deleted", "M": "modified", "T": "type changed"}.get(
            status, status)
        if "120000" in special:
            what += " (a symlink)"
        edits.append((what, path))
    untracked = _git(repo, "ls-files", "--others", "--exclude-standard", "-z", "--",
                     f"{INDEX_DIR}/")
    for path in untracked.decode("utf-8", "surrogateescape").split("\0"):
        if path and (not _generated(path) or (repo / path).is_symlink()):
            link = " (a symlink)" if (repo / path).is_symlink() else ""
            edits.append((f"added{link}", path))
    return sorted(edits, key=lambda e: e[1])
