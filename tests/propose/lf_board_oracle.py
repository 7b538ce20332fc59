"""A child process that answers with LLaMA-Factory's own Board functions.

Reads one JSON request per line on stdin, writes one JSON answer per line on stdout:
  {"op": "parse", "state": {...}, "model_path": "...", "output_dir": "..."}
      -> {"args": Runner._parse_train_args(state)} or {"error": "<exception type>"}
  {"op": "clean", "args": {...}} -> {"args": webui.common._clean_cmd(args)}
The real functions run unchanged; the only stand-in is the element lookup (the Manager
maps Gradio components to ids; here the ids are the keys themselves). It runs in a
scratch folder (the Board reads llamaboard_cache/user_config.yaml from its working
folder) and in its own process (importing llamafactory configures logging and torch).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile


class _IdManager:
    """The Board's Manager without Gradio: an element is its id."""

    def get_elem_by_id(self, elem_id: str) -> str:
        return elem_id


def main() -> None:
    # answers go to the real stdout; LLaMA-Factory logs to stdout, so that becomes stderr
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    os.chdir(tempfile.mkdtemp(prefix="lf-oracle-"))
    from llamafactory.webui.common import _clean_cmd
    from llamafactory.webui.runner import Runner

    runner = Runner(_IdManager())  # type: ignore[arg-type]
    print(json.dumps({"ready": True}), file=answers, flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["op"] == "parse":
                data = dict(req["state"])
                data["top.model_path"] = req["model_path"]
                data["train.output_dir"] = req["output_dir"]
                data["top.lang"] = "en"
                answer = {"args": runner._parse_train_args(data)}
            else:
                answer = {"args": _clean_cmd(req["args"])}
        except Exception as exc:  # noqa: BLE001 - reported to the test
            answer = {"error": type(exc).__name__, "message": str(exc)[:200]}
        print(json.dumps(answer, default=str), file=answers, flush=True)


if __name__ == "__main__":
    main()
