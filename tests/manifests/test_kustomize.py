"""Group chunks (how Kustomize builds the runs ftops does not build itself): every run
in exactly one chunk, none over CHUNK, sizes even (so the Kustomize processes that build
them take about as long each); a failed build is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
from lint_harness import make_workspace

from render.cli import main
from render.manifests.kustomize import CHUNK, chunks


@pytest.mark.parametrize("n", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 1, 905, 1000, 1001])
def test_chunks_cover_every_run_once_evenly(n: int) -> None:
    parts = chunks(n)
    assert [i for part in parts for i in part] == list(range(n))
    sizes = [len(part) for part in parts]
    assert all(0 < s <= CHUNK for s in sizes)
    assert len(parts) == -(-n // CHUNK)  # no more processes than needed
    assert not sizes or max(sizes) - min(sizes) <= 1


def test_a_kustomize_failure_is_a_clear_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A k8s-base component Kustomize refuses stops the render with Kustomize's own
    message, once, and no traceback (the other chunks' builds are waited for)."""
    root = make_workspace(tmp_path)
    common = root / "k8s-base" / "components" / "jobset-common" / "kustomization.yaml"
    common.write_text(common.read_text().replace("path: /spec/replicatedJobs/0/template",
                                                 "path: /spec/noSuchField/0/template", 1))
    assert main(["--repo", str(root), "render", "--out", str(root / ".rendered")]) == 1
    err = capsys.readouterr().err
    assert "kustomize build failed" in err and "noSuchField" in err
    assert "Traceback" not in err
    # ftops's own try said why it handed the runs to Kustomize, briefly (jsonpatch's
    # message quotes the whole object)
    notes = [line for line in err.splitlines() if line.startswith("ftops render: note")]
    assert notes and "a patch does not apply to JobSet" in notes[0]
    assert all(len(line) < 400 for line in notes)
