"""Checks of .github/workflows: actionlint, zizmor, our own rules, the ftops commands the
workflows call, and the sticky PR comment (`ftops pr-comment`) against a real local
HTTP server standing in for the GitHub REST API."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from render.errors import FatalError
from render.manifests import comment as github
from render.manifests.plan import MARKER

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
WORKFLOW_FILES = sorted(WORKFLOWS.glob("*.yml"))

# ---------------------------------------------------------------------------------------
# Our own rules, as plain YAML checks
# ---------------------------------------------------------------------------------------

SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?P<rest>.*)$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*\s*$")
# What a `run:` line may start with. Everything a workflow does is one of our own
# commands; the shell is only wiring.
ALLOWED_COMMANDS = (
    re.compile(r"^ftops(\s|$)"),                      # the CLI
    re.compile(r"^bash scripts/[\w.-]+\.sh(\s|$)"),   # our scripts
    re.compile(r"^\.venv/bin/[\w.-]+(\s|$)"),         # tools from setup.sh's venv
    re.compile(r"^(python3? -m )?pip install\s"),     # installing ftops
    re.compile(r"^xargs(\s+--?[\w-]+(=\S+)?)*\s+ftops\s"),  # a list of paths to ftops
)
SHELL_CONTROL = re.compile(r"[;&|`]|\$\(")  # chaining or command substitution
# Steps that may run something else, each with the reason.
RUN_EXCEPTIONS = {
    ("launch.yml", "Kubeconfig from the KUBECONFIG_B64 secret"):
        "writes a secret to ~/.kube/config (the documented alternative to OIDC)",
}


def _triggers(doc: dict[Any, Any]) -> Any:
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True
    return doc.get("on", doc.get(True))


def _trigger_names(on: Any) -> set[str]:
    if isinstance(on, str):
        return {on}
    if isinstance(on, list):
        return {str(t) for t in on}
    if isinstance(on, dict):
        return {str(t) for t in on}
    return set()


def _command_lines(script: str) -> list[str]:
    """The commands of a run: script, continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in script.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending.strip())
    return lines


def check_workflow(path: Path) -> list[str]:
    """Problems with one workflow file under our rules (empty when it passes)."""
    name = path.name
    text = path.read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    problems: list[str] = []
    if not isinstance(doc, dict):
        return [f"{name}: not a mapping"]
    if "permissions" not in doc:
        problems.append(f"{name}: no top-level permissions (use `permissions: {{}}`)")
    if "pull_request_target" in _trigger_names(_triggers(doc)):
        problems.append(f"{name}: pull_request_target runs untrusted code with secrets")
    for job_id, job in (doc.get("jobs") or {}).items():
        where = f"{name}: job {job_id}"
        if not isinstance(job, dict):
            problems.append(f"{where}: not a mapping")
            continue
        if "permissions" not in job:
            problems.append(f"{where}: no permissions")
        uses = job.get("uses")
        if isinstance(uses, str) and not uses.startswith("./") and not SHA_PIN.match(uses):
            problems.append(f"{where}: reusable workflow {uses} not pinned to a commit SHA")
        for i, step in enumerate(job.get("steps") or []):
            label = f"{where} step {step.get('name') or i + 1}"
            ref = step.get("uses")
            if isinstance(ref, str):
                if ref.startswith("docker://"):
                    if "@sha256:" not in ref:
                        problems.append(f"{label}: {ref} not pinned to a digest")
                elif not ref.startswith("./") and not SHA_PIN.match(ref):
                    problems.append(f"{label}: {ref} not pinned to a 40-hex commit SHA")
                if ref.split("@")[0] == "actions/checkout":
                    persist = (step.get("with") or {}).get("persist-credentials")
                    if persist not in (False, "false"):
                        problems.append(f"{label}: checkout without persist-credentials: false")
            script = step.get("run")
            if isinstance(script, str):
                if "${{" in script:
                    problems.append(f"{label}: `${{{{ }}}}` inside run: pass values via env: "
                                    "(github.event.*, head refs and titles are untrusted)")
                if (name, step.get("name")) in RUN_EXCEPTIONS:
                    continue
                for line in _command_lines(script):
                    if not any(p.match(line) for p in ALLOWED_COMMANDS):
                        problems.append(f"{label}: runs {line.split()[0]!r}; only ftops, "
                                        "bash scripts/, .venv/bin/ and pip are allowed")
                    elif SHELL_CONTROL.search(line):
                        problems.append(f"{label}: shell chaining or substitution in {line!r}")
    for lineno, line in enumerate(text.splitlines(), 1):
        m = USES_LINE.match(line)
        if m and SHA_PIN.match(m["ref"]) and not VERSION_COMMENT.search(m["rest"]):
            problems.append(f"{name}:{lineno}: pinned action without a `# vX.Y.Z` comment")
    return problems


def test_there_are_workflows() -> None:
    assert {p.name for p in WORKFLOW_FILES} >= {"pr.yml", "launch.yml", "index.yml", "ci.yml"}


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_workflow_follows_our_rules(path: Path) -> None:
    assert check_workflow(path) == []


def _load(name: str) -> dict[Any, Any]:
    return dict(yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8")))


def _run_lines(doc: dict[Any, Any]) -> list[str]:
    return [line for job in (doc.get("jobs") or {}).values()
            for step in job.get("steps") or [] for line in _command_lines(step.get("run") or "")]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_every_install_is_pinned_by_the_constraints(path: Path) -> None:
    """Workflows that hold credentials (a write token, cloud or cluster access) install
    exactly the known-good set: pip with -c scripts/constraints.txt, or setup.sh (which
    uses it)."""
    for line in _run_lines(yaml.safe_load(path.read_text(encoding="utf-8"))):
        if "pip install" in line:
            assert "-c scripts/constraints.txt" in line, f"{path.name}: {line}"
    assert "-c scripts/constraints.txt" in (ROOT / "scripts/setup.sh").read_text()


def test_cluster_and_index_jobs_run_in_an_environment() -> None:
    assert _load("launch.yml")["jobs"]["launch"]["environment"] == "cluster"
    assert _load("index.yml")["jobs"]["reconcile"]["environment"] == "index"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # the Workload Identity provider accepts this repository's main branch only
    assert ("--attribute-condition=\"assertion.repository == 'my-org/my-repo' && "
            "assertion.ref == 'refs/heads/main'\"") in readme


def test_the_plan_runs_for_index_and_k8s_base_changes() -> None:
    doc = _load("pr.yml")
    paths = _triggers(doc)["pull_request"]["paths"]
    assert {"outputs-index/**", "k8s-base/**", "experiments/**"} <= set(paths)
    steps = {s["name"]: s for s in doc["jobs"]["plan"]["steps"]}
    lint = steps["Lint all experiments against the base branch's index"]
    assert lint["run"] == 'ftops lint --index-ref "$BASE_SHA"'
    plan = steps["Plan against the base"]
    assert "if" not in plan and "--base \"$BASE_SHA\"" in plan["run"]


def test_path_lists_travel_nul_delimited() -> None:
    for path in WORKFLOW_FILES:
        text = path.read_text(encoding="utf-8")
        assert "--delimiter" not in text, path.name
        for line in _run_lines(yaml.safe_load(text)):
            words = shlex.split(line.split(">")[0])
            if words[0] == "xargs":
                assert "--null" in words or "-0" in words, f"{path.name}: {line}"
            if words[:2] == ["ftops", "changes"]:
                assert "--null" in words, f"{path.name}: {line}"


BAD_WORKFLOW = """\
name: bad
on:
  pull_request_target:
jobs:
  build:
    runs-on: ubuntu-latest
    needs: [no-such-job]
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@a26af69be951a213d495a4c3e4e4022e16d87065
      - run: echo "${{ github.event.pull_request.title }}"
      - run: |
          ftops lint
          curl -sSL https://example.com/install.sh | sh
      - run: ftops render && rm -rf /
"""


@pytest.fixture()
def bad_workflow(tmp_path: Path) -> Path:
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    path = folder / "bad.yml"
    path.write_text(BAD_WORKFLOW, encoding="utf-8")
    return path


def test_bad_workflow_fails_our_rules(bad_workflow: Path) -> None:
    problems = "\n".join(check_workflow(bad_workflow))
    for expected in ("no top-level permissions", "pull_request_target", "job build: no permissions",
                     "actions/checkout@v4 not pinned", "without persist-credentials",
                     "inside run", "runs 'echo'", "runs 'curl'", "shell chaining",
                     "without a `# vX.Y.Z` comment"):
        assert expected in problems, f"{expected!r} not reported:\n{problems}"


def test_allowed_commands() -> None:
    ok = ["ftops lint", "bash scripts/setup.sh --dev", ".venv/bin/pytest -q",
          "python -m pip install -e .", "pip install -e .",
          "xargs --null --no-run-if-empty --arg-file=changed.nul ftops render",
          'ftops changes --base "$A" --head "$B" > changed.txt']
    bad = ["echo hi", "curl x", "xargs rm", "python -c 'import os'", "bash -c 'x'",
           "ftopsx lint", "sh scripts/x.sh"]
    for line in ok:
        assert any(p.match(line) for p in ALLOWED_COMMANDS), line
        assert not SHELL_CONTROL.search(line), line
    for line in bad:
        assert not any(p.match(line) for p in ALLOWED_COMMANDS), line


# ---------------------------------------------------------------------------------------
# actionlint (built from the Go module proxy on first use, then cached) and zizmor
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def actionlint() -> str:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "build_actionlint.sh")],
                          capture_output=True, text=True, check=False, timeout=1200)
    assert proc.returncode == 0, f"building actionlint failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


def _run_actionlint(binary: str, files: list[Path], cwd: Path) -> subprocess.CompletedProcess[str]:
    # shellcheck and pyflakes run on run: scripts when they are on PATH (as on GitHub's
    # runners); without them actionlint still checks everything else.
    return subprocess.run([binary, "-no-color", *map(str, files)], cwd=cwd,
                          capture_output=True, text=True, check=False, timeout=300)


@pytest.mark.timeout(1500)
def test_actionlint_passes(actionlint: str) -> None:
    proc = _run_actionlint(actionlint, WORKFLOW_FILES, ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.timeout(1500)
def test_actionlint_rejects_a_bad_workflow(actionlint: str, bad_workflow: Path) -> None:
    proc = _run_actionlint(actionlint, [bad_workflow], bad_workflow.parents[2])
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "potentially untrusted" in proc.stdout
    assert "no-such-job" in proc.stdout


def _zizmor() -> str:
    found = Path(sys.executable).parent / "zizmor"
    if found.exists():
        return str(found)
    which = shutil.which("zizmor")
    assert which, "zizmor is not installed: pip install -e '.[dev]'"
    return which


def _run_zizmor(target: Path) -> tuple[int, list[dict[str, Any]], str]:
    proc = subprocess.run(
        [_zizmor(), "--offline", "--no-progress", "--color", "never", "--format", "json",
         str(target)], capture_output=True, text=True, check=False, timeout=300)
    try:
        findings = json.loads(proc.stdout or "[]")
    except ValueError:
        findings = []
    return proc.returncode, findings, proc.stdout + proc.stderr


def test_zizmor_finds_nothing() -> None:
    code, findings, output = _run_zizmor(WORKFLOWS)
    assert findings == [] and code == 0, output


def test_zizmor_flags_a_bad_workflow(bad_workflow: Path) -> None:
    code, findings, output = _run_zizmor(bad_workflow.parent)
    idents = {f.get("ident") for f in findings}
    assert code != 0, output
    assert {"dangerous-triggers", "template-injection", "unpinned-uses"} <= idents, idents


# ---------------------------------------------------------------------------------------
# The ftops commands the workflows call exist and take those arguments
# ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    from render.cli import build_parser

    return build_parser()


def _ftops_invocations() -> Iterator[tuple[str, list[str]]]:
    for path in WORKFLOW_FILES:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for job in (doc.get("jobs") or {}).values():
            for step in job.get("steps") or []:
                for line in _command_lines(step.get("run") or ""):
                    words = shlex.split(line.split(">")[0])
                    if "ftops" in words:
                        yield path.name, words[words.index("ftops") + 1:]


def test_workflows_call_real_ftops_commands() -> None:
    calls = list(_ftops_invocations())
    assert {c[1][0] for c in calls} >= {"changes", "lint", "render", "plan", "pr-comment",
                                        "apply", "index"}
    parser = _parser()
    for workflow, argv in calls:
        argv = [("x" if a.startswith("$") else a) for a in argv]
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"{workflow}: `ftops {' '.join(argv)}` does not parse")


# ---------------------------------------------------------------------------------------
# The sticky PR comment against a local stand-in for the GitHub REST API
# ---------------------------------------------------------------------------------------

TOKEN = "ghs_test-token-never-printed"
OWNER_REPO = "acme/llm"
PR = 7
BOT = "github-actions[bot]"
PAGE = 2  # the server's page size, so three comments already paginate


class FakeGitHub:
    def __init__(self) -> None:
        self.comments: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.read_only = False
        self.next_id = 100
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.api = f"http://127.0.0.1:{self.server.server_address[1]}"

    def add(self, body: str, login: str = "someone") -> dict[str, Any]:
        self.next_id += 1
        comment = {"id": self.next_id, "body": body, "user": {"login": login},
                   "html_url": f"https://github.com/{OWNER_REPO}/pull/{PR}"
                               f"#issuecomment-{self.next_id}"}
        self.comments.append(comment)
        return comment

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None
                      ) -> None:
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _authorized(self) -> bool:
                fake.requests.append((self.command, self.path))
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    self._send(401, {"message": "Bad credentials"})
                    return False
                return True

            def _body(self) -> dict[str, Any]:
                length = int(self.headers.get("Content-Length") or 0)
                return dict(json.loads(self.rfile.read(length)))

            def do_GET(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                url = urlsplit(self.path)
                if url.path != f"/repos/{OWNER_REPO}/issues/{PR}/comments":
                    self._send(404, {"message": "Not Found"})
                    return
                page = int(parse_qs(url.query).get("page", ["1"])[0])
                items = fake.comments[(page - 1) * PAGE: page * PAGE]
                headers = {}
                if page * PAGE < len(fake.comments):
                    nxt = f"{fake.api}{url.path}?per_page=100&page={page + 1}"
                    headers["Link"] = f'<{nxt}>; rel="next", <{nxt}>; rel="last"'
                self._send(200, items, headers)

            def do_POST(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                if self.path != f"/repos/{OWNER_REPO}/issues/{PR}/comments":
                    self._send(404, {"message": "Not Found"})
                    return
                if fake.read_only:
                    self._send(403, {"message": "Resource not accessible by integration"})
                    return
                self._send(201, fake.add(self._body()["body"], BOT))

            def do_PATCH(self) -> None:  # noqa: N802
                if not self._authorized():
                    return
                m = re.fullmatch(rf"/repos/{OWNER_REPO}/issues/comments/(\d+)", self.path)
                found = [c for c in fake.comments if m and c["id"] == int(m.group(1))]
                if not found:
                    self._send(404, {"message": "Not Found"})
                    return
                if fake.read_only:
                    self._send(403, {"message": "Resource not accessible by integration"})
                    return
                found[0]["body"] = self._body()["body"]
                self._send(200, found[0])

        return Handler


@pytest.fixture()
def fake_github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()
        thread.join(timeout=5)


def _plans(fake: FakeGitHub) -> list[dict[str, Any]]:
    return [c for c in fake.comments if c["body"].startswith(MARKER)]


def test_upsert_creates_then_updates_the_same_comment(fake_github: FakeGitHub) -> None:
    for i in range(3):  # two pages of other comments before ours
        fake_github.add(f"looks good {i}")
    url = github.upsert_comment(OWNER_REPO, PR, f"{MARKER}\nplan one\n", TOKEN, fake_github.api)
    assert len(fake_github.comments) == 4
    (plan,) = _plans(fake_github)
    assert url == plan["html_url"] and "plan one" in plan["body"]
    assert [m for m, _ in fake_github.requests] == ["GET", "GET", "POST"]

    fake_github.add("one more review comment")  # ours is now on page 2 of 3
    fake_github.requests.clear()
    url2 = github.upsert_comment(OWNER_REPO, PR, f"{MARKER}\nplan two\n", TOKEN,
                                 fake_github.api)
    assert url2 == url
    assert len(fake_github.comments) == 5  # no duplicate
    (plan,) = _plans(fake_github)
    assert "plan two" in plan["body"]
    assert [m for m, _ in fake_github.requests] == ["GET", "GET", "PATCH"]


def test_marker_comment_by_someone_else_is_left_alone(fake_github: FakeGitHub) -> None:
    planted = fake_github.add(f"{MARKER}\nnothing will run, merge away", login="mallory")
    github.upsert_comment(OWNER_REPO, PR, f"{MARKER}\nthe real plan\n", TOKEN, fake_github.api)
    assert planted["body"].endswith("merge away")
    assert [c["user"]["login"] for c in _plans(fake_github)] == ["mallory", BOT]


def test_body_gets_the_marker_and_is_cut_to_githubs_limit(fake_github: FakeGitHub) -> None:
    github.upsert_comment(OWNER_REPO, PR, "x" * 70000, TOKEN, fake_github.api)
    (plan,) = _plans(fake_github)
    assert len(plan["body"]) <= github.MAX_BODY
    assert plan["body"].endswith(github.TRUNCATED)


def test_bad_token_is_an_error_that_does_not_show_it(fake_github: FakeGitHub) -> None:
    with pytest.raises(FatalError, match="HTTP 401 Bad credentials") as info:
        github.upsert_comment(OWNER_REPO, PR, "plan", "wrong-token", fake_github.api)
    assert "wrong-token" not in str(info.value)


def _cli(argv: list[str]) -> argparse.Namespace:
    return _parser().parse_args(argv)


@pytest.fixture()
def actions_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                fake_github: FakeGitHub) -> Path:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": PR}}), encoding="utf-8")
    summary = tmp_path / "summary.md"
    summary.write_text("", encoding="utf-8")
    monkeypatch.setenv("GITHUB_REPOSITORY", OWNER_REPO)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    monkeypatch.setenv("GITHUB_API_URL", fake_github.api)
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    (tmp_path / "plan.md").write_text(f"{MARKER}\n## ftops plan\n", encoding="utf-8")
    return tmp_path


def test_cli_posts_and_writes_the_summary(
        actions_env: Path, fake_github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    args = _cli(["pr-comment", "--file", str(actions_env / "plan.md"), "--step-summary"])
    assert args.func(args) == 0
    out = capsys.readouterr()
    (plan,) = _plans(fake_github)
    assert out.out.strip() == plan["html_url"]
    assert "## ftops plan" in (actions_env / "summary.md").read_text(encoding="utf-8")
    assert TOKEN not in out.out + out.err


def test_cli_read_only_token_warns_and_exits_0(
        actions_env: Path, fake_github: FakeGitHub, capsys: pytest.CaptureFixture[str]) -> None:
    fake_github.read_only = True  # a pull request from a fork
    args = _cli(["pr-comment", "--file", str(actions_env / "plan.md"), "--step-summary"])
    assert args.func(args) == 0
    out = capsys.readouterr()
    assert "warning" in out.err and "HTTP 403" in out.err
    assert TOKEN not in out.out + out.err
    assert _plans(fake_github) == []
    assert "## ftops plan" in (actions_env / "summary.md").read_text(encoding="utf-8")


def test_cli_needs_the_token_from_the_environment(
        actions_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    args = _cli(["pr-comment", "--file", str(actions_env / "plan.md")])
    with pytest.raises(FatalError, match="GITHUB_TOKEN is not set"):
        args.func(args)
    with pytest.raises(SystemExit):
        _cli(["pr-comment", "--file", "plan.md", "--token", TOKEN])  # no such option


def test_cli_pr_number_from_flag_or_event(
        actions_env: Path, fake_github: FakeGitHub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_EVENT_PATH")
    args = _cli(["pr-comment", "--file", str(actions_env / "plan.md")])
    with pytest.raises(FatalError, match="no PR number"):
        args.func(args)
    args = _cli(["pr-comment", "--file", str(actions_env / "plan.md"), "--pr", str(PR)])
    assert args.func(args) == 0
    assert len(_plans(fake_github)) == 1


# ---------------------------------------------------------------------------------------
# The image workflow's base image: scripts/base_image.sh
# ---------------------------------------------------------------------------------------

DIGEST = "sha256:" + "ab" * 32


def _base_image(tmp_path: Path, dockerfile_base: str, docker_out: str | None
                ) -> subprocess.CompletedProcess[str]:
    """scripts/base_image.sh in a copy of the repository's files it reads. Docker Hub is
    out of reach here, so `docker` is a stand-in script printing what `docker buildx
    imagetools inspect` prints (its documented text output), or absent (None)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "base_image.sh", tmp_path / "scripts")
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    text = re.sub(r"^ARG BASE_IMAGE=.*$", f"ARG BASE_IMAGE={dockerfile_base}", text, flags=re.M)
    (tmp_path / "Dockerfile").write_text(text, encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sed", "awk", "dirname", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    if docker_out is not None:
        (bin_dir / "docker").write_text(f"#!/bin/sh\ncat <<'OUT'\n{docker_out}\nOUT\n")
        (bin_dir / "docker").chmod(0o755)
    env = {"PATH": str(bin_dir), "GITHUB_OUTPUT": str(tmp_path / "out.txt")}
    return subprocess.run([shutil.which("bash") or "/bin/bash",
                           str(tmp_path / "scripts" / "base_image.sh")],
                          capture_output=True, text=True, env=env)


def test_base_image_pinned_in_the_dockerfile_is_used_as_is(tmp_path: Path) -> None:
    pinned = f"docker.io/hiyouga/llamafactory:0.9.5@{DIGEST}"
    proc = _base_image(tmp_path, pinned, None)  # no docker: nothing to look up
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == pinned
    assert (tmp_path / "out.txt").read_text() == f"image={pinned}\n"


def test_base_image_tag_is_resolved_to_one_digest(tmp_path: Path) -> None:
    listing = (f"Name:      docker.io/hiyouga/llamafactory:0.9.5\n"
               f"MediaType: application/vnd.oci.image.index.v1+json\nDigest:    {DIGEST}\n\n"
               f"Manifests:\n  Name:      docker.io/hiyouga/llamafactory:0.9.5@sha256:"
               f"{'cd' * 32}\n  MediaType: application/vnd.oci.image.manifest.v1+json\n"
               "  Platform:  linux/amd64\n")
    proc = _base_image(tmp_path, "docker.io/hiyouga/llamafactory:0.9.5", listing)
    assert proc.returncode == 0, proc.stderr
    want = f"docker.io/hiyouga/llamafactory:0.9.5@{DIGEST}"
    assert proc.stdout.strip() == want
    assert (tmp_path / "out.txt").read_text() == f"image={want}\n"


def test_base_image_that_cannot_be_resolved_fails_the_build(tmp_path: Path) -> None:
    proc = _base_image(tmp_path, "docker.io/hiyouga/llamafactory:0.9.5",
                       "ERROR: docker.io/hiyouga/llamafactory:0.9.5: not found")
    assert proc.returncode == 1
    assert "could not resolve the digest of docker.io/hiyouga/llamafactory:0.9.5" in proc.stderr
    assert not (tmp_path / "out.txt").exists()
