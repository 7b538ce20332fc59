"""Publish run entries to the git remote that holds `outputs-index/`, safely under
concurrency.

Everything is plain git, run from a scratch shallow clone (sparse: only
`outputs-index/` is checked out, and the leaderboard settings its READMEs read):

1. **Land.** Fetch the branch tip and every staged ref, reset onto the tip, merge into
   the entry files every staged record (this call's and any other publisher's) with the
   lifecycle rule (`index.merge_entry`), regenerate every generated file from the
   entry files with `render.browse.sync.write_readme` (the map README, each dataset/model README,
   the SVG loss curves; stale ones removed; never hand-merged), commit, and push the
   branch together with the deletion of the swept staged refs in one
   `git push --atomic`. A push rejected because the branch moved is retried after
   jittered exponential backoff: fetch again and replay the merge on the new tip (the
   result a `git rebase` with those conflict rules would give, without ever stopping
   in a conflicted state). Whoever lands first lands
   everyone's staged records, so N concurrent publishers need a few rounds, not N;
   a publisher whose records were landed by someone else has nothing left to push.
2. **Stage** (only after a landing attempt failed, i.e. under contention). The records
   are pushed as a tiny parentless commit (one file, `pending.json`) to a ref of their
   own, `refs/ftops/pending/<unique token>`. A new, uniquely named ref is never
   contended, so once this push succeeds the records are durable on the remote and
   the next publisher to land (or this one, on its next attempt) lands them. A staged
   publisher that sees an older staged set waits (backing off, a bounded number of
   times while that set does not change) for that set's publisher to land both, so
   under a burst one publisher lands for many instead of all of them colliding.

After `attempts` failed git round trips `PublishError` is raised. The caller keeps its
record (run.json); a record already staged is landed by the next publish or by
`reconcile`, which lands every staged ref and every stored record the index lacks.

git runs through `render.record.gitcmd` (list argv, hermetic environment, credentials
redacted from every message). One module of ~475 lines on purpose: land, stage and wait
are steps of one retry loop that share its budget and scratch clone (`_Session`), and
reading them apart would hide how they interleave.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from render.errors import FatalError
from render.record import index
from render.record.gitcmd import GitError, git_env, redact, run_git
from render.record.index import INDEX_DIR
from render.record.runrecord import RunRecord

PENDING_PREFIX = "refs/ftops/pending/"
_FETCHED_PENDING = "refs/ftops-fetched/pending/"
_PENDING_FILE = "pending.json"
_PENDING_FORMAT = "ftops-pending/1"
_TOKEN = re.compile(r"[0-9a-f]{16}-[0-9a-f]{12}")  # time_ns, then random: sorts by age
_MAX_DEFERRALS = 4  # waits on one older staged set before landing ourselves
_MAX_WAITS = 16  # waits in all (clock skew between hosts can reorder tokens)

DEFAULT_AUTHOR = ("ftops-bot", "ftops-bot@users.noreply.github.com")
_BRANCH = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]{0,199}")
_STALE = ("[rejected]", "non-fast-forward", "fetch first", "failed to update ref",
          "cannot lock ref", "stale info", "incorrect old value")  # fmt: skip
_AUTH = ("authentication failed", "could not read username", "could not read password",
         "permission denied (publickey", "returned error: 403", "returned error: 401",
         "repository not found",
         "terminal prompts disabled")  # fmt: skip


class PublishError(FatalError):
    """Publishing failed after every attempt; the records were not landed."""

    def __init__(self, message: str, run_ids: Sequence[str] = (), staged: str = "") -> None:
        super().__init__(message)
        self.run_ids = tuple(run_ids)
        self.staged = staged  # the staged ref holding the records, "" if none


@dataclass(frozen=True)
class PublishResult:
    # run ids of the given records that the index now holds because of this call:
    # landed by its commit, or swept from its staged ref by a concurrent publisher
    published: tuple[str, ...]
    # run ids the index already held at the same or a later status (nothing to do)
    unchanged: tuple[str, ...]
    commit: str | None  # the commit this call pushed to the branch, None if none
    attempts: int  # git round trips used (1 + retries)
    swept: tuple[str, ...] = ()  # other publishers' staged run ids this commit landed


def publish(
    records: list[RunRecord],
    *,
    remote: str,
    branch: str = "main",
    workdir: Path | None = None,
    attempts: int = 8,
    author: tuple[str, str] = DEFAULT_AUTHOR,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
) -> PublishResult:
    """Merge `records` into the index on `remote`/`branch` (stage, then land; see the
    module docstring). An entry at the same status is replaced, one at a later status
    kept. Raises PublishError when `attempts` git round trips fail."""
    if not records:
        return PublishResult((), (), None, 0)
    with _as_publish_error(records):
        session = _Session(remote, branch, workdir, attempts, author, base_delay, max_delay)
        return session.run(records, replace_equal=True, stage=True, subject=None)


def reconcile(
    stored: list[RunRecord],
    *,
    remote: str,
    branch: str = "main",
    workdir: Path | None = None,
    attempts: int = 8,
    author: tuple[str, str] = DEFAULT_AUTHOR,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
) -> list[str]:
    """Publish, in one commit, every stored record that the index lacks or holds at an
    earlier lifecycle status, together with every record left staged on the remote by
    a publish that did not finish; returns the stored run ids published (empty when
    the index was in sync)."""
    with _as_publish_error(stored):
        session = _Session(remote, branch, workdir, attempts, author, base_delay, max_delay)
        result = session.run(stored, replace_equal=False, stage=False, subject="index: reconcile")
    return list(result.published)


@contextlib.contextmanager
def _as_publish_error(records: list[RunRecord]) -> Iterator[None]:
    """Every failure of publish/reconcile is a PublishError (a FatalError), so that a
    caller that keeps its records on PublishError (the post-run hook) never crashes."""
    try:
        yield
    except PublishError:
        raise
    except FatalError as exc:
        raise PublishError(
            f"cannot publish: {exc}. The records are kept in storage (run.json)",
            [getattr(r, "run_id", "?") for r in records],
        ) from exc


# ---------------------------------------------------------------------------------


class _Deferred(Exception):
    """Not a failure: wait for an older staged set's publisher to land ours."""


@dataclass
class _Staged:
    ref: str
    sha: str
    replace_equal: bool
    records: list[RunRecord]


class _Session:
    """One publish or reconcile: a scratch clone and a shared budget of attempts."""

    def __init__(
        self,
        remote: str,
        branch: str,
        workdir: Path | None,
        attempts: int,
        author: tuple[str, str],
        base_delay: float,
        max_delay: float,
    ) -> None:
        if attempts < 1:
            raise FatalError(f"attempts must be at least 1, got {attempts}")
        if not _BRANCH.fullmatch(branch) or ".." in branch or branch.endswith((".lock", "/")):
            raise FatalError(f"invalid branch name {branch!r}")
        if not remote or remote.startswith("-"):
            raise FatalError(f"invalid remote {redact(remote)!r}: use a URL or a path")
        self.remote, self.branch, self.workdir = remote, branch, workdir
        self.attempts, self.author = attempts, author
        self.base_delay, self.max_delay = base_delay, max_delay
        self.failures = 0
        self.deferrals = 0
        self.leader = ""
        self.waits = 0
        self.rng = random.Random()  # noqa: S311 - jitter, not security
        self.run_ids: list[str] = []
        self.staged_ref = ""
        self.clone = Path()
        self.env: dict[str, str] = {}

    # -- driver ----------------------------------------------------------------

    def run(
        self, records: list[RunRecord], *, replace_equal: bool, stage: bool, subject: str | None
    ) -> PublishResult:
        for r in records:
            index.validate(r)
        self.run_ids = [r.run_id for r in records]
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix="ftops-publish-", dir=self.workdir, ignore_cleanup_errors=True
        ) as scratch:
            home = Path(scratch) / "home"
            home.mkdir()
            self.clone = Path(scratch) / "clone"
            self.env = git_env(self.author, home)
            self._retry(self._clone)

            def land() -> PublishResult:
                # Stage once the first landing failed (contention): from then on any
                # concurrent publisher that lands also lands these records.
                if stage and not self.staged_ref and self.failures > 0:
                    self.staged_ref = self._stage(records, replace_equal)
                if self.staged_ref:
                    on_remote = self._staged_on_remote()
                    if self.staged_ref not in on_remote:
                        # a concurrent publisher landed them (a staged ref is deleted
                        # only by the push that lands it, or once the branch has it)
                        ids = tuple(r.run_id for r in records)
                        return PublishResult(ids, (), None, self.failures + 1)
                    oldest = min(on_remote)
                    if oldest != self.staged_ref:
                        # An older staged set exists: its publisher lands ours with it.
                        # Wait rather than join the stampede, as long as the oldest
                        # set keeps changing (progress); land ourselves otherwise.
                        if oldest != self.leader:
                            self.leader, self.deferrals = oldest, 0
                        if self.deferrals < _MAX_DEFERRALS and self.waits < _MAX_WAITS:
                            self.deferrals += 1
                            self.waits += 1
                            raise _Deferred
                return self._land(records, replace_equal, subject)

            return self._retry(land)

    def _retry(self, step: Callable[[], _T]) -> _T:
        """Run a step; on a transient failure back off and rerun it. Every failure,
        in any step, spends one of the session's `attempts`."""
        while True:
            try:
                return step()
            except _Deferred:
                cap = min(self.max_delay, self.base_delay * 2 ** (self.failures + self.deferrals))
                time.sleep(self.rng.uniform(cap / 4, cap))
                continue
            except GitError as exc:
                last: Exception = exc
                low = exc.output.lower()
                if "not found in upstream" in low:
                    raise self._error(
                        f"branch {self.branch!r} does not exist on the remote; publish to "
                        "the branch that holds outputs-index/ (create it first if new)",
                        exc,
                    ) from exc
                if not any(s in low for s in _STALE) and any(s in low for s in _AUTH):
                    raise self._error(
                        f"access denied ({exc}). Check the credentials (a token that may "
                        "push contents) and the remote URL",
                        exc,
                    ) from exc
            except PublishError:
                raise
            except FatalError as exc:  # e.g. a corrupt entry on the branch
                raise self._error(str(exc), exc) from exc
            except (subprocess.TimeoutExpired, OSError) as exc:
                if isinstance(exc, FileNotFoundError) and exc.filename == "git":
                    raise self._error("git is not installed or not on PATH", exc) from exc
                last = exc
            self.failures += 1
            if self.failures >= self.attempts:
                raise self._error(
                    f"gave up after {self.attempts} attempts; last error: {last}", last
                )
            cap = min(self.max_delay, self.base_delay * 2 ** (self.failures - 1))
            time.sleep(self.rng.uniform(cap / 4, cap))

    def _error(self, what: str, cause: object) -> PublishError:
        ids = ", ".join(self.run_ids) or "(none)"
        where = f"{redact(self.remote)} (branch {self.branch})"
        kept = "The records are kept in storage (run.json)"
        if self.staged_ref:
            kept += (
                f" and staged on the remote as {self.staged_ref}; the next publish or "
                "`ftops index reconcile` lands them"
            )
        else:
            kept += "; run `ftops index reconcile` to publish them later"
        return PublishError(
            f"could not publish run(s) {ids} to {where}: {redact(what)}. {kept}",
            self.run_ids,
            self.staged_ref,
        )

    # -- steps -----------------------------------------------------------------

    def _clone(self) -> None:
        if self.clone.exists():
            shutil.rmtree(self.clone, ignore_errors=True)
        # fmt: off
        self._git(["clone", "--quiet", "--depth", "1", "--branch", self.branch,
                   "--single-branch", "--no-tags", "--sparse", "--", self.remote,
                   str(self.clone)], cwd=self.clone.parent)
        # fmt: on
        # Layer exception (record -> browse): the checkout holds the index and what
        # browse reads to regenerate its READMEs besides the entries (the leaderboards
        # named in the profile and in the dataset.yaml files).
        from render.browse.leaderboard import SOURCES

        self._git(["sparse-checkout", "set", "--no-cone", f"/{INDEX_DIR}/", *SOURCES])

    def _stage(self, records: list[RunRecord], replace_equal: bool) -> str:
        payload = {
            "format": _PENDING_FORMAT,
            "replace_equal": replace_equal,
            "records": [json.loads(r.to_json()) for r in records],
        }
        blob = self._git(
            ["hash-object", "-w", "--stdin"], input=json.dumps(payload, sort_keys=True)
        ).strip()
        tree = self._git(["mktree"], input=f"100644 blob {blob}\t{_PENDING_FILE}\n").strip()
        what = " ".join(f"{r.experiment} {r.run_id} {r.status};" for r in records)
        commit = self._git(["commit-tree", tree, "-m", f"ftops pending: {what}"[:500]]).strip()
        ref = f"{PENDING_PREFIX}{time.time_ns():016x}-{secrets.token_hex(6)}"
        self._git(["push", "--quiet", "--porcelain", "origin", f"{commit}:{ref}"])
        return ref

    def _land(
        self, records: list[RunRecord], replace_equal: bool, subject: str | None
    ) -> PublishResult:
        # fmt: off
        self._git(["fetch", "--quiet", "--prune", "--depth", "1", "--no-tags", "origin",
                   f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}",
                   f"+{PENDING_PREFIX}*:{_FETCHED_PENDING}*"])
        # fmt: on
        self._git(["reset", "--quiet", "--hard", f"refs/remotes/origin/{self.branch}"])
        self._git(["clean", "--quiet", "-fdx", "--", INDEX_DIR])
        staged = self._read_staged()
        ours_staged = any(s.ref == self.staged_ref for s in staged)
        root = self.clone / INDEX_DIR

        changed: dict[str, RunRecord] = {}  # index key -> record now in the entry
        for s in staged:
            if s.ref == self.staged_ref:
                continue  # ours are merged below, with our own rule
            for r in s.records:
                if index.merge_entry(root, r, replace_equal=s.replace_equal)[1]:
                    changed[r.index_key] = r
        ours_changed: set[str] = set()
        for r in records:
            if index.merge_entry(root, r, replace_equal=replace_equal)[1]:
                changed[r.index_key] = r
                ours_changed.add(r.index_key)
        deletions = [f":{PENDING_PREFIX}{s.ref[len(PENDING_PREFIX) :]}" for s in staged]
        mine = {r.index_key for r in records}
        swept = tuple(sorted({r.run_id for k, r in changed.items() if k not in mine}))

        if not changed:
            if deletions:  # all already landed: tidy up, best effort
                with contextlib.suppress(GitError):
                    self._git(["push", "--quiet", "--atomic", "--porcelain", "origin",
                               *deletions])  # fmt: skip
            # our staged copy gone = a concurrent publisher landed it
            done = tuple(r.run_id for r in records if not ours_staged and self.staged_ref)
            rest = tuple(r.run_id for r in records if r.run_id not in done)
            return PublishResult(done, rest, None, self.failures + 1)

        # Every generated file (READMEs, SVGs) is regenerated from the merged entry
        # files and `add --all` stages new, changed and removed ones: whatever order
        # publishers land in, the tree ends up as write_readme of all entries.
        # Layer exception (record -> browse): the READMEs that map the entries are part
        # of the same commit, and browse draws them.
        from render.browse.sync import write_readme

        write_readme(root)
        self._git(["add", "--all", "--", INDEX_DIR])
        msg = _message(sorted(changed.values(), key=lambda r: r.index_key), subject)
        self._git(["commit", "--quiet", "--no-verify", "-m", msg])
        sha = self._git(["rev-parse", "HEAD"]).strip()
        self._git(["push", "--quiet", "--atomic", "--porcelain", "origin",
                   f"HEAD:refs/heads/{self.branch}", *deletions])  # fmt: skip
        published = tuple(
            r.run_id
            for r in records
            if r.index_key in ours_changed or (self.staged_ref and not ours_staged)
        )
        rest = tuple(r.run_id for r in records if r.run_id not in published)
        return PublishResult(published, rest, sha, self.failures + 1, swept)

    def _staged_on_remote(self) -> list[str]:
        out = self._git(["ls-remote", "origin", f"{PENDING_PREFIX}*"])
        refs = [line.split("\t", 1)[1] for line in out.splitlines() if "\t" in line]
        # only refs this module names take part in "who is oldest" (junk is ignored)
        return [r for r in refs if _TOKEN.fullmatch(r[len(PENDING_PREFIX) :])]

    def _read_staged(self) -> list[_Staged]:
        out = self._git(["for-each-ref", "--format=%(objectname) %(refname)", _FETCHED_PENDING])
        refs = []
        for line in out.splitlines():
            sha, _, name = line.partition(" ")
            refs.append((PENDING_PREFIX + name[len(_FETCHED_PENDING) :], sha))
        if not refs:
            return []
        query = "".join(f"{sha}:{_PENDING_FILE}\n" for _, sha in refs)
        raw = self._git_bytes(["cat-file", "--batch"], input=query.encode())
        staged: list[_Staged] = []
        pos = 0
        for ref, sha in refs:
            eol = raw.index(b"\n", pos)
            header = raw[pos:eol].split()
            pos = eol + 1
            if len(header) != 3 or header[1] != b"blob":
                continue  # not a staged record set: leave it alone
            size = int(header[2])
            body = raw[pos : pos + size]
            pos += size + 1
            parsed = _parse_staged(ref, sha, body)
            if parsed is not None:
                staged.append(parsed)
        return sorted(staged, key=lambda s: s.ref)

    # -- git -------------------------------------------------------------------

    def _git(self, args: list[str], *, cwd: Path | None = None, input: str | None = None) -> str:
        data = None if input is None else input.encode()
        return self._git_bytes(args, cwd=cwd, input=data).decode("utf-8", "replace")

    def _git_bytes(
        self, args: list[str], *, cwd: Path | None = None, input: bytes | None = None
    ) -> bytes:
        return run_git(args, cwd=cwd or self.clone, env=self.env, input=input)


_T = TypeVar("_T")


def _parse_staged(ref: str, sha: str, body: bytes) -> _Staged | None:
    """A staged record set, or None when the ref holds anything else (left alone)."""
    try:
        data = json.loads(body)
        if not isinstance(data, dict) or data.get("format") != _PENDING_FORMAT:
            return None
        items = data.get("records")
        if not isinstance(items, list):
            return None
        records = [RunRecord.from_dict(d) for d in items]
        for r in records:
            index.validate(r)
    except (ValueError, TypeError, AttributeError, FatalError):
        return None
    return _Staged(ref, sha, bool(data.get("replace_equal", True)), records)


def _message(changed: list[RunRecord], subject: str | None) -> str:
    lines = [f"index: {r.experiment} {r.run_id} {r.status}" for r in changed]
    if subject is None and len(changed) == 1:
        return lines[0]
    head = f"{subject or 'index:'} {len(changed)} run{'s' if len(changed) != 1 else ''}"
    return head + "\n\n" + "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_AUTHOR",
    "PENDING_PREFIX",
    "PublishError",
    "PublishResult",
    "publish",
    "reconcile",
    "redact",
]
