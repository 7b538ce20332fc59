"""Group chunks: every run in exactly one chunk, none over CHUNK, sizes even (so the
Kustomize processes that build them take about as long each)."""

from __future__ import annotations

import pytest

from render.manifests.kustomize import CHUNK, chunks


@pytest.mark.parametrize("n", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 1, 905, 1000, 1001])
def test_chunks_cover_every_run_once_evenly(n: int) -> None:
    parts = chunks(n)
    assert [i for part in parts for i in part] == list(range(n))
    sizes = [len(part) for part in parts]
    assert all(0 < s <= CHUNK for s in sizes)
    assert len(parts) == -(-n // CHUNK)  # no more processes than needed
    assert not sizes or max(sizes) - min(sizes) <= 1
