"""What Kueue can ever admit, read from ClusterQueue/LocalQueue manifests (quotas.py)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from render.errors import FatalError
from render.propose.quotas import KUEUE_DIR, load_quotas, quantity

QUEUES = """\
apiVersion: kueue.x-k8s.io/v1beta1
kind: LocalQueue
metadata: {name: research, namespace: ns}
spec: {clusterQueue: team-a}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: LocalQueue
metadata: {name: lending, namespace: ns}
spec: {clusterQueue: team-c}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: team-a}
spec:
  cohort: shared
  resourceGroups:
    - coveredResources: [cpu, memory, nvidia.com/gpu]
      flavors:
        - name: h100
          resources:
            - {name: cpu, nominalQuota: 400}
            - {name: memory, nominalQuota: 3600Gi}
            - {name: nvidia.com/gpu, nominalQuota: 16, borrowingLimit: 8}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: team-b}
spec:
  cohort: shared
  resourceGroups:
    - coveredResources: [cpu, memory, nvidia.com/gpu]
      flavors:
        - name: h100
          resources:
            - {name: cpu, nominalQuota: 400}
            - {name: memory, nominalQuota: 3600Gi}
            - {name: nvidia.com/gpu, nominalQuota: 32}
---
apiVersion: kueue.x-k8s.io/v1beta1
kind: ClusterQueue
metadata: {name: team-c}
spec:
  cohort: shared
  resourceGroups:
    - coveredResources: [cpu, memory]
      flavors:
        - name: h100
          resources:
            - {name: cpu, nominalQuota: "100"}
            - {name: memory, nominalQuota: 100Gi}
"""
POD = {"cpu": "180", "memory": "1620Gi", "nvidia.com/gpu": "8"}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / KUEUE_DIR).mkdir(parents=True)
    (tmp_path / KUEUE_DIR / "queues.yaml").write_text(QUEUES)
    return tmp_path


def test_quantities() -> None:
    assert quantity("500m") == Fraction(1, 2)
    assert quantity("3600Gi") == 3600 * 2**30
    assert quantity("1e3") == 1000 and quantity(16) == 16
    with pytest.raises(ValueError):
        quantity("12 cores")


def test_borrowing_limit_and_cohort(root: Path) -> None:
    q = load_quotas(root)
    # team-a: 16 GPUs nominal + borrowingLimit 8 = 24: three 8-GPU pods fit, four do not
    assert q.problem("research", "h100", {"nvidia.com/gpu": "8"}, 3) is None
    problem = q.problem("research", "h100", {"nvidia.com/gpu": "8"}, 4)
    assert problem is not None and "= 32 is more than ClusterQueue team-a" in problem
    assert "(24)" in problem and "at most 3 node(s) fit" in problem
    # team-c has no borrowing limit: its cohort's other queues lend their nominal quota
    assert q.problem("lending", "h100", {"cpu": "180"}, 5) is None  # 100 + 400 + 400
    assert q.problem("lending", "h100", {"cpu": "180"}, 6) is not None
    # and it covers no GPUs at all
    assert "has no quota for nvidia.com/gpu" in str(q.problem("lending", "h100", POD, 1))
    assert "no LocalQueue 'nope'" in str(q.problem("nope", "h100", POD, 1))


def test_malformed_queue_is_one_clear_error(root: Path) -> None:
    (root / KUEUE_DIR / "queues.yaml").write_text(
        "kind: ClusterQueue\nmetadata: {name: x}\nspec:\n  resourceGroups:\n"
        "    - coveredResources: [cpu]\n      flavors:\n        - name: f\n"
        "          resources: [{name: cpu, nominalQuota: lots}]\n")
    with pytest.raises(FatalError, match="malformed ClusterQueue"):
        load_quotas(root)
