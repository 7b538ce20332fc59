"""What a change to some dataset/model folders of `outputs-index/` does to its generated
files, worked out from those folders and the summary (`render.browse.summary`) rather
than from every entry: the publisher's step (`render.record.publish`; on disk,
`render.browse.sync.update_readme`).

`updated_files` renders each changed folder's README and SVGs; the other model READMEs
of its dataset only when the dataset's best run changed (every model README names it);
each changed dataset's leaderboard (its best runs read from their entries) and runs.csv
(an untouched folder's rows are kept as they are: the summary says where they are;
every folder of the dataset is rendered when the file's evaluation columns change or it
is not the one the summary describes); the map README and the summary itself. Every
file is what a full regeneration from all entries (`write_readme`) gives, byte for
byte; where the summary cannot say, it raises `NeedsFull` and the caller regenerates
everything: no summary or not one this version writes, or a leaderboard changed since
it was written.

Everything is read through a `Tree`, and entries outside the changed folders only where
needed: `OnDisk` reads a full tree, the publisher's reads git objects
(`render.record.publish`).
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import Protocol

from render.browse.leaderboard import Boards
from render.browse.readme import README_NAME, Renderer, render_top, summarize
from render.browse.runlog import RUNS_CSV
from render.browse.summary import (
    SUMMARY_NAME,
    Folder,
    RunRef,
    board_of,
    dataset_top,
    dumps,
    folder_of,
    loads,
    with_csv_chars,
)
from render.errors import FatalError
from render.record.index import load_folder, parse_entry
from render.record.runrecord import RunRecord


class Tree(Protocol):
    """Where the index's committed files come from: a folder on disk (`OnDisk`) or the
    publisher's git objects (`render.record.publish`)."""

    def text(self, rel: str) -> str | None:
        """The text of a generated file ("summary.jsonl", "<dataset>/runs.csv"); None
        when there is none or it cannot be read."""

    def load(self, dataset: str, model: str) -> list[RunRecord]:
        """The entries of one dataset/model folder (none when it is absent); FatalError
        naming the file for a corrupt one."""

    def read(self, rels: list[str]) -> dict[str, str]:
        """The text of these entry files ("<dataset>/<model>/<name>.json")."""


class NeedsFull(Exception):
    """The summary cannot say what changed: regenerate everything (the reason)."""


class OnDisk:
    """A `Tree` that is all on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def text(self, rel: str) -> str | None:
        try:
            with open(self.root / rel, encoding="utf-8", newline="") as fh:
                return fh.read()
        except (OSError, UnicodeDecodeError):
            return None

    def load(self, dataset: str, model: str) -> list[RunRecord]:
        return load_folder(self.root, dataset, model)

    def read(self, rels: list[str]) -> dict[str, str]:
        out = {}
        for rel in rels:
            try:
                with open(self.root / rel, encoding="utf-8") as fh:
                    out[rel] = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                raise FatalError(f"{self.root.name}/{rel}: cannot read index entry: "
                                 f"{exc}") from exc
        return out


def updated_files(root: Path, changed: Iterable[tuple[str, str]], boards: Boards,
                  tree: Tree) -> tuple[dict[str, str], list[str]]:
    """(every generated file that `changed` folders' entries affect: {path: text}, the
    folders whose generated files were all rendered: "" for the top files, "<dataset>/"
    for a dataset's own, "<dataset>/<model>/"). Raises NeedsFull."""
    before = {f.key: f for f in _summary(tree)}
    for f in before.values():
        if f.board != board_of(boards.of(f.dataset)):
            raise NeedsFull(f"the leaderboard of {f.dataset} changed since the summary")
    renderer = Renderer(boards)
    runlog = renderer.runlog
    after = dict(before)
    loaded: dict[tuple[str, str], list[RunRecord]] = {}
    files: dict[str, str] = {}
    scope = [""]

    def load(keys: list[tuple[str, str]]) -> None:
        for d, m in keys:
            if (d, m) not in loaded:
                loaded[(d, m)] = tree.load(d, m)

    def render(dataset: str, models: list[str], dbest: RunRecord | None,
               rendered: set[tuple[str, str]]) -> None:
        """The README and SVGs of these folders of `dataset` (those with runs), their
        rows kept in `runlog`."""
        for m in models:
            if loaded[(dataset, m)] and (dataset, m) not in rendered:
                after[(dataset, m)] = renderer.model(dataset, loaded[(dataset, m)], dbest,
                                                     files)
                rendered.add((dataset, m))

    for dataset, group in groupby(sorted(set(changed)), key=itemgetter(0)):
        board = boards.of(dataset)
        models = [m for _, m in group]
        old = {k: f for k, f in before.items() if k[0] == dataset}
        best_before = dataset_top(list(old.values()), 1)
        load([(dataset, m) for m in models])
        for m in models:
            runs = loaded[(dataset, m)]
            if not runs:  # no entries left (deleted by hand): nothing to generate
                after.pop((dataset, m), None)
                continue
            s = summarize(dataset, runs, board)
            after[(dataset, m)] = folder_of(dataset, m, runs, board, s.ranked,
                                            s.models[0].latest)
        folders = [f for k, f in sorted(after.items()) if k[0] == dataset]
        if dataset_top(folders, 1) != best_before:  # every model README names the best
            models = [f.model for f in folders]
        load([(dataset, m) for m in models])
        scope += [f"{dataset}/{m}/" for m in models]  # a folder left empty included
        shown = _records(root, dataset_top(folders), loaded, tree)
        dbest = shown[0][1] if shown else None
        rendered: set[tuple[str, str]] = set()
        render(dataset, models, dbest, rendered)
        folders = [f for k, f in sorted(after.items()) if k[0] == dataset]
        scope.append(f"{dataset}/")
        if not folders:
            continue
        renderer.leaderboard(dataset, board, sum(f.runs for f in folders),
                             [f.model for f in folders], sum(f.ranked for f in folders),
                             shown, files)
        # runs.csv: the rows of the folders rendered, the others' rows kept as they are
        # unless the file cannot be split by the summary or its columns change (every
        # row is then laid out anew, from every folder of the dataset)
        keys = [f.key for f in folders]
        columns = runlog.folder_columns()
        evals = _columns([f if f.key not in rendered else
                          with_csv_chars(f, 0, columns[f.key]) for f in folders])
        kept = (_blocks(tree.text(f"{dataset}/{RUNS_CSV}"), runlog.header(evals), old)
                if evals == _columns(old.values()) else None)
        if kept is None:
            load(keys)
            scope += [f"{d}/{m}/" for d, m in keys if (d, m) not in rendered]
            render(dataset, [m for _, m in keys], dbest, rendered)
            columns = runlog.folder_columns()
            evals = runlog.columns(keys)
            kept = {}
        blocks = runlog.blocks(evals, [k for k in keys if k in rendered])
        for k in blocks:
            after[k] = with_csv_chars(after[k], len(blocks[k]), columns[k])
        files[f"{dataset}/{RUNS_CSV}"] = runlog.header(evals) + "".join(
            blocks[k] if k in rendered else kept[k] for k in keys)
        runlog.forget(blocks)

    summary = list(after.values())
    files.update({README_NAME: render_top(summary), SUMMARY_NAME: dumps(summary)})
    return files, scope


def _summary(tree: Tree) -> list[Folder]:
    text = tree.text(SUMMARY_NAME)
    if text is None:
        raise NeedsFull(f"no {SUMMARY_NAME}")
    try:
        return loads(text)
    except (ValueError, RecursionError) as exc:  # whatever it holds: never a crash
        raise NeedsFull(f"{SUMMARY_NAME}: {exc}") from exc


def _columns(folders: Iterable[Folder]) -> list[str]:
    return sorted({c for f in folders for c in f.eval_columns})


def _blocks(text: str | None, header: str, folders: dict[tuple[str, str], Folder]
            ) -> dict[tuple[str, str], str] | None:
    """Each folder's rows in the runs.csv `text` of a dataset that the summary
    describes (`folders`: the dataset's); None when the text is not that file."""
    if text is None or not text.startswith(header):
        return None
    out = {}
    pos = len(header)
    for key in sorted(folders):
        end = pos + folders[key].csv_chars
        out[key] = text[pos:end]
        pos = end
    return out if pos == len(text) else None


def _records(root: Path, top: list[tuple[float, RunRef]],
             loaded: dict[tuple[str, str], list[RunRecord]], tree: Tree
             ) -> list[tuple[float, RunRecord]]:
    """The records of a dataset's best runs (value, summary RunRef), from the folders
    loaded or else from their committed entries."""
    by_key = {r.index_key: r for runs in loaded.values() for r in runs}
    keys = [ref.index_key for _, ref in top]
    texts = tree.read([k for k in keys if k not in by_key])
    for k, text in texts.items():
        by_key[k] = parse_entry(text, f"{root.name}/{k}")
    return [(v, by_key[k]) for (v, _), k in zip(top, keys, strict=True)]
