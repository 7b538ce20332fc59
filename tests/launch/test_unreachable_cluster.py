"""A cluster that cannot be reached is one line, never a urllib3 traceback, and `cancel`
checks the run id before it connects. Real sockets: a port nothing listens on, a name
that does not resolve; no cluster needed."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from lint_harness import make_workspace

from render.cli import main

LORA = "experiments/alpaca_en/llama-3.1-8b/sft_lora_r8_lr1e-4_v1.yaml"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when this returns


def kubeconfig(tmp_path: Path, server: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- cluster: {{server: "{server}"}}
  name: x
contexts:
- context: {{cluster: x, user: u}}
  name: x
current-context: x
users:
- name: u
  user: {{token: abc}}
""")
    return path


SERVERS = {
    "connection refused": lambda: f"https://127.0.0.1:{closed_port()}",
    "name does not resolve": lambda: "https://no-such-host.invalid:6443",
}


@pytest.mark.parametrize("why", list(SERVERS))
@pytest.mark.parametrize("command", [["status"], ["apply", LORA, "--dry-run"],
                                     ["cancel", "0123456789"]],
                         ids=["status", "apply", "cancel"])
def test_an_unreachable_cluster_is_one_line(tmp_path: Path, why: str, command: list[str],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    root = make_workspace(tmp_path)
    server = SERVERS[why]()
    start = time.monotonic()
    code = main(["--repo", str(root), *command, "--kubeconfig",
                 str(kubeconfig(tmp_path, server))])
    took = time.monotonic() - start
    out = capsys.readouterr()
    assert code == 1
    (line,) = out.err.strip().splitlines()
    assert line.startswith(f"ftops: error: cannot reach the Kubernetes API server at {server}")
    assert "Traceback" not in out.err and "Retrying" not in out.err
    assert len(line) < 400 and took < 60


@pytest.mark.parametrize("bad", ["not-a-run", "0123456789a", "ABCDEF0123", "",
                                 "x\n::error title=t::owned", "../../x", "0123456789\n"])
def test_cancel_checks_the_run_id_before_it_connects(tmp_path: Path, bad: str,
                                                     capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    root = make_workspace(tmp_path)
    server = f"https://127.0.0.1:{closed_port()}"  # never contacted
    code = main(["--repo", str(root), "cancel", bad, "--kubeconfig",
                 str(kubeconfig(tmp_path, server))])
    err = capsys.readouterr().err
    assert code == 1
    (line,) = err.strip().splitlines()
    assert "is not a run id" in line and "cannot reach" not in line
    assert not line.startswith("::")
