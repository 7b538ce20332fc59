"""Publish run entries to the git remote that holds `outputs-index/`, safely under
concurrency.

Everything is plain git, run from a scratch shallow clone, partial where the server
allows it (`--filter=blob:none`: a blob is fetched when read), with nothing checked out:
a landing reads the entries of the folders its records land in, the summary and the
runs.csv files it needs from git objects, and builds its commit from the tip's trees
with `git fast-import`, so a publish costs the same at 100 entries or 100,000 (writing
a folder's thousand files to disk was most of a publish on a slow disk):

1. **Land.** Fetch the branch tip and every staged ref, read the entries of the
   dataset/model folders of this call's records and of every staged record, merge into
   them (in memory) this call's records and the staged records of other publishers
   that it can verify (3.) with the lifecycle rule (`index.merge_entry`'s), regenerate
   what the changed folders affect with `render.browse.update` (their READMEs and SVG
   loss curves, their datasets' leaderboards and runs.csv, the map README and the
   summary, each exactly what a full regeneration from every entry gives; the few
   entries of other folders it needs are read from git too; never hand-merged), commit
   the files whose bytes differ from the tip's (and the removal of generated files no
   entry produces any more; never through a folder that is a symlink on the branch),
   and push the branch together with the deletion of the swept staged refs in one
   `git push --atomic`. Where the summary cannot say (none yet, hand-edited, a
   leaderboard changed), all of outputs-index/ is checked out and regenerated from
   every entry (`render.browse.sync.write_readme`). A push rejected because the branch
   moved is retried after jittered exponential backoff: fetch again and replay the
   merge on the new tip (the result a `git rebase` with those conflict rules would
   give, without ever stopping in a conflicted state). Whoever lands first lands every
   staged record it can verify, so N concurrent hooks need a few rounds, not N; a
   publisher whose records were landed by someone else has nothing left to push.
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
redacted from every message). One module on purpose: land, stage, wait and quarantine
are steps of one retry loop that share its budget and scratch clone (`_Session`, with
`_AtTip` its view of the tip), and reading them apart would hide how they interleave.
"""

from __future__ import annotations

import contextlib
import hashlib
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
from render.fsutil import atomic_write, confined
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
        self.tip = ""  # the branch tip fetched by the current landing attempt
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
        # Nothing is checked out: a landing reads git objects and commits with
        # fast-import. Only the full regeneration checks out outputs-index/ (cone mode,
        # a sparse index: the rest of the repository stays out).
        # fmt: off
        self._git(["clone", "--quiet", "--depth", "1", "--branch", self.branch,
                   "--single-branch", "--no-tags", "--no-checkout", "--filter=blob:none",
                   "--config", "core.sparseCheckoutCone=true", "--config", "index.sparse=true",
                   # a scratch clone: its objects are written once and pushed, so
                   # deflating them on `git add` is waste
                   "--config", "core.looseCompression=0",
                   "--", self.remote, str(self.clone)], cwd=self.clone.parent)
        # fmt: on
        self.cone = None
        self.partial = self._git(["config", "--get", "--default", "false",
                                  "remote.origin.promisor"]).strip() == "true"

    def _checkout_all(self) -> None:
        """Check out all of outputs-index/ at the tip (the full regeneration's way,
        which reads every entry from disk)."""
        if self.cone != (INDEX_DIR,):
            self._git(["sparse-checkout", "set", "--cone", "--sparse-index", INDEX_DIR])
            self.cone = (INDEX_DIR,)
        self._git(["reset", "--quiet", "--hard", self.tip])
        if self.written:  # an earlier round wrote files; a fresh checkout has none
            self._git(["clean", "--quiet", "-fdx", "--", INDEX_DIR])
        self.written = True

    # -- reading the tip from git ------------------------------------------------

    def _listing(self, paths: list[str]) -> dict[str, tuple[str, str, str]]:
        """`git ls-tree` of the tip for these paths (a path ending in "/": the folder's
        children): {path: (mode, type, object id)}."""
        if not paths:
            return {}
        return _listed(self._git(["--literal-pathspecs", "ls-tree", "-z", "--full-tree",
                                  self.tip, "--", *paths]))

    def _no_links(self, paths: set[str]) -> None:
        """FatalError when a folder above one of these paths (outputs-index/ and
        below) is a symlink or a file on the tip: what is written under it would
        replace it (ftops never writes through a link in outputs-index/)."""
        folders = {p[:i] for p in paths for i, c in enumerate(p) if c == "/"}
        parents = sorted({f.rpartition("/")[0] for f in folders})
        listing = self._listing([f"{q}/" for q in parents if q])
        if "" in parents:  # the repository's top: outputs-index itself
            top = self._git(["ls-tree", "-z", "--full-tree", self.tip])
            listing.update(_listed(top))
        for path, (mode, kind, _) in sorted(listing.items()):
            if path in folders and kind != "tree":
                what = "a symbolic link" if mode == "120000" else "not a folder"
                raise FatalError(f"{path} is {what} on the index branch; ftops does not "
                                 "follow links in outputs-index/ (it could point outside "
                                 "it): replace it with a real folder, or remove it")

    def _entry_texts(self, folders: list[tuple[str, str]], files: list[str]
                     ) -> tuple[dict[str, str], dict[str, str | None]]:
        """(the committed entry texts of these dataset/model folders at the tip, {index
        key: text}; the text of these files of outputs-index/, None for none), read in
        one round trip; FatalError naming an entry git cannot read as UTF-8 text."""
        listing = self._listing([*(f"{INDEX_DIR}/{d}/{m}/" for d, m in folders),
                                 *(f"{INDEX_DIR}/{rel}" for rel in files)])
        oids = {path: oid for path, (_, kind, oid) in listing.items()
                if kind == "blob" and path.endswith(index.ENTRY_SUFFIX)
                and path.count("/") == 3}
        wanted = {f"{INDEX_DIR}/{rel}": rel for rel in files}
        others = {wanted[path]: oid for path, (_, kind, oid) in listing.items()
                  if kind == "blob" and path in wanted}
        data = self._cat_fetched(sorted({*oids.values(), *others.values()}))
        out = {}
        for path, oid in oids.items():
            try:
                out[path[len(INDEX_DIR) + 1 :]] = data[oid].decode("utf-8")
            except (KeyError, UnicodeDecodeError) as exc:
                raise FatalError(f"{path}: cannot read index entry from the index "
                                 f"branch ({type(exc).__name__})") from exc
        texts: dict[str, str | None] = dict.fromkeys(files)
        for rel, oid in others.items():
            if oid in data:
                texts[rel] = data[oid].decode("utf-8", "replace")
        return out, texts

    def _committed(self, paths: list[str]) -> dict[str, str | None]:
        """The text of these files at the tip (None: no such file), read from git."""
        if not paths:
            return {}
        listing = self._git(["--literal-pathspecs", "ls-tree", "-z", self.tip, "--", *paths])
        oids = _blobs(listing)
        texts = self._texts(list(oids.values()))
        return {p: texts.get(oids[p]) if p in oids else None for p in paths}

    def _texts(self, oids: list[str]) -> dict[str, str]:
        """The text of these blobs (see `_cat_fetched`); a blob git cannot read is left
        out."""
        return {oid: data.decode("utf-8", "replace")
                for oid, data in self._cat_fetched(oids).items()}

    def _cat_fetched(self, oids: list[str]) -> dict[str, bytes]:
        """The content of these blobs, those a partial clone lacks fetched in one round
        trip (what git's own lazy fetch runs, for all of them at once); a blob git
        cannot read is left out."""
        if oids and self.partial:
            self._git(["-c", "fetch.negotiationAlgorithm=noop", "fetch", "--quiet",
                       "--no-tags", "--no-write-fetch-head", "--recurse-submodules=no",
                       "--filter=blob:none", "--stdin", "origin"],
                      input="".join(f"{oid}\n" for oid in oids))
        return self._cat(oids) if oids else {}

    def _cat(self, oids: list[str]) -> dict[str, bytes]:
        """The content of these objects (an object git cannot read is left out)."""
        raw = self._git_bytes(["cat-file", "--batch"],
                              input="".join(f"{o}\n" for o in oids).encode())
        return {oid: obj[1] for oid, obj in zip(oids, batch_objects(raw, len(oids)),
                                                 strict=True) if obj is not None}

    def _boards(self) -> Boards:
        """The leaderboards at the tip, read from git (`render.browse.leaderboard`)."""
        # Layer exception (record -> browse): the READMEs regenerated in the same
        # commit rank runs by these leaderboards, and browse knows where they are named.
        from render.browse.leaderboard import (
            DATASET_FILE,
            EXPERIMENTS_DIR,
            PROFILE_FILE,
            parse_boards,
        )

        # one listing; the files are read again only when one of them changed
        listing = self._git(["ls-tree", "-r", "-z", self.tip, "--", f"{EXPERIMENTS_DIR}/",
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
        self.tip = self._git(["rev-parse", "--verify", "--quiet",
                              f"refs/remotes/origin/{self.branch}^{{commit}}"]).strip()
        staged = self._read_staged()
        # every folder an entry may be merged into is read (one round trip): merging
        # into one that is not would not see the entry it holds
        # Layer exception (record -> browse): the generated files a landing reads first
        from render.browse.runlog import RUNS_CSV

        # Layer exception (record -> browse): (the same) the summary it works from
        from render.browse.summary import SUMMARY_NAME

        at = _AtTip(self)
        folders = {(r.dataset, r.model) for r in
                   [*records, *(r for s in staged for r in s.records)]}
        # with them, what regenerating their files reads first (render.browse.update)
        at.prefetch(sorted(folders), [SUMMARY_NAME, *sorted({f"{d}/{RUNS_CSV}"
                                                              for d, _ in folders})])
        ours_staged = any(s.ref == self.staged_ref for s in staged)
        refused = list(self.refused)
        quarantined: list[str] = []

        changed: dict[str, RunRecord] = {}  # index key -> record now in the entry
        refspecs: list[str] = []  # staged refs deleted (landed) or moved (quarantined)
        for s in staged:
            if s.ref == self.staged_ref:
                refspecs.append(f":{s.ref}")  # ours are merged below, with our own rule
                continue
            landable, problems = self._check_staged(at, s)
            if problems is None:
                continue  # not ours to judge: left for its publisher or for reconcile
            for r in landable:
                if at.merge(r, replace_equal=s.replace_equal):
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
                problem = self._check_claim(at, r, source, replace_equal)
                if problem is not None:
                    refused.append(f"{source}: not landed: {problem}")
                    continue
            if at.merge(r, replace_equal=replace_equal):
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
        # folders affect are regenerated from their entries and the summary, and the
        # commit is built from the tip's objects with what changed (nothing is checked
        # out); where the summary cannot say, every file is regenerated from every entry
        # in a full checkout. Whatever order publishers land in, the tree ends up as
        # write_readme of all entries.
        msg = _message(sorted(changed.values(), key=lambda r: r.index_key), subject)
        sha = (self._commit_update(at, {(r.dataset, r.model) for r in changed.values()}, msg)
               or self._commit_full(at, msg))
        self._git(["push", "--quiet", "--atomic", "--porcelain", "origin",
                   f"{sha}:refs/heads/{self.branch}", *refspecs])  # fmt: skip
        if self.staged_ref and not ours_staged:  # a concurrent publisher landed ours
            landed.update(dict.fromkeys(r.run_id for r in records))
        published = tuple(landed)
        rest = tuple(dict.fromkeys(r.run_id for r in records if r.run_id not in landed))
        return PublishResult(published, rest, sha, self.failures + 1, swept, tuple(refused),
                             tuple(quarantined))

    def _commit_update(self, at: _AtTip, folders: set[tuple[str, str]], message: str
                       ) -> str | None:
        """The commit of the merged entries and the generated files they change,
        worked out from the summary (`render.browse.update`); None where the summary
        cannot say."""
        # Layer exception (record -> browse): the READMEs that map the entries are part
        # of the same commit, and browse draws them.
        from render.browse.sync import is_generated

        # Layer exception (record -> browse): (the same) what a change regenerates
        from render.browse.update import NeedsFull, updated_files

        try:
            files, scope = updated_files(Path(INDEX_DIR), folders, self._boards(), at)
        except NeedsFull:
            return None
        changes: dict[str, bytes | None] = {
            f"{INDEX_DIR}/{key}": text.encode() for key, text in at.merged.items()}
        have = self._listing([f"{INDEX_DIR}/{folder}" for folder in scope])
        for rel, text in files.items():
            data = text.encode()
            path = f"{INDEX_DIR}/{rel}"
            mode, kind, oid = have.get(path, ("", "", ""))
            if (mode, kind) != ("100644", "blob") or oid != _blob_id(data, len(oid)):
                changes[path] = data
        for path, (_, kind, _) in have.items():
            rel = path[len(INDEX_DIR) + 1 :]
            folder, _, name = rel.rpartition("/")
            if kind != "tree" and rel not in files and is_generated(
                    folder + "/" if folder else "", name):
                changes[path] = None  # a generated file no entry produces any more
        self._no_links(set(changes))
        return self._fast_import(changes, message)

    def _commit_full(self, at: _AtTip, message: str) -> str:
        """The commit of the merged entries and every generated file regenerated from
        every entry, in a checkout of all of outputs-index/."""
        # Layer exception (record -> browse): (as in `_commit_update`) browse draws them
        from render.browse.sync import write_readme

        self._checkout_all()
        root = self.clone / INDEX_DIR
        for key, text in at.merged.items():
            path = confined(self.clone, root / key, f"{INDEX_DIR}/")
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, text.encode("utf-8"))
        write_readme(root, self._boards())
        self._git(["add", "--all", "--", INDEX_DIR])
        self._git(["commit", "--quiet", "--no-verify", "-m", message])
        return self._git(["rev-parse", "HEAD"]).strip()

    def _fast_import(self, changes: dict[str, bytes | None], message: str) -> str:
        """A commit on the tip that writes (bytes) or deletes (None) these paths,
        built by `git fast-import` from the tip's trees: no checkout, no index."""
        name, email = self.author
        if any(c in f"{name}{email}" for c in "<>\n\0"):
            raise FatalError(f"invalid commit author {name!r} <{email!r}>")
        when = f"{int(time.time())} +0000"
        msg = message.encode()
        out = [b"commit " + _LANDING.encode() + b"\n",
               f"author {name} <{email}> {when}\n".encode(),
               f"committer {name} <{email}> {when}\n".encode(),
               b"data %d\n" % len(msg), msg, b"\n",
               f"from {self.tip}\n".encode()]
        for path, data in sorted(changes.items()):
            if data is None:
                out.append(b"D " + _quoted(path) + b"\n")
            else:
                out += [b"M 100644 inline " + _quoted(path) + b"\n",
                        b"data %d\n" % len(data), data, b"\n"]
        out.append(b"done\n")
        # its pack is kept as it is (not unpacked into loose objects) and deflated at
        # level 1: the push sends it on, and runs.csv and the summary are megabytes
        self._git_bytes(["-c", "fastimport.unpackLimit=0", "-c", "pack.compression=1",
                         "fast-import", "--quiet", "--done", "--force"], input=b"".join(out))
        return self._git(["rev-parse", "--verify", _LANDING]).strip()

    def _check_claim(self, at: _AtTip, record: RunRecord, source: str | None,
                     replace_equal: bool) -> str | None:
        """Why a claim may not land (None: it may, or it would change nothing)."""
        try:
            entry = at.entry(record)
        except FatalError as exc:
            return str(exc)
        if index.merge_records(entry, record, replace_equal=replace_equal) is entry:
            return None  # nothing would change
        if self.verify is None:
            return "no verifier"
        return self.verify(record, entry, source)

    def _check_staged(self, at: _AtTip, s: _Staged) -> tuple[list[RunRecord], list[str] | None]:
        """(records of another publisher's staged set that may land, problems); problems
        None when this publisher leaves the set alone: it cannot verify it, or (not
        reconciling) something in it does not verify."""
        if self.verify is None:
            return [], None
        problems = [f"record {p}" for p in s.invalid]
        landable = []
        for r in s.records:
            problem = self._check_claim(at, r, None, s.replace_equal)
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
_LANDING = "refs/ftops/landing"  # the scratch clone's ref of the commit it builds


class _AtTip:
    """The index at the fetched tip as a `render.browse.update.Tree`, read from the
    scratch clone's git objects (entries and generated files of the folders needed
    only), with the entry texts this landing merged laid over it."""

    def __init__(self, session: _Session) -> None:
        self.session = session
        self.merged: dict[str, str] = {}  # index key -> the entry text this landing writes
        self.committed: dict[tuple[str, str], dict[str, str]] = {}  # folder -> key -> text
        self.texts: dict[str, str | None] = {}  # generated files read (relative paths)

    def prefetch(self, folders: list[tuple[str, str]], files: Sequence[str] = ()) -> None:
        """Read the committed entries of these folders, and these generated files
        (for `text`), in one round trip."""
        todo = sorted({f for f in folders if f not in self.committed})
        more = [rel for rel in dict.fromkeys(files) if rel not in self.texts]
        if not todo and not more:
            return
        texts, generated = self.session._entry_texts(todo, more)
        self.texts.update(generated)
        for folder in todo:
            self.committed[folder] = {}
        for key, text in texts.items():
            d, m, _ = key.split("/", 2)
            self.committed.setdefault((d, m), {})[key] = text

    def entry_text(self, key: str) -> str | None:
        if key in self.merged:
            return self.merged[key]
        d, m, _ = key.split("/", 2)
        self.prefetch([(d, m)])
        return self.committed[(d, m)].get(key)

    def entry(self, record: RunRecord) -> RunRecord | None:
        """The entry the index holds for `record`'s run (None: none yet)."""
        index.check_key(record)
        text = self.entry_text(record.index_key)
        if text is None:
            return None
        return index.parse_entry(text, f"{INDEX_DIR}/{record.index_key}")

    def merge(self, record: RunRecord, *, replace_equal: bool) -> bool:
        """Merge `record` into its entry with the lifecycle rule (`index.merge_entry`,
        in memory); whether the entry's text changed."""
        existing = self.entry(record)
        winner = index.merge_records(existing, record, replace_equal=replace_equal)
        text = winner.to_json()
        if existing is not None and self.entry_text(record.index_key) == text:
            return False
        self.merged[record.index_key] = text
        return True

    # -- render.browse.update.Tree ------------------------------------------------

    def text(self, rel: str) -> str | None:
        if rel not in self.texts:
            self.prefetch([], [rel])
        return self.texts[rel]

    def load(self, dataset: str, model: str) -> list[RunRecord]:
        self.prefetch([(dataset, model)])
        texts = dict(self.committed[(dataset, model)])
        texts.update({k: t for k, t in self.merged.items()
                      if k.startswith(f"{dataset}/{model}/")})
        return index.entries_of(texts)

    def read(self, rels: list[str]) -> dict[str, str]:
        out = {rel: self.merged[rel] for rel in rels if rel in self.merged}
        rest = [rel for rel in rels if rel not in out]
        texts = self.session._committed([f"{INDEX_DIR}/{rel}" for rel in rest])
        missing = [rel for rel in rest if texts.get(f"{INDEX_DIR}/{rel}") is None]
        if missing:
            raise FatalError(f"{INDEX_DIR}/{missing[0]}: listed in the summary but not "
                             "committed; regenerate the index with `ftops index readme`")
        out.update({rel: texts[f"{INDEX_DIR}/{rel}"] or "" for rel in rest})
        return out


def _blob_id(data: bytes, width: int = 40) -> str:
    """The id git gives a blob of these bytes: SHA-1, or SHA-256 for 64-digit ids."""
    algo = hashlib.sha256 if width == 64 else hashlib.sha1
    return algo(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _quoted(path: str) -> bytes:
    """A path as `git fast-import` reads it (C-style quoted when it must be)."""
    if not any(c in path for c in '"\\\n') and not path.startswith(" "):
        return path.encode()
    return ('"' + path.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            + '"').encode()


def _listed(listing: str) -> dict[str, tuple[str, str, str]]:
    """path -> (mode, type, object id), from `git ls-tree -z` output."""
    out: dict[str, tuple[str, str, str]] = {}
    for item in listing.split("\0"):
        meta, _, path = item.partition("\t")
        parts = meta.split(" ")
        if len(parts) == 3 and path:
            out[path] = (parts[0], parts[1], parts[2])
    return out


def _blobs(listing: str) -> dict[str, str]:
    """path -> blob id, from `git ls-tree -z` output."""
    return {path: oid for path, (_, kind, oid) in _listed(listing).items() if kind == "blob"}


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
