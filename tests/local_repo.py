"""A throwaway clone of this repository's experiment tree as a real git repo, with a
bare remote for the index, and the demo model made once per test session."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

GIT_ENV = {
    "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    out = subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True,
                         text=True)
    return out.stdout


def make_repo(root: Path, demo_assets: Path) -> tuple[Path, Path]:
    """(work tree, bare remote) with k8s-base, experiments and an empty index."""
    repo = root / "repo"
    shutil.copytree(REPO / "k8s-base", repo / "k8s-base")
    shutil.copytree(REPO / "experiments", repo / "experiments")
    (repo / "outputs-index").mkdir()
    from render.browse.readme import render_index

    # an empty index (the map and the run log), whatever the working tree's holds
    for name, text in render_index([]).items():
        (repo / "outputs-index" / name).write_text(text)
    (repo / ".gitignore").write_text("/outputs/\n/.demo/\n/.rendered/\n")
    (repo / ".demo").symlink_to(demo_assets, target_is_directory=True)
    git(root, "init", "-q", "-b", "main", str(repo))
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "seed")
    remote = root / "remote.git"
    git(root, "init", "-q", "--bare", "-b", "main", str(remote))
    git(repo, "push", "-q", str(remote), "main")
    return repo, remote
