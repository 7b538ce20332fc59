"""Which records may land in outputs-index/ on someone else's word.

A publisher's own records are trusted: it holds the credentials that push the index
branch (the launcher's `launched` entry, the hook's final record, a cancellation). Every
other record is a *claim*: a record another publisher staged on
`refs/ftops/pending/*` (anyone who can push a ref can push one) or a `run.json` found in
artifact storage (anything that can write the bucket can write one). A claim lands only
when it matches a run its launcher created:

1. the index branch already holds an entry for the run (its `launched` entry, written
   by `ftops apply --record` or `ftops launch --local` when the run started);
2. the claim's identity (`runrecord.IDENTITY_FIELDS` and the mode) equals that entry's;
3. the claim is the run's own `run.json`: read from the entry's artifacts location, or
   equal to the file there (the hook writes it before it publishes).

`StorageVerifier` checks the three; `Verify` is its type, passed to
`render.record.publish` (which supplies the branch's entry). A claim that fails is never
landed: reconcile moves a staged set that holds one to `refs/ftops/quarantine/*` and
names it. What this cannot stop: a writer of the run's own artifacts folder (the run's
pods) rewriting its `run.json` before the hook publishes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from render.record.runrecord import IDENTITY_FIELDS, RunRecord

RUN_JSON = "run.json"

# (claim, the branch's entry for its run or None, where a stored claim was read or None
# for a staged one) -> why it may not land, or None
Verify = Callable[[RunRecord, RunRecord | None, str | None], str | None]


@dataclass(frozen=True)
class StoredRecord:
    """A run.json read from artifact storage, and where it was read."""

    record: RunRecord
    uri: str  # e.g. gs://bucket/experiments/d/m/e/<run>/run.json


def identity_mismatch(record: RunRecord, entry: RunRecord) -> list[str]:
    """The identity fields in which `record` differs from the index `entry`."""
    names = [*IDENTITY_FIELDS, "mode"]
    return [n for n in names if getattr(record, n) != getattr(entry, n)]


def run_json_uri(entry: RunRecord) -> str:
    return f"{entry.artifacts_uri.rstrip('/')}/{RUN_JSON}"


class StorageVerifier:
    """`Verify` against the index entry and the run's artifacts in storage (read with
    `render.record.storage.open_storage`, once per location)."""

    def __init__(self) -> None:
        self._read: dict[str, str | None] = {}

    def __call__(self, record: RunRecord, entry: RunRecord | None,
                 found_at: str | None) -> str | None:
        if entry is None:
            return (f"the index holds no entry for run {record.run_id}: only a run its "
                    "launcher recorded (`launched`) lands this way")
        differ = identity_mismatch(record, entry)
        if differ:
            return (f"its {', '.join(differ)} differ{'s' if len(differ) == 1 else ''} from "
                    f"the index entry of run {record.run_id}")
        if record.status == "launched":
            return "a `launched` record lands only from its launcher"
        expected = run_json_uri(entry)
        if found_at is not None:
            if found_at != expected:
                return f"it was read at {found_at}, not at the run's artifacts ({expected})"
            return None
        text = self._stored(entry)
        if text is None:
            return f"the run has no readable {expected}"
        try:
            stored = RunRecord.from_json(text)
        except (ValueError, TypeError):
            return f"{expected} does not hold a run record"
        if stored.to_json() != record.to_json():
            return f"it differs from the run's own {expected}"
        return None

    def _stored(self, entry: RunRecord) -> str | None:
        uri = entry.artifacts_uri
        if uri not in self._read:
            from render.record.storage import open_storage

            try:
                self._read[uri] = open_storage(uri).read_text(RUN_JSON)
            except Exception:  # noqa: BLE001 - storage trouble means "cannot verify"
                self._read[uri] = None
        return self._read[uri]
