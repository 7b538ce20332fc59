"""Where a run record goes: one decision (`IndexDestination.resolve`), one way to deliver
(`IndexDestination.deliver`).

A record goes to the git remote that holds `outputs-index/` when one is named (an
argument, or `FTOPS_INDEX_REMOTE`: the launch and index workflows, the training pods), to
the local `outputs-index/` folder of a checkout otherwise (a laptop, the demo), or
nowhere (it then stays in storage as run.json, for `ftops index reconcile`). Landing on a
remote is `render.record.publish`; landing in a folder merges entries with the lifecycle
rule (`render.record.index`) and regenerates the READMEs. Records the caller did not make
(stored run.json files, other publishers' staged records) land only when a verifier from
`render.record.trust` accepts them, in a folder as on a remote.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from render.errors import FatalError
from render.record.index import INDEX_DIR, merge_entry, merge_records, read_entry
from render.record.runrecord import RunRecord
from render.record.trust import StoredRecord, Verify

INDEX_REMOTE_ENV = "FTOPS_INDEX_REMOTE"
INDEX_BRANCH_ENV = "FTOPS_INDEX_BRANCH"
DEFAULT_BRANCH = "main"


@dataclass(frozen=True)
class Delivery:
    delivered: tuple[str, ...]  # run ids whose entries changed (or were landed)
    ok: bool  # False: an index was named but not reached; the records stay in storage
    message: str
    refused: tuple[str, ...] = ()  # records that may not land, each with why


@dataclass(frozen=True)
class IndexDestination:
    root: Path | None = None  # a local outputs-index/ folder
    remote: str | None = None  # a git remote holding outputs-index/
    branch: str = DEFAULT_BRANCH
    # the repository whose experiments/*/dataset.yaml and profile name the leaderboards
    # of a local index outside it (the demo's .demo/outputs-index/); default: root's parent
    repo: Path | None = None

    @classmethod
    def resolve(cls, *, remote: str | None = None, branch: str | None = None,
                checkout: Path | None = None,
                env: Mapping[str, str] = os.environ) -> IndexDestination:
        """The remote named by `remote` or $FTOPS_INDEX_REMOTE, else the `outputs-index/`
        of `checkout` (a repository root), else nowhere."""
        remote = remote or env.get(INDEX_REMOTE_ENV) or None
        branch = branch or env.get(INDEX_BRANCH_ENV) or DEFAULT_BRANCH
        if remote:
            return cls(remote=remote, branch=branch)
        if checkout is not None:
            return cls(root=checkout / INDEX_DIR)
        return cls()

    def deliver(self, records: Sequence[RunRecord], *, kept_at: str = "",
                verify: Verify | None = None) -> Delivery:
        """Land the caller's own `records` here (trusted: the caller holds the index's
        credentials). On a remote, records other publishers left staged land too when
        `verify` accepts them (`render.record.trust`). A remote that cannot be reached is
        not an exception: the Delivery says so (`ok` False), naming `kept_at` as where
        the record waits for reconcile."""
        if self.remote:
            from render.record import publish as publishing

            try:
                landed = publishing.publish(list(records), remote=self.remote,
                                            branch=self.branch, verify=verify).published
            except publishing.PublishError as exc:
                where = f"; {kept_at} is kept for `ftops index reconcile`" if kept_at else ""
                return Delivery((), False, f"not published ({exc}){where}")
            return Delivery(landed, True,
                            f"published to {publishing.redact(self.remote)} ({self.branch})")
        if self.root is not None:
            changed = tuple(r.run_id for r in records if merge_entry(self.root, r)[1])
            self._regenerate()
            return Delivery(changed, True, f"recorded in {self.root}")
        # nowhere to go is no failure: the record waits in storage for reconcile
        return Delivery((), True, "no index configured"
                        + (f"; the record is kept at {kept_at}" if kept_at else ""))

    def reconcile(self, stored: Sequence[StoredRecord], verify: Verify) -> Delivery:
        """Land every stored record the index lacks or holds at an earlier status, when
        `verify` accepts it (a run its launcher recorded, read from its own artifacts);
        on a remote, also the records left staged by publishes that did not finish.
        A record that is refused stays where it is and is named in `refused`."""
        if self.remote:
            from render.record import publish as publishing

            try:
                result = publishing.reconcile(list(stored), remote=self.remote,
                                              branch=self.branch, verify=verify)
            except publishing.PublishError as exc:
                return Delivery((), False, f"not published ({exc})")
            return Delivery(result.published, True,
                            f"published to {publishing.redact(self.remote)} ({self.branch})",
                            result.refused + result.quarantined)
        if self.root is None:
            return Delivery((), False, "no index configured")
        landed: list[str] = []
        refused: list[str] = []
        for item in stored:
            r = item.record
            path = self.root / r.index_key
            try:
                entry = read_entry(path, self.root) if path.is_file() else None
            except FatalError as exc:
                refused.append(f"{item.uri}: {exc}")
                continue
            if merge_records(entry, r, replace_equal=False) is entry:
                continue
            problem = verify(r, entry, item.uri)
            if problem is not None:
                refused.append(f"{item.uri}: not landed: {problem}")
                continue
            if merge_entry(self.root, r, replace_equal=False)[1]:
                landed.append(r.run_id)
        self._regenerate()
        return Delivery(tuple(landed), True, f"recorded in {self.root}", tuple(refused))

    def _regenerate(self) -> None:
        # Layer exception (record -> browse): an entry written here must leave the
        # READMEs that map it current, and browse draws them.
        from render.browse.sync import write_readme

        assert self.root is not None
        if self.repo is None:
            write_readme(self.root)
        else:
            # Layer exception (record -> browse): the same regeneration, with the
            # leaderboards of the repository this index belongs to.
            from render.browse.leaderboard import load_boards

            write_readme(self.root, load_boards(self.repo))
