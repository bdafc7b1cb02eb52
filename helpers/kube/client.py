"""A thin layer over the kubernetes Python client for the labs and tests.

* :func:`connect` - an ``ApiClient`` from a kubeconfig;
* :func:`apply`, :func:`apply_file`, :func:`apply_crds` - server-side apply of dicts or YAML
  files (any kind, custom resources included), optionally as a dry run with strict field
  validation, so the API server's own schema checks run;
* :func:`delete`, :func:`delete_file` - delete, ignoring "not found";
* :func:`wait_for` and friends - bounded waits that, on timeout, raise :class:`WaitTimeout`
  with what the cluster looked like: pod phases, recent events, PodGroup conditions.

Nothing here knows about scheduling; ``helpers.backend.scheduling_run`` builds on it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from helpers import paths
from helpers.errors import LabError, ManifestError, yaml_problem
from helpers.kube.names import FIELD_MANAGER

PODGROUP = ("scheduling.volcano.sh", "v1beta1", "podgroups")


def core(api):
    """The CoreV1 API (pods, nodes, events, PVCs, secrets) on ``api``."""
    from kubernetes import client

    return client.CoreV1Api(api)


def custom(api):
    """The custom-objects API (PodGroups, Volcano Jobs, XGBoostJobs, InferenceServices)."""
    from kubernetes import client

    return client.CustomObjectsApi(api)


def __getattr__(name: str):
    """``ApiException``, imported when first asked for (the client is heavy to import)."""
    if name == "ApiException":
        from kubernetes.client.exceptions import ApiException

        return ApiException
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def status_is(exc: BaseException, *codes: int) -> bool:
    """True when ``exc`` is an API error whose HTTP status is one of ``codes`` (e.g. 404, 409)."""
    return getattr(exc, "status", None) in codes


def default_kubeconfig() -> Path:
    """The kubeconfig kubectl would use: first entry of ``$KUBECONFIG``, else ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def probe(kubeconfig: Path, context: str | None, timeout: float = 3.0) -> str | None:
    """Return None when the API server behind ``kubeconfig``/``context`` answers, else why not."""
    if not kubeconfig.is_file():
        return f"no kubeconfig at {kubeconfig}"
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        contexts, _ = config.list_kube_config_contexts(config_file=str(kubeconfig))
    except (ConfigException, OSError, ValueError) as exc:
        return f"kubeconfig {kubeconfig} is unreadable ({exc})"
    names = [c["name"] for c in contexts or []]
    if context and context not in names:
        return f"context {context!r} not in {kubeconfig} (found: {', '.join(names) or 'none'})"
    try:
        api = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        with api:
            client.VersionApi(api).get_code(_request_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not reachable"
        summary = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return f"API server not reachable ({summary})"
    return None


class WaitTimeout(LabError):
    """A bounded wait ran out; the message carries the cluster's state at that moment."""


class ApplyError(LabError):
    """The API server refused an object (its message names the object and the reason)."""


def connect(kubeconfig: str | Path | None = None, context: str | None = None):
    """Return a kubernetes ``ApiClient`` for ``kubeconfig`` (default: the usual one).

    Args:
        kubeconfig: Kubeconfig file; None uses ``$KUBECONFIG`` / ``~/.kube/config``.
        context: Context name within it (default: its current context).
    """
    from kubernetes import config

    return config.new_client_from_config(
        config_file=str(kubeconfig) if kubeconfig else None, context=context)


def _dynamic(api):
    from kubernetes.dynamic import DynamicClient

    # Discovery is cached on the ApiClient object so repeated applies stay cheap;
    # apply_crds() drops it after new kinds appear.
    dyn = getattr(api, "_kflabs_dynamic", None)
    if dyn is None:
        dyn = DynamicClient(api)
        api._kflabs_dynamic = dyn
    return dyn


def _resource(api, obj: dict):
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        return _dynamic(api).resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    except ResourceNotFoundError:
        api._kflabs_dynamic = None  # the kind may have been installed since discovery ran
        try:
            return _dynamic(api).resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            raise ApplyError(
                f"the API server has no kind {obj['kind']} in {obj['apiVersion']}: install its "
                "CRD first (for Volcano kinds, the control plane or kind install does this)"
            ) from None


def _describe(obj: dict) -> str:
    meta = obj.get("metadata") or {}
    ns = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('kind', '?')} {ns}{meta.get('name', '?')}"


def _api_message(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            import json

            return json.loads(body).get("message", str(body))
        except ValueError:
            return str(body)[:500]
    return str(exc)[:500]


def apply(api, obj: dict, namespace: str | None = None, *, dry_run: bool = False,
          strict: bool = True) -> dict:
    """Server-side apply one object (create or update), returning what the server stored.

    Args:
        api: An ``ApiClient``.
        obj: The manifest as a dict (``apiVersion``, ``kind``, ``metadata.name`` required).
        namespace: Namespace for namespaced kinds without one in ``metadata``.
        dry_run: Validate and default on the server, store nothing (``dryRun=All``).
        strict: Reject unknown or duplicate fields (``fieldValidation=Strict``).

    Raises:
        ManifestError: ``obj`` lacks apiVersion, kind or metadata.name.
        ApplyError: The server refused it; the message names the object and the reason.
    """
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError

    for key in ("apiVersion", "kind"):
        if not obj.get(key):
            raise ManifestError(f"manifest without {key}: {str(obj)[:200]}")
    if not (obj.get("metadata") or {}).get("name"):
        raise ManifestError(f"{obj['kind']} without metadata.name (generateName is not "
                            "supported by apply)")
    res = _resource(api, obj)
    ns = None
    if res.namespaced:
        ns = obj["metadata"].get("namespace") or namespace or "default"
    kwargs: dict[str, Any] = {"field_manager": FIELD_MANAGER, "force_conflicts": True}
    if dry_run:
        kwargs["dry_run"] = "All"
    if strict:
        kwargs["query_params"] = [("fieldValidation", "Strict")]
    try:
        out = res.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=ns,
                                    **kwargs)
    except (ApiException, DynamicApiError) as exc:
        raise ApplyError(f"the API server refused {_describe(obj)}: {_api_message(exc)}") from None
    return out.to_dict()


def load_manifests(path: str | Path) -> list[dict]:
    """Read every YAML document in a file (or, for a folder, in its ``*.yaml`` files).

    Raises:
        ManifestError: Missing path, unparsable YAML, or a document that is not a mapping.
    """
    p = paths.resolve(path)
    if p.is_dir():
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
    elif p.is_file():
        files = [p]
    else:
        raise ManifestError(f"no manifest file or folder at {p}")
    docs: list[dict] = []
    for f in files:
        try:
            loaded = list(yaml.safe_load_all(f.read_text()))
        except yaml.YAMLError as exc:
            raise ManifestError(f"{f}: not valid YAML: {yaml_problem(exc)}") from None
        for i, doc in enumerate(loaded):
            if doc is None:
                continue
            if not isinstance(doc, dict):
                raise ManifestError(f"{f}: document {i} is a {type(doc).__name__}, not a mapping")
            if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
                docs.extend(doc["items"])
            else:
                docs.append(doc)
    return docs


def apply_file(api, path: str | Path, namespace: str | None = None, *,
               dry_run: bool = False) -> list[dict]:
    """Apply every document of a YAML file (or folder), in order; return the stored objects."""
    return [apply(api, doc, namespace, dry_run=dry_run) for doc in load_manifests(path)]


def delete(api, obj: dict, namespace: str | None = None, *,
           propagation: str = "Background") -> bool:
    """Delete one object, ignoring "not found" (and an uninstalled kind).

    Returns:
        True when something was deleted.
    """
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError

    try:
        res = _resource(api, obj)
    except ApplyError:
        return False  # the kind is not installed, so no such object exists
    ns = (obj.get("metadata", {}).get("namespace") or namespace or "default") \
        if res.namespaced else None
    try:
        res.delete(name=obj["metadata"]["name"], namespace=ns, propagation_policy=propagation)
    except NotFoundError:
        return False
    except (ApiException, DynamicApiError) as exc:
        if status_is(exc, 404):
            return False
        raise ApplyError(f"could not delete {_describe(obj)}: {_api_message(exc)}") from None
    return True


def delete_file(api, path: str | Path, namespace: str | None = None) -> int:
    """Delete every object of a YAML file or folder (ignore-not-found); return how many went."""
    return sum(delete(api, doc, namespace) for doc in reversed(load_manifests(path)))


def apply_crds(api, files: Iterable[str | Path], timeout: float = 60) -> list[str]:
    """Apply CustomResourceDefinitions and wait until the server serves every one.

    Returns:
        The CRD names.
    """
    names = []
    for f in files:
        for doc in load_manifests(f):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            apply(api, doc, strict=False)
            names.append(doc["metadata"]["name"])
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api)

    def established() -> bool:
        for name in names:
            crd = ext.read_custom_resource_definition(name)
            conds = {c.type: c.status for c in (crd.status.conditions or [])}
            if conds.get("Established") != "True":
                return False
        return True

    wait_for(established, timeout, f"CRDs {', '.join(names)} to be established")
    api._kflabs_dynamic = None  # new kinds: rediscover
    return names


def ensure_namespace(api, name: str, timeout: float = 30) -> None:
    """Create namespace ``name`` if missing and wait for its default ServiceAccount.

    Pod creation is refused until the ServiceAccount controller has made ``default``.
    """
    apply(api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_for_default_service_account(api, name, timeout)


def wait_for_default_service_account(api, namespace: str, timeout: float = 30) -> None:
    """Wait until ServiceAccount ``default`` exists in ``namespace``."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)

    def present() -> bool:
        try:
            core.read_namespaced_service_account("default", namespace)
        except ApiException as exc:
            if status_is(exc, 404):
                return False
            raise
        return True

    wait_for(present, timeout, f"ServiceAccount {namespace}/default (made by "
             "kube-controller-manager)")


def delete_namespace(api, name: str, timeout: float = 60, wait: bool = True) -> None:
    """Delete a namespace (ignore-not-found) and, by default, wait until it is gone."""
    delete_namespaces(api, [name], timeout=timeout, wait=wait)


def delete_namespaces(api, names: Sequence[str], timeout: float = 60, wait: bool = True,
                      force_pods: bool = False) -> None:
    """Delete several namespaces at once (ignore-not-found); by default wait until all are gone.

    Args:
        names: The namespaces; all are asked to go before the first wait, so their
            deletions overlap instead of queueing one after the other.
        timeout: Seconds to wait for all of them together.
        wait: Return at once after asking, without waiting.
        force_pods: Delete their pods first with ``gracePeriodSeconds: 0``. The namespace
            controller otherwise waits out each pod's grace period (30 s by default)
            before it looks again; use it for throw-away pods whose shutdown nobody needs
            (the scheduling labs' rendezvous pods).
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    asked = []
    for name in names:
        try:
            if force_pods:
                core.delete_collection_namespaced_pod(name, grace_period_seconds=0)
            core.delete_namespace(name)
        except ApiException as exc:
            if not status_is(exc, 404):
                raise
            continue
        asked.append(name)
    if not wait or not asked:
        return

    def gone() -> bool:
        for name in asked:
            try:
                core.read_namespace(name)
            except ApiException as exc:
                if not status_is(exc, 404):
                    raise
                continue
            return False
        return True

    wait_for(gone, timeout, f"namespace(s) {', '.join(asked)} to be deleted",
             diagnostics=lambda: "\n".join(diagnose(api, name) for name in asked))


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, *,
             interval: float = 0.25, diagnostics: Callable[[], str] | None = None) -> None:
    """Poll ``predicate`` until it is true, for at most ``timeout`` seconds.

    Args:
        predicate: Returns True when the wait is over.
        timeout: Seconds before giving up.
        what: What is awaited, for the message ("pods of job a to be bound").
        interval: Seconds between polls.
        diagnostics: Called on timeout; its text is appended to the error.

    Raises:
        WaitTimeout: ``predicate`` stayed false; the message says what, how long, and the
            diagnostics.
    """
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() >= deadline:
            extra = f"\n{diagnostics()}" if diagnostics else ""
            raise WaitTimeout(f"gave up after {timeout:g} s waiting for {what}.{extra}")
        time.sleep(interval)


def wait_nodes_ready(api, names: list[str], timeout: float = 60) -> None:
    """Wait until every named Node reports condition Ready=True."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    wanted = set(names)

    def states() -> dict[str, str]:
        out = {}
        for node in core.list_node().items:
            if node.metadata.name in wanted:
                conds = {c.type: c.status for c in (node.status.conditions or [])}
                out[node.metadata.name] = conds.get("Ready", "Unknown")
        return out

    wait_for(lambda: set(states()) == wanted and all(v == "True" for v in states().values()),
             timeout, f"{len(names)} fake node(s) to be Ready (kwok marks them)",
             diagnostics=lambda: f"node Ready states: {states()}")


def pods(api, namespace: str, selector: str | None = None) -> list:
    """Pods in ``namespace`` (optionally filtered by a label selector), sorted by name."""
    from kubernetes import client

    items = client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=selector).items
    return sorted(items, key=lambda p: p.metadata.name)


def podgroups(api, namespace: str) -> list[dict]:
    """Volcano PodGroups in ``namespace`` as dicts (empty when Volcano is not installed)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    group, version, plural = PODGROUP
    try:
        out = client.CustomObjectsApi(api).list_namespaced_custom_object(
            group, version, namespace, plural)
    except ApiException as exc:
        if status_is(exc, 404):
            return []
        raise
    return sorted(out.get("items", []), key=lambda o: o["metadata"]["name"])


def get_custom(api, ref: tuple[str, str, str, str, str]) -> dict | None:
    """Read a custom object ``(group, version, namespace, plural, name)``; None if absent."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    group, version, namespace, plural, name = ref
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            group, version, namespace, plural, name)
    except ApiException as exc:
        if status_is(exc, 404):
            return None
        raise


def conditions(obj: dict | None) -> dict[str, dict]:
    """An object's ``status.conditions`` by type (empty when it has none)."""
    return {c.get("type"): c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def pod_log(api, namespace: str, pod: str, lines: int = 20) -> str:
    """The last ``lines`` of a pod's log, or why there is none (never raises for an API error)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        return client.CoreV1Api(api).read_namespaced_pod_log(pod, namespace, tail_lines=lines)
    except ApiException as exc:
        return f"(no log: {exc.reason})"


def events(api, namespace: str, limit: int = 15) -> list[str]:
    """The most recent events of ``namespace`` as one line each (newest last)."""
    from kubernetes import client

    items = client.CoreV1Api(api).list_namespaced_event(namespace).items

    def when(e) -> float:
        t = e.last_timestamp or e.event_time or e.metadata.creation_timestamp
        return t.timestamp() if t else 0.0

    items.sort(key=when)
    return [f"{e.involved_object.kind}/{e.involved_object.name}: {e.reason}: "
            f"{(e.message or '').strip()[:160]}" for e in items[-limit:]]


def diagnose(api, namespace: str) -> str:
    """A short report for a failed wait: pod phases and nodes, PodGroups, recent events."""
    lines = [f"-- state of namespace {namespace}:"]
    try:
        for p in pods(api, namespace):
            lines.append(f"pod {p.metadata.name}: {p.status.phase}"
                         f" node={p.spec.node_name or '-'} scheduler={p.spec.scheduler_name}")
        for pg in podgroups(api, namespace):
            st = pg.get("status") or {}
            conds = "; ".join(f"{c.get('type')}={c.get('status')} {c.get('reason', '')}: "
                              f"{(c.get('message') or '')[:120]}"
                              for c in st.get("conditions") or [])
            lines.append(f"podgroup {pg['metadata']['name']}: phase={st.get('phase', '-')} "
                         f"minMember={pg['spec'].get('minMember')} {conds}")
        lines += [f"event {e}" for e in events(api, namespace)]
    except Exception as exc:  # noqa: BLE001 - diagnostics must never hide the original timeout
        lines.append(f"(could not read the namespace: {type(exc).__name__}: {exc})")
    return "\n".join(lines)
