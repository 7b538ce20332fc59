"""Publish run entries to the git remote that holds `outputs-index/`, safely under
concurrency.

Everything is plain git, run from a scratch shallow clone, partial where the server
allows it (`--filter=blob:none`: a blob is fetched when checked out) and sparse: only
the files at the top of `outputs-index/` (the map, the summary), the leaderboard
settings and the folders the records land in are checked out, so a publish
costs the same at 100 entries or 100,000:

1. **Land.** Fetch the branch tip and every staged ref, reset onto the tip, check out
   the dataset/model folders of this call's records and of every staged record, merge
   into the entry files this call's records and the staged records of other publishers
   that it can verify (3.) with the lifecycle rule (`index.merge_entry`), regenerate
   what the changed folders affect with `render.browse.sync.update_readme` (their
   READMEs and SVG loss curves, their datasets' leaderboards and runs.csv, the map
   README and the summary, each exactly what a full regeneration from every entry gives; the
   few entries of other folders it reads are added to the checkout; never
   hand-merged), commit, and push the branch together with the deletion of the swept
   staged refs in one `git push --atomic`. A push rejected because the branch moved is retried after
   jittered exponential backoff: fetch again and replay the merge on the new tip (the
   result a `git rebase` with those conflict rules would give, without ever stopping
   in a conflicted state). Whoever lands first lands every staged record it can
   verify, so N concurrent hooks need a few rounds, not N; a publisher whose records
   were landed by someone else has nothing left to push.
2. **Stage** (only after a landing attempt failed, i.e. under contention). The records
   are pushed as a tiny parentless commit (one file, `pending.json`) to a ref of their
   own, `refs/ftops/pending/<unique token>`. A new, uniquely named ref is never
   contended, so once this push succeeds the records are durable on the remote and
   the next publisher to land (or this one, on its next attempt) lands them. A staged
   publisher that sees an older staged set waits (backing off, a bounded number of
   times while that set does not change) for that set's publisher to land both, so
   under a burst one publisher lands for many instead of all of them colliding.
3. **Trust.** A publisher's own records are trusted (it holds the push credentials);
   anything else is a claim checked by a `render.record.trust.Verify`: another
   publisher's staged set lands only when every record in it matches a run its launcher
   recorded and the run's own run.json (a publisher without a verifier leaves other
   sets to their owners), and reconcile lands a stored run.json only on the same terms.
   Reconcile moves a staged set that holds an invalid or unverifiable record to
   `refs/ftops/quarantine/<token>` (same commit, nothing lost) and names it; one bad
   record never stops the others.

After `attempts` failed git round trips `PublishError` is raised. The caller keeps its
record (run.json); a record already staged is landed by the next publish that can verify
it or by `reconcile`, which lands every staged set and every stored record the index
lacks that it can verify.

git runs through `render.record.gitcmd` (list argv, hermetic environment, credentials
redacted from every message). One module of ~590 lines on purpose: land, stage, wait and
quarantine are steps of one retry loop that share its budget and scratch clone
(`_Session`), and reading them apart would hide how they interleave.
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
from typing import TYPE_CHECKING, TypeVar

from render.errors import FatalError
from render.record import index
from render.record.gitcmd import GitError, batch_objects, git_env, redact, run_git
from render.record.index import INDEX_DIR
from render.record.runrecord import RunRecord
from render.record.trust import StoredRecord, Verify

if TYPE_CHECKING:
    # Layer exception (record -> browse): a type only, for `_boards` (see there).
    from render.browse.leaderboard import Boards

PENDING_PREFIX = "refs/ftops/pending/"
QUARANTINE_PREFIX = "refs/ftops/quarantine/"
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
    # records that may not land (a stored run.json, reconcile), each with why
    refused: tuple[str, ...] = ()
    # staged sets moved to refs/ftops/quarantine/ (reconcile), each with why
    quarantined: tuple[str, ...] = ()


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
    verify: Verify | None = None,
) -> PublishResult:
    """Merge the caller's own `records` into the index on `remote`/`branch` (stage,
    then land; see the module docstring). An entry at the same status is replaced, one
    at a later status kept. Other publishers' staged sets land too when `verify`
    accepts every record in them. Raises PublishError when `attempts` git round trips
    fail."""
    if not records:
        return PublishResult((), (), None, 0)
    with _as_publish_error(records):
        session = _Session(remote, branch, workdir, attempts, author, base_delay, max_delay,
                           verify, reconciling=False)
        return session.run([(r, None) for r in records], replace_equal=True, stage=True,
                           subject=None)


def reconcile(
    stored: list[StoredRecord],
    *,
    remote: str,
    verify: Verify,
    branch: str = "main",
    workdir: Path | None = None,
    attempts: int = 8,
    author: tuple[str, str] = DEFAULT_AUTHOR,
    base_delay: float = 0.2,
    max_delay: float = 5.0,
) -> PublishResult:
    """Publish, in one commit, every stored record that the index lacks or holds at an
    earlier lifecycle status and that `verify` accepts, together with every staged set
    whose records it accepts; other staged sets are quarantined. `published` holds the
    stored run ids landed (empty when the index was in sync); `refused` and
    `quarantined` say what did not land and why."""
    with _as_publish_error([s.record for s in stored]):
        session = _Session(remote, branch, workdir, attempts, author, base_delay, max_delay,
                           verify, reconciling=True)
        return session.run([(s.record, s.uri) for s in stored], replace_equal=False,
                           stage=False, subject="index: reconcile")


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
    records: list[RunRecord]  # the valid ones
    invalid: list[str]  # why each other record is not a valid record


# A record to land and where it came from: None for the caller's own (trusted), else
# the URI of the stored run.json it was read from (a claim, checked by `verify`).
_Claim = tuple[RunRecord, str | None]

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
        verify: Verify | None,
        *,
        reconciling: bool,
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
        self.cone: tuple[str, ...] | None = None  # the folders of the sparse checkout
        self.written = False  # whether a landing may have left files in the checkout
        self.partial = False  # a partial clone (the server honoured the filter)
        self.boards: tuple[tuple[tuple[str, str], ...], Boards] | None = None  # by blob
        self.env: dict[str, str] = {}
        self.verify = verify
        self.reconciling = reconciling
        self.refused: list[str] = []  # claims that did not validate (before any git)

    # -- driver ----------------------------------------------------------------

    def run(
        self, claims: list[_Claim], *, replace_equal: bool, stage: bool, subject: str | None
    ) -> PublishResult:
        kept: list[_Claim] = []
        for record, source in claims:
            if source is None:
                index.validate(record)  # the caller's own: a bad one is the caller's bug
                kept.append((record, source))
                continue
            try:
                index.validate(record)
            except FatalError as exc:  # one bad stored record never stops the others
                self.refused.append(f"{source}: not a valid run record: {exc}")
                continue
            kept.append((record, source))
        records = [r for r, _ in kept]
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
                # concurrent publisher that can verify them lands these records too.
                if stage and not self.staged_ref and self.failures > 0:
                    self.staged_ref = self._stage(records, replace_equal)
                if self.staged_ref:
                    on_remote = self._staged_on_remote()
                    # Gone: landed by a concurrent publisher, or quarantined by a
                    # reconcile that could not verify it; `_land` finds out which.
                    if self.staged_ref in on_remote:
                        oldest = min(on_remote)
                        if oldest != self.staged_ref:
                            # An older staged set exists: its publisher may land ours
                            # with it. Wait rather than join the stampede, as long as
                            # the oldest set keeps changing (progress); else land.
                            if oldest != self.leader:
                                self.leader, self.deferrals = oldest, 0
                            if self.deferrals < _MAX_DEFERRALS and self.waits < _MAX_WAITS:
                                self.deferrals += 1
                                self.waits += 1
                                raise _Deferred
                return self._land(kept, replace_equal, subject)

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
        # Partial (a blob is fetched when checked out or read) where the server allows
        # it; a server that ignores the filter sends every blob, which only costs time.
        # A cone-mode sparse checkout with a sparse index: git's work then grows with
        # the folders checked out, not with the size of the index. Nothing is checked
        # out here: `_land` sets the cone, then checks out once.
        # fmt: off
        self._git(["clone", "--quiet", "--depth", "1", "--branch", self.branch,
                   "--single-branch", "--no-tags", "--no-checkout", "--filter=blob:none",
                   "--config", "core.sparseCheckoutCone=true", "--config", "index.sparse=true",
                   # a scratch clone: its objects are written once and pushed, so
                   # deflating them on `git add` (a runs.csv is megabytes) is waste
                   "--config", "core.looseCompression=0",
                   "--", self.remote, str(self.clone)], cwd=self.clone.parent)
        # fmt: on
        self.cone = None
        self.partial = self._git(["config", "--get", "--default", "false",
                                  "remote.origin.promisor"]).strip() == "true"

    def _checkout(self, folders: list[tuple[str, str]]) -> None:
        """Check out the entries and generated files of these dataset/model folders,
        and with them (cone mode) the files at the top of outputs-index/ (the map, the
        summary) and of their dataset folders (the leaderboards, runs.csv). Other
        folders stay out of the working tree (and, in a partial clone, out of the
        clone) unless `folders` adds them."""
        # names are entry path components (index.check_key): plain relative paths
        cone = tuple(sorted({f"{INDEX_DIR}/{d}/{m}" for d, m in folders}))
        if cone != self.cone:
            self._git(["sparse-checkout", "set", "--cone", "--sparse-index", *cone])
            self.cone = cone

    # -- the index beyond the checkout (render.browse.update.Tree) --------------

    def folders(self, paths: list[str]) -> None:
        """Add folders of outputs-index/ ("<dataset>/<model>/", "" for all of it)."""
        if "" in paths:
            cone: tuple[str, ...] = (INDEX_DIR,)
        else:
            cone = tuple(sorted({*(self.cone or ()),
                                 *(f"{INDEX_DIR}/{p.rstrip('/')}" for p in paths)}))
        if cone != self.cone and INDEX_DIR not in (self.cone or ()):
            self._git(["sparse-checkout", "set", "--cone", "--sparse-index", *cone])
            self.cone = cone

    def read(self, rels: list[str]) -> dict[str, str]:
        """The committed text of entry files of outputs-index/ (outside the checkout)."""
        texts = self._committed([f"{INDEX_DIR}/{rel}" for rel in rels])
        missing = [rel for rel in rels if texts.get(f"{INDEX_DIR}/{rel}") is None]
        if missing:
            raise FatalError(f"{INDEX_DIR}/{missing[0]}: listed in the summary but not "
                             "committed; regenerate the index with `ftops index readme`")
        return {rel: texts[f"{INDEX_DIR}/{rel}"] or "" for rel in rels}

    def _committed(self, paths: list[str]) -> dict[str, str | None]:
        """The text of these files at HEAD (None: no such file), read from git."""
        if not paths:
            return {}
        listing = self._git(["--literal-pathspecs", "ls-tree", "-z", "HEAD", "--", *paths])
        oids = _blobs(listing)
        texts = self._texts(list(oids.values()))
        return {p: texts.get(oids[p]) if p in oids else None for p in paths}

    def _texts(self, oids: list[str]) -> dict[str, str]:
        """The text of these blobs, those a partial clone lacks fetched in one round
        trip (what git's own lazy fetch runs, for all of them at once); a blob git
        cannot read is left out."""
        if oids and self.partial:
            self._git(["-c", "fetch.negotiationAlgorithm=noop", "fetch", "--quiet",
                       "--no-tags", "--no-write-fetch-head", "--recurse-submodules=no",
                       "--filter=blob:none", "--stdin", "origin"],
                      input="".join(f"{oid}\n" for oid in oids))
        return {oid: data.decode("utf-8", "replace") for oid, data in self._cat(oids).items()}

    def _cat(self, oids: list[str]) -> dict[str, bytes]:
        """The content of these objects (an object git cannot read is left out)."""
        raw = self._git_bytes(["cat-file", "--batch"],
                              input="".join(f"{o}\n" for o in oids).encode())
        return {oid: obj[1] for oid, obj in zip(oids, batch_objects(raw, len(oids)),
                                                 strict=True) if obj is not None}

    def _boards(self) -> Boards:
        """The leaderboards at HEAD, read from git (`render.browse.leaderboard`)."""
        # Layer exception (record -> browse): the READMEs regenerated in the same
        # commit rank runs by these leaderboards, and browse knows where they are named.
        from render.browse.leaderboard import (
            DATASET_FILE,
            EXPERIMENTS_DIR,
            PROFILE_FILE,
            parse_boards,
        )

        # one listing; the files are read again only when one of them changed
        listing = self._git(["ls-tree", "-r", "-z", "HEAD", "--", f"{EXPERIMENTS_DIR}/",
                             PROFILE_FILE])
        oids = {p: oid for p, oid in _blobs(listing).items()
                if p == PROFILE_FILE or (p.count("/") == 2 and p == DATASET_FILE.format(
                    dataset=p.split("/")[1]))}
        key = tuple(sorted(oids.items()))
        if self.boards is None or self.boards[0] != key:
            texts = self._texts(sorted(set(oids.values())))
            unread = sorted(p for p, oid in oids.items() if oid not in texts)
            if unread:
                raise FatalError(f"{unread[0]}: cannot be read from the index remote's "
                                 "commit (a partial clone that could not fetch it)")
            self.boards = (key, parse_boards({p: texts[oid] for p, oid in oids.items()}))
        return self.boards[1]

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
        self, claims: list[_Claim], replace_equal: bool, subject: str | None
    ) -> PublishResult:
        records = [r for r, _ in claims]
        # fmt: off
        self._git(["fetch", "--quiet", "--prune", "--depth", "1", "--no-tags", "origin",
                   f"+refs/heads/{self.branch}:refs/remotes/origin/{self.branch}",
                   f"+{PENDING_PREFIX}*:{_FETCHED_PENDING}*"])
        # fmt: on
        staged = self._read_staged()
        # every folder an entry may be merged into is checked out: merging into one
        # that is not would not see the entry it holds
        self._checkout([(r.dataset, r.model) for r in
                        [*records, *(r for s in staged for r in s.records)]])
        self._git(["reset", "--quiet", "--hard", f"refs/remotes/origin/{self.branch}"])
        if self.written:  # an earlier round wrote files; a fresh checkout has none
            self._git(["clean", "--quiet", "-fdx", "--", INDEX_DIR])
        self.written = True
        ours_staged = any(s.ref == self.staged_ref for s in staged)
        root = self.clone / INDEX_DIR
        refused = list(self.refused)
        quarantined: list[str] = []

        changed: dict[str, RunRecord] = {}  # index key -> record now in the entry
        refspecs: list[str] = []  # staged refs deleted (landed) or moved (quarantined)
        for s in staged:
            if s.ref == self.staged_ref:
                refspecs.append(f":{s.ref}")  # ours are merged below, with our own rule
                continue
            landable, problems = self._check_staged(root, s)
            if problems is None:
                continue  # not ours to judge: left for its publisher or for reconcile
            for r in landable:
                if index.merge_entry(root, r, replace_equal=s.replace_equal)[1]:
                    changed[r.index_key] = r
            if problems:
                token = s.ref[len(PENDING_PREFIX) :]
                refspecs += [f"{s.sha}:{QUARANTINE_PREFIX}{token}", f":{s.ref}"]
                quarantined.append(f"{s.ref} moved to {QUARANTINE_PREFIX}{token}: "
                                   + "; ".join(problems))
            else:
                refspecs.append(f":{s.ref}")
        landed: dict[str, None] = {}  # run ids of our claims that changed an entry
        for r, source in claims:
            if source is not None:
                problem = self._check_claim(root, r, source, replace_equal)
                if problem is not None:
                    refused.append(f"{source}: not landed: {problem}")
                    continue
            if index.merge_entry(root, r, replace_equal=replace_equal)[1]:
                changed[r.index_key] = r
                landed[r.run_id] = None
        mine = {r.index_key for r in records}
        swept = tuple(sorted({r.run_id for k, r in changed.items() if k not in mine}))

        if not changed:
            if refspecs:  # all already landed, or only quarantines: best effort
                with contextlib.suppress(GitError):
                    self._git(["push", "--quiet", "--atomic", "--porcelain", "origin",
                               *refspecs])  # fmt: skip
            # our staged copy gone = a concurrent publisher landed it
            done = tuple(dict.fromkeys(r.run_id for r in records
                                       if not ours_staged and self.staged_ref))
            rest = tuple(dict.fromkeys(r.run_id for r in records if r.run_id not in done))
            return PublishResult(done, rest, None, self.failures + 1, (), tuple(refused),
                                 tuple(quarantined))

        # The generated files (READMEs, SVGs, runs.csv, the summary) that the changed
        # folders affect are regenerated from their entries and the summary (all of
        # them from every entry where the summary cannot say) and `add --all` stages
        # new, changed and removed ones: whatever order publishers land in, the tree
        # ends up as write_readme of all entries.
        # Layer exception (record -> browse): the READMEs that map the entries are part
        # of the same commit, and browse draws them.
        from render.browse.sync import update_readme

        update_readme(root, {(r.dataset, r.model) for r in changed.values()},
                      self._boards(), self)
        self._git(["add", "--all", "--", INDEX_DIR])
        msg = _message(sorted(changed.values(), key=lambda r: r.index_key), subject)
        self._git(["commit", "--quiet", "--no-verify", "-m", msg])
        sha = self._git(["rev-parse", "HEAD"]).strip()
        self._git(["push", "--quiet", "--atomic", "--porcelain", "origin",
                   f"HEAD:refs/heads/{self.branch}", *refspecs])  # fmt: skip
        if self.staged_ref and not ours_staged:  # a concurrent publisher landed ours
            landed.update(dict.fromkeys(r.run_id for r in records))
        published = tuple(landed)
        rest = tuple(dict.fromkeys(r.run_id for r in records if r.run_id not in landed))
        return PublishResult(published, rest, sha, self.failures + 1, swept, tuple(refused),
                             tuple(quarantined))

    def _entry(self, root: Path, record: RunRecord) -> RunRecord | None:
        path = root / record.index_key
        return index.read_entry(path, root) if path.is_file() else None

    def _check_claim(self, root: Path, record: RunRecord, source: str | None,
                     replace_equal: bool) -> str | None:
        """Why a claim may not land (None: it may, or it would change nothing)."""
        try:
            entry = self._entry(root, record)
        except FatalError as exc:
            return str(exc)
        if index.merge_records(entry, record, replace_equal=replace_equal) is entry:
            return None  # nothing would change
        if self.verify is None:
            return "no verifier"
        return self.verify(record, entry, source)

    def _check_staged(self, root: Path, s: _Staged) -> tuple[list[RunRecord], list[str] | None]:
        """(records of another publisher's staged set that may land, problems); problems
        None when this publisher leaves the set alone: it cannot verify it, or (not
        reconciling) something in it does not verify."""
        if self.verify is None:
            return [], None
        problems = [f"record {p}" for p in s.invalid]
        landable = []
        for r in s.records:
            problem = self._check_claim(root, r, None, s.replace_equal)
            if problem is None:
                landable.append(r)
            else:
                problems.append(f"run {r.run_id} ({r.status}): {problem}")
        if problems and not self.reconciling:
            return [], None
        return landable, problems

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
            body: bytes | None = None
            if len(header) == 3 and header[2].isdigit():
                size = int(header[2])
                if header[1] == b"blob":
                    body = raw[pos : pos + size]
                pos += size + 1
            staged.append(_parse_staged(ref, sha, body))
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


def _blobs(listing: str) -> dict[str, str]:
    """path -> blob id, from `git ls-tree -z` output."""
    out = {}
    for item in listing.split("\0"):
        meta, _, path = item.partition("\t")
        parts = meta.split(" ")
        if len(parts) == 3 and parts[1] == "blob":
            out[path] = parts[2]
    return out


def _parse_staged(ref: str, sha: str, body: bytes | None) -> _Staged:
    """A staged record set: its valid records, and why each other one (or the whole
    set, when it cannot be read as one) is invalid."""
    if body is None:
        return _Staged(ref, sha, True, [], [f"set: no {_PENDING_FILE} in the commit"])
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return _Staged(ref, sha, True, [], [f"set: not JSON ({_one_line(str(exc))})"])
    items = data.get("records") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("format") != _PENDING_FORMAT \
            or not isinstance(items, list):
        return _Staged(ref, sha, True, [], [f"set: not an {_PENDING_FORMAT} record set"])
    records: list[RunRecord] = []
    invalid: list[str] = []
    for i, item in enumerate(items):
        try:
            record = RunRecord.from_dict(item)
            index.validate(record)
        except (ValueError, TypeError, FatalError) as exc:
            invalid.append(f"{i}: not a valid run record ({_one_line(str(exc))})")
            continue
        records.append(record)
    return _Staged(ref, sha, data.get("replace_equal", True) is not False, records, invalid)


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _message(changed: list[RunRecord], subject: str | None) -> str:
    lines = [f"index: {r.experiment} {r.run_id} {r.status}" for r in changed]
    if subject is None and len(changed) == 1:
        return lines[0]
    head = f"{subject or 'index:'} {len(changed)} run{'s' if len(changed) != 1 else ''}"
    return head + "\n\n" + "\n".join(lines) + "\n"


__all__ = [
    "DEFAULT_AUTHOR",
    "PENDING_PREFIX",
    "QUARANTINE_PREFIX",
    "PublishError",
    "PublishResult",
    "publish",
    "reconcile",
    "redact",
]
