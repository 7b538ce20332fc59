"""Small helpers over the kubernetes client for tests against the devcluster."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

import yaml

from render.launch.kube import condition, is_true

T = TypeVar("T")


class HasApiClient(Protocol):
    def api_client(self) -> Any: ...


def _docs(docs: str | dict[str, Any] | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    if isinstance(docs, str):
        return [d for d in yaml.safe_load_all(docs) if d]
    if isinstance(docs, dict):
        return [docs]
    return [d for d in docs if d]


def create_from_yaml(
    cluster: HasApiClient,
    docs: str | dict[str, Any] | Iterable[dict[str, Any]],
    dry_run: bool = False,
    namespace: str = "default",
) -> list[dict[str, Any]]:
    """Create every object in ``docs`` (YAML text, one dict or a list of dicts).

    With ``dry_run`` the API server runs the whole admission chain (defaulting and
    validating webhooks, CEL rules, schema) without storing anything: a rendered manifest
    that passes would be accepted by a real cluster with the same controllers. Raises
    ``kubernetes.client.ApiException`` on the first rejection (its ``body`` holds the
    reason); returns the objects as the server answered them.
    """
    from kubernetes import dynamic

    dyn = dynamic.DynamicClient(cluster.api_client())
    out = []
    for doc in _docs(docs):
        res = dyn.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        kwargs: dict[str, Any] = {}
        if dry_run:
            kwargs["dry_run"] = "All"
        if res.namespaced:
            ns = doc.get("metadata", {}).get("namespace") or namespace
            obj = res.create(body=doc, namespace=ns, **kwargs)
        else:
            obj = res.create(body=doc, **kwargs)
        out.append(obj.to_dict())
    return out


def wait_for(
    what: str,
    fn: Callable[[], T | None],
    timeout: float = 60.0,
    interval: float = 0.5,
    describe: Callable[[], str] | None = None,
) -> T:
    """Poll ``fn`` until it returns something truthy; fail with ``describe()`` if not."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            val = fn()
            if val:
                return val
        except Exception as e:  # noqa: BLE001 (keep polling, report the last error)
            last_exc = e
        time.sleep(interval)
    state = ""
    if describe is not None:
        try:
            state = describe()
        except Exception as e:  # noqa: BLE001
            state = f"(describe failed: {e})"
    raise TimeoutError(
        f"timed out after {timeout:.0f}s waiting for {what}"
        + (f"; last error: {last_exc!r}" if last_exc else "")
        + (f"\n{state}" if state else "")
    )


__all__ = ["HasApiClient", "condition", "create_from_yaml", "is_true", "wait_for"]
