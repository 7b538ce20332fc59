"""The upstream versions ftops renders for and validates against, in one place.

The rendered JobSets use JobSet's v1alpha2 API and Kueue's labels; `ftops render
--validate` checks them against these versions' CRDs, and the local control plane the
tests build (tests/devcluster) runs the same versions.
"""

from __future__ import annotations

KUBERNETES = "v1.36.3"  # k8s.io/kubernetes; staging modules k8s.io/* at v0.36.3
JOBSET = "v0.12.0"  # sigs.k8s.io/jobset (v1alpha2 API)
KUEUE = "v0.17.1"  # sigs.k8s.io/kueue (v1beta2 storage, v1beta1 served)
