"""Where a run record goes: one decision (`IndexDestination.resolve`), one way to deliver
(`IndexDestination.deliver`).

A record goes to the git remote that holds `outputs-index/` when one is named (an
argument, or `FTOPS_INDEX_REMOTE`: the launch and index workflows, the training pods), to
the local `outputs-index/` folder of a checkout otherwise (a laptop, the demo), or
nowhere (it then stays in storage as run.json, for `ftops index reconcile`). Landing on a
remote is `render.record.publish`; landing in a folder merges entries with the lifecycle
rule (`render.record.index`) and regenerates the READMEs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from render.record.index import INDEX_DIR, merge_entry
from render.record.runrecord import RunRecord

INDEX_REMOTE_ENV = "FTOPS_INDEX_REMOTE"
INDEX_BRANCH_ENV = "FTOPS_INDEX_BRANCH"
DEFAULT_BRANCH = "main"


@dataclass(frozen=True)
class Delivery:
    delivered: tuple[str, ...]  # run ids whose entries changed (or were landed)
    ok: bool  # False: an index was named but not reached; the records stay in storage
    message: str


@dataclass(frozen=True)
class IndexDestination:
    root: Path | None = None  # a local outputs-index/ folder
    remote: str | None = None  # a git remote holding outputs-index/
    branch: str = DEFAULT_BRANCH

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

    def deliver(self, records: Sequence[RunRecord], *, reconcile: bool = False,
                kept_at: str = "") -> Delivery:
        """Land `records` here. `reconcile`: an entry at the same status is kept (the
        index wins; only missing or later records land) and, on a remote, records left
        staged by unfinished publishes land too. A remote that cannot be reached is not
        an exception: the Delivery says so (`ok` False), naming `kept_at` as where the
        record waits for reconcile."""
        if self.remote:
            from render.record import publish as publishing

            try:
                if reconcile:
                    landed = tuple(publishing.reconcile(list(records), remote=self.remote,
                                                         branch=self.branch))
                else:
                    landed = publishing.publish(list(records), remote=self.remote,
                                                branch=self.branch).published
            except publishing.PublishError as exc:
                where = f"; {kept_at} is kept for `ftops index reconcile`" if kept_at else ""
                return Delivery((), False, f"not published ({exc}){where}")
            return Delivery(landed, True,
                            f"published to {publishing.redact(self.remote)} ({self.branch})")
        if self.root is not None:
            changed = tuple(r.run_id for r in records
                            if merge_entry(self.root, r, replace_equal=not reconcile)[1])
            # Layer exception (record -> browse): an entry written here must leave the
            # READMEs that map it current, and browse draws them.
            from render.browse.sync import write_readme

            write_readme(self.root)
            return Delivery(changed, True, f"recorded in {self.root}")
        # nowhere to go is no failure: the record waits in storage for reconcile
        return Delivery((), True, "no index configured"
                        + (f"; the record is kept at {kept_at}" if kept_at else ""))
