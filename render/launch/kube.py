"""The connection to a cluster: the kubernetes client, the API groups ftops uses, errors a
person can act on, and reading status conditions. The only module that builds a client."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from render.errors import FatalError
from render.record.identity import RUN_ID_LABEL

FIELD_MANAGER = "ftops"
JOBSET_API = ("jobset.x-k8s.io", "v1alpha2", "jobsets")
WORKLOAD_API = ("kueue.x-k8s.io", "v1beta1", "workloads")
LOCALQUEUE_API = ("kueue.x-k8s.io", "v1beta1", "localqueues")


def connect(kubeconfig: str | None = None) -> Any:
    """An ApiClient from --kubeconfig, $KUBECONFIG, ~/.kube/config or the pod's account."""
    from kubernetes import client, config

    try:
        if kubeconfig or os.environ.get("KUBECONFIG") or Path("~/.kube/config").expanduser(
        ).exists():
            cfg = client.Configuration()
            config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
        else:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
        cfg.retries = 1  # a server that is down is said once, not after minutes of retries
        return client.ApiClient(cfg)
    except Exception as exc:  # noqa: BLE001 - any config problem is the user's to fix
        raise FatalError(f"cannot load a Kubernetes config ({exc}); set KUBECONFIG or pass "
                         "--kubeconfig (CI: the auth step writes one)") from None


@contextlib.contextmanager
def reachable(api_client: Any) -> Iterator[None]:
    """Inside: a server that cannot be reached (refused, DNS, TLS, timeout) is one line,
    a FatalError naming the server, never a urllib3 traceback or retry warnings."""
    import urllib3

    host = getattr(getattr(api_client, "configuration", None), "host", "") or "?"
    pool_log = logging.getLogger("urllib3.connectionpool")
    level = pool_log.level
    pool_log.setLevel(logging.ERROR)  # urllib3 logs each retry as a warning
    try:
        yield
    except (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        text = " ".join(str(reason).split())
        if "] " in text:  # "...: [Errno 111] Connection refused" -> "Connection refused"
            text = text.rsplit("] ", 1)[1].rstrip("'\")")
        raise FatalError(f"cannot reach the Kubernetes API server at {host} ({text[:200]}); "
                         "check KUBECONFIG or --kubeconfig and the network (CI: the auth "
                         "step writes the kubeconfig)") from None
    finally:
        pool_log.setLevel(level)


def api_error(exc: Any, what: str) -> FatalError:
    status = getattr(exc, "status", None)
    try:
        detail = json.loads(getattr(exc, "body", "") or "{}").get("message", "")
    except ValueError:
        detail = str(getattr(exc, "body", ""))
    if status == 403:
        return FatalError(f"{what}: permission denied ({detail}). The launcher needs the Role "
                          "in k8s-base/components/runner-rbac (kubectl apply -k k8s-base/default)")
    if status == 404:
        return FatalError(f"{what}: not found ({detail}). Are the JobSet and Kueue CRDs "
                          "installed? (see k8s-base/cluster-admin)")
    if status == 409:
        return FatalError(f"{what}: conflict ({detail}). Another field manager owns these "
                          "fields; ftops never forces them")
    if status == 422:
        return FatalError(f"{what}: rejected by the API server: {detail}")
    return FatalError(f"{what}: API error {status}: {detail or exc}")


class Cluster:
    def __init__(self, api_client: Any, namespace: str) -> None:
        from kubernetes import dynamic
        from kubernetes.client import CoreV1Api

        self.api_client = api_client
        self.namespace = namespace
        self.dyn = dynamic.DynamicClient(api_client)
        self.core = CoreV1Api(api_client)
        self._resources: dict[tuple[str, str, str], Any] = {}

    def resource(self, group: str, version: str, plural: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        key = (group, version, plural)
        if key not in self._resources:
            try:
                self._resources[key] = self.dyn.resources.get(
                    api_version=f"{group}/{version}", name=plural)
            except ResourceNotFoundError:
                raise FatalError(f"the cluster does not serve {plural}.{group}/{version}: "
                                 f"install the {group.split('.')[0]} CRDs "
                                 "(see k8s-base/cluster-admin)") from None
        return self._resources[key]

    def jobsets(self, selector: str = RUN_ID_LABEL) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        try:
            items = self.resource(*JOBSET_API).get(namespace=self.namespace,
                                                   label_selector=selector).items
        except ApiException as exc:
            raise api_error(exc, "listing JobSets") from None
        return [i.to_dict() for i in items]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The status condition of that type of a Kubernetes object (as a dict), if any."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def is_true(obj: dict[str, Any], kind: str) -> bool:
    cond = condition(obj, kind)
    return bool(cond and cond.get("status") == "True")
