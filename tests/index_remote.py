"""A real git remote for the index (a bare repository) and records to publish to it:
the helpers of tests/record (publish, reconcile, trust). `launch()` plays the launcher
(each run's `launched` entry on main) and the hook (its run.json in file storage)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from run_records import make_record

from render.browse.readme import render_readme
from render.record.publish import publish
from render.record.runrecord import IDENTITY_FIELDS, Metrics, RunRecord
from render.record.trust import StoredRecord

FAST = {"base_delay": 0.01, "max_delay": 0.05}


def git(*args: str, cwd: Path | None = None) -> str:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(cwd or Path.cwd()),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "LC_ALL": "C",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    ).stdout


def make_remote(tmp_path: Path) -> Path:
    """A bare remote whose main holds an empty index README and one experiment file."""
    bare = tmp_path / "remote.git"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    seed = tmp_path / "seed"
    git("init", "--quiet", "--initial-branch=main", str(seed))
    (seed / "outputs-index").mkdir()
    (seed / "outputs-index/README.md").write_text(render_readme([]))
    (seed / "experiments/alpaca/llama-3.1-8b").mkdir(parents=True)
    (seed / "experiments/alpaca/llama-3.1-8b/sft.yaml").write_text("learning_rate: 1e-4\n")
    git("add", "-A", cwd=seed)
    git("commit", "--quiet", "-m", "seed", cwd=seed)
    git("push", "--quiet", str(bare), "main", cwd=seed)
    return bare


def show(bare: Path, path: str, ref: str = "main") -> str:
    return git("--git-dir", str(bare), "show", f"{ref}:{path}")


def generated(bare: Path) -> dict[str, str]:
    """Every generated (non-entry) file under outputs-index/ on main, by path relative
    to outputs-index/."""
    out = git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main", "outputs-index")
    paths = [p for p in out.splitlines() if not p.endswith(".json")]
    return {p[len("outputs-index/") :]: show(bare, p) for p in paths}


def entries(bare: Path) -> list[str]:
    out = git("--git-dir", str(bare), "ls-tree", "-r", "--name-only", "main", "outputs-index")
    return [p for p in out.splitlines() if p.endswith(".json")]


def rec(run_id: str = "r1", **kw: Any) -> RunRecord:
    kw.setdefault("metrics", Metrics(final_train_loss=1.0, eval_loss=1.1))
    kw.setdefault("experiment", "sft")
    return make_record(run_id, **kw)


def launched(r: RunRecord) -> RunRecord:
    """The launcher's entry for the run `r` is a record of."""
    return RunRecord(**{f: getattr(r, f) for f in (*IDENTITY_FIELDS, "mode")},
                     status="launched")


def launch(remote: Path, store: Path, runs: list[RunRecord]) -> list[RunRecord]:
    """Record each run's start on main (the launcher) and keep its final record as
    run.json in file storage under `store` (the hook); returns the final records, with
    their artifacts URI set."""
    out = []
    for r in runs:
        folder = store / "experiments" / r.dataset / r.model / r.experiment / r.run_id
        folder.mkdir(parents=True, exist_ok=True)
        r = RunRecord.from_dict({**json.loads(r.to_json()), "artifacts_uri": folder.as_uri()})
        (folder / "run.json").write_text(r.to_json())
        out.append(r)
    publish([launched(r) for r in out], remote=remote.as_uri())
    return out


def stored(records: list[RunRecord]) -> list[StoredRecord]:
    return [StoredRecord(r, f"{r.artifacts_uri}/run.json") for r in records
            if Path(urlparse(r.artifacts_uri).path, "run.json").is_file()]
