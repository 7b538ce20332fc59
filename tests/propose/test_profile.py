"""The cluster profile: its `index` section (where pods publish records) and
`ftops pin-image` (how the image workflow proposes a digest)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from render.cli import main
from render.errors import FatalError
from render.propose.profile import PROFILE_PATH, load_profile, pin_default_image

REPO = Path(__file__).resolve().parents[2]
DIGEST = "us-docker.pkg.dev/my-project/llm/llamafactory@sha256:" + "0123456789abcdef" * 4


@pytest.fixture
def root(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "k8s-base", tmp_path / "k8s-base")
    return tmp_path


def test_shipped_profile_names_the_index_remote_and_token_secret() -> None:
    p = load_profile(REPO)
    assert p.index_remote.startswith("https://") and p.index_branch == "main"
    assert p.index_token_secret == "ftops-index-token/token"


def test_pin_image_rewrites_only_the_default_image_line(
        root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = root / PROFILE_PATH
    before = path.read_text().splitlines()
    assert main(["--repo", str(root), "pin-image", DIGEST]) == 0
    assert "set to" in capsys.readouterr().out
    after = path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [(next(x for x in before if x.startswith("default_image:")),
                        f"default_image: {DIGEST}")]
    assert load_profile(root).default_image == DIGEST
    assert main(["--repo", str(root), "pin-image", DIGEST]) == 0
    assert "already" in capsys.readouterr().out


def test_pin_image_refuses_an_image_outside_the_allowed_repositories(root: Path) -> None:
    before = (root / PROFILE_PATH).read_bytes()
    other = "docker.io/someone/llamafactory@sha256:" + "0" * 64
    with pytest.raises(FatalError, match="limits.allowed_images"):
        pin_default_image(root, other)
    assert (root / PROFILE_PATH).read_bytes() == before


@pytest.mark.parametrize("bad", [
    "us-docker.pkg.dev/p/llm/llamafactory:0.9.5",  # a tag
    DIGEST + "\nnamespace: evil",  # YAML structure
    DIGEST.replace("@sha256:", "@sha256:x"),
    "image@sha256:" + "0" * 64 + " # comment",
])
def test_pin_image_refuses_anything_but_a_digest_reference(root: Path, bad: str) -> None:
    before = (root / PROFILE_PATH).read_bytes()
    with pytest.raises(FatalError, match="not an image pinned by digest"):
        pin_default_image(root, bad)
    assert (root / PROFILE_PATH).read_bytes() == before


@pytest.mark.parametrize(("index", "message"), [
    ("index:\n  remote: https://x-access-token:ghp_abc@github.com/o/r.git\n", "credentials"),
    ("index:\n  remote: https://github.com/o/r.git\n  token_secret: no-key\n", "<secret name>"),
    ("index: [1, 2]\n", "index must be a mapping"),
    ("index:\n  remote: \"https://github.com/o/r.git\\n--upload-pack=x\"\n",
     "not a git remote URL"),
    ("index:\n  remote: ext::sh -c touch% /tmp/pwned\n", "not a git remote URL"),
    ("index:\n  remote: https://github.com/o/r.git\n  branch: ../../x\n", "not a branch name"),
    ("index:\n  remote: https://github.com/o/r.git\n  token_secret: Bad_Name/token\n",
     "<secret name>"),
])
def test_index_section_errors_name_the_field(root: Path, index: str, message: str) -> None:
    path = root / PROFILE_PATH
    text = path.read_text()
    start = text.index("index:\n")
    end = text.index("leaderboard:")
    path.write_text(text[:start] + index + text[end:])
    with pytest.raises(FatalError, match=message) as info:
        load_profile(root)
    assert "ghp_abc" not in str(info.value)


def _pod_env(root: Path) -> dict[str, Any]:
    from render.manifests import jobset
    from render.manifests.runspec import RunSpec
    from render.propose.experiment import Workspace

    shutil.copytree(REPO / "experiments", root / "experiments", dirs_exist_ok=True)
    exp, _ = Workspace(root).load(root / "experiments/demo/tiny-llama/sft_lora_v1.yaml")
    assert exp is not None
    doc = jobset.build(RunSpec(exp, "1" * 40), "none")
    pod = doc["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in pod["containers"][0]["env"]}


def test_pods_get_the_index_remote_and_the_token_only_by_reference(root: Path) -> None:
    env = _pod_env(root)
    assert env["FTOPS_INDEX_REMOTE"] == load_profile(root).index_remote
    assert env["FTOPS_INDEX_TOKEN"] == {"secretKeyRef": {
        "name": "ftops-index-token", "key": "token", "optional": True}}
    assert env["FTOPS_RESTART_ATTEMPT"] == {"fieldRef": {
        "fieldPath": "metadata.labels['jobset.sigs.k8s.io/restart-attempt']"}}


def test_without_an_index_section_pods_get_no_index_environment(root: Path) -> None:
    path = root / PROFILE_PATH
    text = path.read_text()
    path.write_text(text[:text.index("index:\n")] + text[text.index("leaderboard:"):])
    p = load_profile(root)
    assert (p.index_remote, p.index_token_secret) == ("", "")
    assert not {k for k in _pod_env(root) if k.startswith("FTOPS_INDEX")}
