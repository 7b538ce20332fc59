"""Fixtures for the import/export tests: LLaMA-Factory's own Board functions in a child
process (`lf_board_oracle.py`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent


class Oracle:
    """Asks LLaMA-Factory 0.9.5 itself (Runner._parse_train_args, _clean_cmd)."""

    def __init__(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if k not in ("USE_MCA", "ALLOW_EXTRA_ARGS", "USE_RAY", "USE_KT", "USE_V1")}
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "lf_board_oracle.py")], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
        first = self._read()
        assert first.get("ready"), first

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "the LLaMA-Factory oracle process died"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def parse(self, state: dict[str, Any], model_path: str, output_dir: str) -> dict[str, Any]:
        return self.ask({"op": "parse", "state": state, "model_path": model_path,
                         "output_dir": output_dir})

    def clean(self, args: dict[str, Any]) -> dict[str, Any]:
        answer = self.ask({"op": "clean", "args": args})
        result: dict[str, Any] = answer["args"]
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # torch's threads may keep it alive
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="session")
def lf_oracle() -> Iterator[Oracle]:
    oracle = Oracle()
    yield oracle
    oracle.close()
