"""The ``kind`` backend: a kind cluster with Volcano, KServe and the Training Operator.

Two halves:

* **Lifecycle** (``make cluster-up`` / ``make cluster-down``, ``python -m helpers.cluster``):
  create or reuse the kind cluster from ``cluster/kind/kind-config.yaml``, patch fake GPUs
  (``example.com/gpu``) onto the workers, install Volcano, cert-manager, KServe (Standard
  mode) and the Training Operator (with ``--gang-scheduler-name=volcano``) at the versions
  pinned in ``cluster/versions.yaml``, and build + load the kit's training image. It drives
  the ``kind``, ``kubectl`` and ``docker`` commands a learner would type, so each step can be
  read, repeated by hand, and tested against fake executables. Every step is idempotent and
  every wait is bounded; a timeout prints what the cluster looked like (pod phases, recent
  events, PodGroup conditions).
* **The labs' cluster branches** (through the kubernetes client, :mod:`helpers.k8s`):
  :func:`ensure_model_pvc`, :func:`run_training_job` (the gang-scheduled XGBoostJob running
  ``python -m helpers.train``), :func:`deploy_inference_service`, :func:`port_forward` and
  the ``delete_*`` clean-ups, each safe to run twice.

kind cannot run where the kit is developed (no privileged containers); the command lines are
exercised by ``tests/test_cluster_commands.py`` and the manifests by
``tests/test_manifests_static.py``; ``tests/test_cluster_kind.py`` runs on a real cluster.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import backend, k8s, paths, versions
from helpers.errors import BackendUnavailable, LabError, ManifestError, cli_errors

CLUSTER_NAME = backend.KIND_CLUSTER_NAME
CONTEXT = backend.KIND_CONTEXT
#: The extended resource standing in for GPUs (integers, no overcommit, requests = limits).
GPU_RESOURCE = "example.com/gpu"
#: Fake GPUs spread over the workers: the same 8 the scheduling model's cluster has, so the
#: labs' numbers agree (every lab pod asks for exactly one).
TOTAL_FAKE_GPUS = 8
#: Label kind-config.yaml puts on the nodes that get fake GPUs.
FAKE_GPU_LABEL = "kflabs.example.com/fake-gpus"
#: The model volume, training job and InferenceService share one namespace (a PVC is only
#: mountable from its own); the same as helpers.serving.isvc.DEFAULT_NAMESPACE.
MODEL_NAMESPACE = "kflabs-serving"
MODEL_PVC = "model-store"
TRAINING_JOB = "iris-train"
TRAINING_IMAGE_REPO = "kflabs-train"
#: Default bound of each install wait (image pulls on a laptop's first run are the slow part).
INSTALL_TIMEOUT = 600.0
COMPONENTS = ("volcano", "cert-manager", "kserve", "training-operator")

#: What a component's webhook says while it is still starting (or its certificate is not
#: yet injected): worth waiting and retrying, unlike a real rejection.
TRANSIENT_ERRORS = (
    "connection refused",
    "x509",
    "failed calling webhook",
    "no endpoints available",
    "context deadline exceeded",
    "i/o timeout",
    "ensure crds are installed first",
    "the server is currently unable to handle the request",
    "service unavailable",
    "connection reset by peer",
    # Volcano's scheduler creates the default queue just after it starts; until then the
    # job webhook answers this (or that the queue is not Open yet).
    "unable to find job queue",
    "can only submit job to queue with state `open`",
)



class CommandFailed(LabError):
    """A ``kind``/``kubectl``/``docker`` command exited non-zero or timed out.

    Attributes:
        args: the command line.
        returncode: its exit status (None for a timeout).
        stderr: what it printed on standard error.
    """

    def __init__(self, message: str, args: Sequence[str] = (), returncode: int | None = None,
                 stderr: str = ""):
        super().__init__(message)
        self.args_list = list(args)
        self.returncode = returncode
        self.stderr = stderr


# --------------------------------------------------------------------------- commands
_fix = backend.tool_fix


def require_tools(*tools: str) -> dict[str, str]:
    """Check that each command is on PATH.

    Returns:
        ``{tool: path}``.

    Raises:
        BackendUnavailable: one message naming every missing tool and how to get it.
    """
    found = {tool: shutil.which(tool) for tool in tools}
    missing = [tool for tool, path in found.items() if path is None]
    if missing:
        fixes = "; ".join(f"{tool}: {_fix(tool)}" for tool in missing)
        raise BackendUnavailable(
            f"{', '.join(missing)} not found on PATH. Fix: {fixes}. Then run `make cluster-up`; "
            'or run the labs with BACKEND="sim", which needs none of them.')
    return {tool: str(path) for tool, path in found.items()}


def _short(args: Sequence[str]) -> str:
    text = " ".join(args)
    return text if len(text) <= 200 else text[:197] + "..."


def run(args: Sequence[str], *, input_text: str | None = None, timeout: float = 120.0,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run one command (an argument list, never a shell string) and capture its output.

    Args:
        args: the command line, e.g. ``["kind", "get", "clusters"]``.
        input_text: text to send on standard input (``kubectl apply -f -``).
        timeout: seconds before the command is stopped.
        check: raise :class:`CommandFailed` on a non-zero exit.

    Raises:
        BackendUnavailable: the program is not installed.
        CommandFailed: it exited non-zero (with ``check``) or ran past ``timeout``.
    """
    args = [str(a) for a in args]
    # No input: stdin is /dev/null, so a tool can never sit waiting for a prompt's answer.
    feed: dict[str, Any] = ({"input": input_text} if input_text is not None
                            else {"stdin": subprocess.DEVNULL})
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              check=False, **feed)
    except FileNotFoundError:
        tool = Path(args[0]).name
        raise BackendUnavailable(f"{tool} not found: {_fix(tool)}; "
                                 'or run the labs with BACKEND="sim"') from None
    except subprocess.TimeoutExpired as exc:
        raise CommandFailed(f"`{_short(args)}` did not finish within {timeout:g} s",
                            args, None, str(exc.stderr or "")) from None
    if check and proc.returncode != 0:
        err = (proc.stderr or proc.stdout or "").strip()
        tail = "\n".join(err.splitlines()[-12:])
        raise CommandFailed(f"`{_short(args)}` failed (exit {proc.returncode}):\n{tail}",
                            args, proc.returncode, proc.stderr or "")
    return proc


def kubectl(*args: str, input_text: str | None = None, timeout: float = 120.0,
            check: bool = True) -> subprocess.CompletedProcess:
    """Run ``kubectl --context kind-kflabs ARGS``: always the kit's context, never the current one."""
    return run(["kubectl", "--context", CONTEXT, *args], input_text=input_text,
               timeout=timeout, check=check)


def is_transient(message: str) -> bool:
    """True when an error is a webhook or API server that is still starting up."""
    low = message.lower()
    return any(marker in low for marker in TRANSIENT_ERRORS)


def retry_transient(args: Sequence[str], *, what: str, timeout: float,
                    input_text: str | None = None, interval: float = 5.0,
                    sleep=time.sleep) -> subprocess.CompletedProcess:
    """Run a command until it succeeds, retrying only webhook start-up errors, for ``timeout`` s.

    Right after an install, admission webhooks refuse connections (their pod is not up) or
    fail x509 checks (cert-manager has not injected the CA yet). Those errors are retried;
    any other failure is raised at once.

    Raises:
        CommandFailed: a non-transient failure, or transient ones for longer than ``timeout``.
    """
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            return run(args, input_text=input_text, timeout=max(30.0, min(timeout, 300.0)))
        except CommandFailed as exc:
            if not is_transient(exc.stderr or str(exc)):
                raise
            if time.monotonic() >= deadline:
                raise CommandFailed(
                    f"{what}: still failing after {timeout:g} s with a webhook start-up error. "
                    "Check that the webhook's pods are Running (diagnostics below) and that "
                    f"cert-manager is installed; then run `make cluster-up` again.\n{exc}",
                    exc.args_list, exc.returncode, exc.stderr) from None
            if not announced:
                print(f"  {what}: webhook not ready yet ({_first_line(exc.stderr)}); retrying "
                      f"for up to {timeout:g} s")
                announced = True
            sleep(interval)


def _first_line(text: str) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:160]
    return "no message"


# --------------------------------------------------------------------------- diagnostics
def diagnostics(namespace: str, *, events: int = 15) -> str:
    """What a namespace looks like now, for a failed wait: pods, recent events, PodGroups.

    Never raises: a part that cannot be read says so instead.
    """
    parts = [f"-- diagnostics for namespace {namespace} (context {CONTEXT}):"]
    probes = [
        ("pods", ["get", "pods", "-n", namespace, "-o", "wide"]),
        ("recent events", ["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]),
        ("podgroups", ["get", "podgroups.scheduling.volcano.sh", "-n", namespace, "-o",
                       "custom-columns=NAME:.metadata.name,PHASE:.status.phase,"
                       "MINMEMBER:.spec.minMember,CONDITIONS:.status.conditions[*].message"]),
    ]
    for title, args in probes:
        try:
            out = kubectl(*args, timeout=30).stdout.strip()
        except (CommandFailed, BackendUnavailable) as exc:
            out = f"(could not read: {_first_line(getattr(exc, 'stderr', '') or str(exc))})"
        lines = out.splitlines()
        if title == "recent events" and len(lines) > events + 1:
            lines = lines[:1] + lines[-events:]
        parts.append(f"{title}:\n" + ("\n".join(f"  {ln}" for ln in lines) or "  (none)"))
    return "\n".join(parts)


def rollout(namespace: str, deployment: str, timeout: float) -> None:
    """Wait (bounded) until a Deployment has rolled out; on timeout raise with diagnostics."""
    try:
        kubectl("rollout", "status", f"deployment/{deployment}", "-n", namespace,
                f"--timeout={int(timeout)}s", timeout=timeout + 30)
    except CommandFailed as exc:
        raise CommandFailed(f"deployment {namespace}/{deployment} did not become available "
                            f"within {timeout:g} s.\n{exc}\n{diagnostics(namespace)}",
                            exc.args_list, exc.returncode, exc.stderr) from None


# --------------------------------------------------------------------------- kind lifecycle
def check_docker() -> None:
    """Check that the Docker daemon answers (the client alone is not enough for kind).

    Raises:
        BackendUnavailable: Docker is missing or not running, with the fix.
    """
    require_tools("docker")
    proc = run(["docker", "info", "--format", "{{.ServerVersion}}"], timeout=30, check=False)
    if proc.returncode != 0:
        raise BackendUnavailable(
            "docker is installed but its daemon does not answer "
            f"({_first_line(proc.stderr)}). Fix: start Docker Desktop, or `sudo systemctl start "
            "docker` on Linux (and add yourself to the docker group); kind needs a container "
            'engine that runs privileged containers. Or run the labs with BACKEND="sim".')


def check_kind_version() -> str:
    """Return ``kind version``'s output, warning when it is not the pinned kind release.

    The node image in versions.yaml is built for that release; another kind may still work.
    """
    out = run(["kind", "version"], timeout=30).stdout.strip()
    wanted = versions.pin("kind")
    if wanted not in out.split():
        print(f"  warning: {out or 'kind'} is not the pinned kind {wanted}; the node image "
              f"{versions.pin('kind_node_image').split('@')[0]} is built for kind {wanted}")
    return out


def cluster_exists(name: str = CLUSTER_NAME) -> bool:
    """True when ``kind get clusters`` lists ``name``."""
    out = run(["kind", "get", "clusters"], timeout=60).stdout
    return name in {line.strip() for line in out.splitlines()}


def _current_context() -> str | None:
    proc = run(["kubectl", "config", "current-context"], timeout=30, check=False)
    if proc.returncode != 0:
        return None  # no kubeconfig yet, or no current context in it
    return proc.stdout.strip() or None


def create_cluster(name: str = CLUSTER_NAME, *, config: str | Path | None = None,
                   image: str | None = None, wait: float = 300.0) -> bool:
    """Create the kind cluster, or reuse it if it already exists.

    kind makes its new context the current one; the learner's previous current context is
    put back, since the kit always names its context explicitly.

    Args:
        name: kind cluster name (context ``kind-<name>``).
        config: kind config file (default ``cluster/kind/kind-config.yaml``).
        image: node image (default: the ``kind_node_image`` pin).
        wait: seconds kind waits for the control plane to be ready.

    Returns:
        True when the cluster was created, False when an existing one was reused.
    """
    if cluster_exists(name):
        print(f"kind cluster {name!r} exists: reusing it (`make cluster-down` deletes it)")
        return False
    config = Path(config) if config else paths.cluster_dir() / "kind" / "kind-config.yaml"
    image = image or versions.pin("kind_node_image")
    previous = _current_context()
    print(f"creating kind cluster {name!r} ({image.split('@')[0]}, 1 control plane + workers)")
    run(["kind", "create", "cluster", "--name", name, "--config", str(config),
         "--image", image, "--wait", f"{int(wait)}s"], timeout=wait + 600)
    if previous and previous != f"kind-{name}":
        run(["kubectl", "config", "use-context", previous], timeout=30)
        print(f"  kept your current kubectl context {previous!r}; the kit uses kind-{name}")
    return True


def delete_cluster(name: str = CLUSTER_NAME) -> bool:
    """Delete the kind cluster (nothing to do when it does not exist). Safe to run twice.

    Returns:
        True when a cluster was deleted.
    """
    require_tools("kind")
    if not cluster_exists(name):
        print(f"kind cluster {name!r} does not exist: nothing to delete")
        return False
    run(["kind", "delete", "cluster", "--name", name], timeout=300)
    print(f"deleted kind cluster {name!r}")
    return True


def _nodes() -> list[dict]:
    return json.loads(kubectl("get", "nodes", "-o", "json", timeout=60).stdout).get("items", [])


def worker_nodes() -> list[str]:
    """Names of the nodes that get fake GPUs (labelled by kind-config.yaml), sorted."""
    names = [n["metadata"]["name"] for n in _nodes()
             if (n["metadata"].get("labels") or {}).get(FAKE_GPU_LABEL) == "true"]
    if not names:
        raise LabError(f"no node of context {CONTEXT} carries the label {FAKE_GPU_LABEL}=true: "
                       "the cluster was not created from cluster/kind/kind-config.yaml. Fix: "
                       "`make cluster-down && make cluster-up`")
    return sorted(names)


def wait_nodes_ready(timeout: float = 180.0) -> None:
    """Wait (bounded) until every node reports Ready."""
    try:
        kubectl("wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={int(timeout)}s",
                timeout=timeout + 30)
    except CommandFailed as exc:
        nodes = kubectl("get", "nodes", "-o", "wide", check=False, timeout=30).stdout
        raise CommandFailed(f"kind nodes not Ready within {timeout:g} s.\n{exc}\nnodes:\n{nodes}",
                            exc.args_list, exc.returncode, exc.stderr) from None


def gpu_layout(nodes: Sequence[str], total: int = TOTAL_FAKE_GPUS) -> dict[str, int]:
    """Spread ``total`` fake GPUs over ``nodes`` as evenly as possible (first nodes get more).

    >>> gpu_layout(["w1", "w2", "w3"], 8)
    {'w1': 3, 'w2': 3, 'w3': 2}
    """
    if not nodes:
        raise LabError("no worker nodes to put fake GPUs on")
    if total < 0:
        raise LabError(f"fake GPU total must be >= 0, got {total}")
    base, extra = divmod(total, len(nodes))
    return {n: base + (1 if i < extra else 0) for i, n in enumerate(nodes)}


def patch_fake_gpus(total: int = TOTAL_FAKE_GPUS, timeout: float = 60.0,
                    sleep=time.sleep) -> dict[str, int]:
    """Advertise ``example.com/gpu`` on the workers by JSON-patching each node's status.

    An extended resource is a plain integer count: the scheduler treats it like any other
    resource but nothing on the node backs it, which is exactly what a lab about scheduling
    needs. ``~1`` encodes the ``/`` in the resource name (JSON Pointer). Idempotent: "add"
    replaces an existing value.

    Returns:
        ``{node: gpus}`` as now allocatable.
    """
    layout = gpu_layout(worker_nodes(), total)
    path = "/status/capacity/" + GPU_RESOURCE.replace("~", "~0").replace("/", "~1")
    for node, count in layout.items():
        patch = json.dumps([{"op": "add", "path": path, "value": str(count)}])
        kubectl("patch", "node", node, "--subresource=status", "--type=json", "-p", patch)
    deadline = time.monotonic() + timeout
    while True:
        seen = {n["metadata"]["name"]: int((n.get("status", {}).get("allocatable") or {})
                                           .get(GPU_RESOURCE, "0"))
                for n in _nodes() if n["metadata"]["name"] in layout}
        if seen == layout:
            print(f"fake GPUs: {', '.join(f'{n}={c}' for n, c in layout.items())} "
                  f"({GPU_RESOURCE}, {total} in all)")
            return layout
        if time.monotonic() >= deadline:
            raise LabError(f"nodes did not report {GPU_RESOURCE} as allocatable within "
                           f"{timeout:g} s: wanted {layout}, saw {seen}")
        sleep(2.0)


# --------------------------------------------------------------------------- installs
def volcano_url() -> str:
    """Volcano's installer manifest at the pinned tag (never master: it pulls :latest)."""
    return ("https://raw.githubusercontent.com/volcano-sh/volcano/"
            f"{versions.pin('volcano')}/installer/volcano-development.yaml")


def cert_manager_url() -> str:
    """cert-manager's release manifest at the pinned version."""
    pin = versions.pin("cert_manager")
    return f"https://github.com/cert-manager/cert-manager/releases/download/{pin}/cert-manager.yaml"


def kserve_urls() -> tuple[str, str]:
    """KServe's release manifests at the pinned version: the controller, then the runtimes."""
    base = f"https://github.com/kserve/kserve/releases/download/{versions.pin('kserve')}"
    return f"{base}/kserve.yaml", f"{base}/kserve-cluster-resources.yaml"


def training_operator_kustomization() -> str:
    """The Training Operator's standalone overlay at the pinned tag (kubeflow/trainer repo)."""
    return ("github.com/kubeflow/trainer.git/manifests/overlays/standalone"
            f"?ref={versions.pin('training_operator')}")


def _apply_remote(source: str, *, what: str, timeout: float, kustomize: bool = False) -> None:
    # Server-side apply: Volcano's and KServe's CRDs are too big for the client-side
    # last-applied annotation. --force-conflicts lets a re-run take fields back.
    flag = "-k" if kustomize else "-f"
    retry_transient(["kubectl", "--context", CONTEXT, "apply", "--server-side",
                     "--force-conflicts", flag, source], what=what, timeout=timeout)


_VOLCANO_PROBE = {
    "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
    "metadata": {"name": "kflabs-webhook-probe", "namespace": "default"},
    "spec": {"minAvailable": 1, "schedulerName": "volcano", "queue": "default", "tasks": [{
        "name": "probe", "replicas": 1, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "probe", "image": "busybox:1.36.1"}]}}}]},
}


def install_volcano(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install Volcano from its pinned installer manifest and wait until it admits jobs.

    Waits for the admission webhook, the controllers and the scheduler to roll out, then
    sends a VolcanoJob through the admission webhooks as a server-side dry run (retrying the
    connection-refused errors of a webhook that is still starting): only then is Volcano
    usable.
    """
    _install_and_probe("Volcano", versions.pin("volcano"), volcano_url(), "volcano-system",
                       deployments=("volcano-admission", "volcano-controllers", "volcano-scheduler"),
                       probe=_VOLCANO_PROBE, webhook="Volcano admission webhook", timeout=timeout)


def _install_and_probe(title: str, version: str, url: str, namespace: str, *,
                       deployments: tuple[str, ...], probe: dict, webhook: str,
                       timeout: float) -> None:
    """Apply an installer, wait for its deployments, then dry-run ``probe`` through its webhook.

    The dry run retries the connection-refused and x509 errors of a webhook that is still
    starting; a real rejection, or a timeout, fails with the namespace's diagnostics.
    """
    print(f"installing {title} {version}")
    _apply_remote(url, what=f"apply {title}", timeout=timeout)
    for deployment in deployments:
        rollout(namespace, deployment, timeout)
    try:
        retry_transient(["kubectl", "--context", CONTEXT, "create", "--dry-run=server", "-f", "-"],
                        input_text=json.dumps(probe), what=webhook, timeout=timeout)
    except CommandFailed as exc:
        raise CommandFailed(f"{exc}\n{diagnostics(namespace)}", exc.args_list,
                            exc.returncode, exc.stderr) from None


_CERT_PROBE = {
    "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
    "metadata": {"name": "kflabs-webhook-probe", "namespace": "default"},
    "spec": {"selfSigned": {}},
}


def install_cert_manager(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install cert-manager (KServe's webhooks get their TLS certificates from it) and wait."""
    _install_and_probe("cert-manager", versions.pin("cert_manager"), cert_manager_url(),
                       "cert-manager",
                       deployments=("cert-manager", "cert-manager-cainjector", "cert-manager-webhook"),
                       probe=_CERT_PROBE, webhook="cert-manager webhook", timeout=timeout)


def configure_kserve_standard(timeout: float = INSTALL_TIMEOUT) -> bool:
    """Make Standard (raw Deployment) KServe's default mode, without Ingress objects.

    KServe's own default is still Knative (Serverless), which needs Istio and Knative
    Serving. kind has no ingress controller, so Ingress creation is turned off too; the labs
    reach the predictor Service with ``kubectl port-forward``.

    Returns:
        True when the ConfigMap changed (the controller is then restarted to re-read it).
    """
    cm = json.loads(kubectl("get", "configmap", "inferenceservice-config", "-n", "kserve",
                            "-o", "json").stdout)
    data = cm.get("data") or {}
    try:
        deploy = json.loads(data.get("deploy") or "{}")
        ingress = json.loads(data.get("ingress") or "{}")
    except ValueError as exc:
        raise LabError(f"KServe's inferenceservice-config holds invalid JSON ({exc}): "
                       "reinstall KServe (`make cluster-down && make cluster-up`)") from None
    if deploy.get("defaultDeploymentMode") == "Standard" and ingress.get("disableIngressCreation"):
        return False
    deploy["defaultDeploymentMode"] = "Standard"
    ingress["disableIngressCreation"] = True
    patch = {"data": {"deploy": json.dumps(deploy, indent=1),
                      "ingress": json.dumps(ingress, indent=1)}}
    kubectl("patch", "configmap", "inferenceservice-config", "-n", "kserve", "--type=merge",
            "-p", json.dumps(patch))
    kubectl("rollout", "restart", "deployment/kserve-controller-manager", "-n", "kserve")
    rollout("kserve", "kserve-controller-manager", timeout)
    return True


def install_kserve(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install KServe (controller, then the ClusterServingRuntimes) in Standard mode.

    Needs cert-manager first: KServe's manifest holds a cert-manager Issuer and Certificate,
    and the runtimes pass through KServe's own webhook, so both applies retry the start-up
    errors of those webhooks.
    """
    print(f"installing KServe {versions.pin('kserve')} (Standard mode)")
    controller, runtimes = kserve_urls()
    # The release manifest leaves the namespace out (KServe's install script makes it).
    kubectl("apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kserve"}}))
    _apply_remote(controller, what="apply KServe", timeout=timeout)
    rollout("kserve", "kserve-controller-manager", timeout)
    _apply_remote(runtimes, what="apply KServe serving runtimes", timeout=timeout)
    configure_kserve_standard(timeout)


def _gang_flag() -> str:
    return "--gang-scheduler-name=volcano"


def patch_training_operator() -> bool:
    """Add ``--gang-scheduler-name=volcano`` to the Training Operator's Deployment.

    The Deployment is patched, never the pod: a pod edit would be lost at the next restart.
    Idempotent: nothing happens when the flag is there; another gang-scheduler value is
    replaced.

    Returns:
        True when the Deployment was changed.
    """
    dep = json.loads(kubectl("get", "deployment", "training-operator", "-n", "kubeflow",
                             "-o", "json").stdout)
    command = dep["spec"]["template"]["spec"]["containers"][0].get("command") or []
    if _gang_flag() in command:
        return False
    found = [i for i, arg in enumerate(command) if arg.startswith("--gang-scheduler-name")]
    if found:
        op = {"op": "replace", "path": f"/spec/template/spec/containers/0/command/{found[0]}",
              "value": _gang_flag()}
    elif command:
        op = {"op": "add", "path": "/spec/template/spec/containers/0/command/1",
              "value": _gang_flag()}
    else:
        raise LabError("the training-operator Deployment has no container command to extend: "
                       "its manifest changed upstream; check the training_operator pin")
    kubectl("patch", "deployment", "training-operator", "-n", "kubeflow", "--type=json",
            "-p", json.dumps([op]))
    return True


def install_training_operator(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install the Training Operator standalone, patched to gang-schedule with Volcano."""
    print(f"installing the Training Operator {versions.pin('training_operator')} "
          "(gang scheduler: volcano)")
    existing = kubectl("get", "deployment", "training-operator", "-n", "kubeflow", "-o", "json",
                       check=False, timeout=60)
    command: list[str] = []
    if existing.returncode == 0:
        command = json.loads(existing.stdout)["spec"]["template"]["spec"]["containers"][0].get(
            "command") or []
    if _gang_flag() in command:
        # Re-applying would take the patched command back (server-side apply owns the field)
        # and roll the operator twice; it is installed and patched already.
        print("  already installed and patched")
    else:
        require_tools("git")
        _apply_remote(training_operator_kustomization(), what="apply the Training Operator",
                      timeout=timeout, kustomize=True)
        patch_training_operator()
    rollout("kubeflow", "training-operator", timeout)


def up(*, components: Iterable[str] = COMPONENTS, gpus: int = TOTAL_FAKE_GPUS,
       timeout: float = INSTALL_TIMEOUT, build_image: bool = True) -> dict[str, Any]:
    """``make cluster-up``: everything the labs' ``BACKEND="kind"`` needs, idempotently.

    Args:
        components: which installs to run, in the order of :data:`COMPONENTS`.
        gpus: fake GPUs in all, spread over the workers.
        timeout: bound of each wait, in seconds.
        build_image: build the training image and load it into the nodes.

    Returns:
        A summary: cluster name, context, fake GPU layout, installed components, image.
    """
    wanted = list(components)
    unknown = sorted(set(wanted) - set(COMPONENTS))
    if unknown:
        raise LabError(f"unknown component(s) {unknown}: choose from {', '.join(COMPONENTS)}")
    require_tools("docker", "kind", "kubectl")
    check_docker()
    check_kind_version()
    create_cluster()
    wait_nodes_ready()
    layout = patch_fake_gpus(gpus)
    steps = {"volcano": install_volcano, "cert-manager": install_cert_manager,
             "kserve": install_kserve, "training-operator": install_training_operator}
    if "kserve" in wanted and "cert-manager" not in wanted:
        wanted.append("cert-manager")  # KServe's webhooks cannot get certificates without it
    done = []
    for name in COMPONENTS:
        if name in wanted:
            steps[name](timeout)
            done.append(name)
    image = ensure_training_image() if build_image else None
    print(f"cluster ready: context {CONTEXT}; run the labs with BACKEND=\"kind\"")
    return {"cluster": CLUSTER_NAME, "context": CONTEXT, "gpus": layout, "installed": done,
            "training_image": image}


def down() -> bool:
    """``make cluster-down``: delete the kind cluster. Safe to run twice."""
    return delete_cluster()


# --------------------------------------------------------------------------- training image
def _image_sources() -> list[tuple[str, Path]]:
    root = paths.ROOT
    files = [(f"helpers/{p.relative_to(root / 'helpers').as_posix()}", p)
             for p in sorted((root / "helpers").rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".typed")]
    files += [(f"data/{p.name}", p) for p in sorted((root / "data").iterdir()) if p.is_file()]
    files += [("requirements.lock", root / "requirements.lock"),
              ("train.Dockerfile", root / "cluster" / "kind" / "train.Dockerfile")]
    return files


def training_image_tag() -> str:
    """``kflabs-train:<hash>``: a hash of everything that goes into the image.

    A change to the kit's code, data, lock or base image gives a new tag, so a node never
    runs a stale image that happens to share a tag (pods use ``imagePullPolicy: Never``).
    """
    digest = hashlib.sha256(versions.pin("training_python_image").encode())
    for rel, path in _image_sources():
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{TRAINING_IMAGE_REPO}:{digest.hexdigest()[:12]}"


def stage_training_context(dest: Path | None = None) -> Path:
    """Copy just the image's inputs into ``build/kind/train-context`` (not the whole repo).

    Sending the repository as the Docker build context would upload .venv and build/.
    """
    dest = dest or paths.build_dir() / "kind" / "train-context"
    if dest.exists():
        shutil.rmtree(dest)
    for rel, src in _image_sources():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def ensure_training_image(cluster: str = CLUSTER_NAME) -> str:
    """Build the training image if this Docker lacks it, then load it into the kind nodes.

    Returns:
        The image reference, ``kflabs-train:<hash>``.
    """
    require_tools("docker", "kind")
    tag = training_image_tag()
    present = run(["docker", "image", "inspect", tag], timeout=60, check=False)
    if present.returncode != 0:
        context = stage_training_context()
        print(f"building the training image {tag} (first time: a few minutes)")
        run(["docker", "build", "-f", str(context / "train.Dockerfile"), "--build-arg",
             f"PYTHON_IMAGE={versions.pin('training_python_image')}", "-t", tag, str(context)],
            timeout=1800)
    # kind skips nodes that already hold this image ID, so a re-run is quick.
    run(["kind", "load", "docker-image", tag, "--name", cluster], timeout=900)
    return tag


# --------------------------------------------------------------------------- labs: objects
def api_client(target: backend.Backend | None = None):
    """A kubernetes ``ApiClient`` for the kind cluster (or the resolved ``target`` backend)."""
    if target is not None and target.is_cluster:
        return k8s.connect(target.kubeconfig, target.context)
    kubeconfig = backend.default_kubeconfig()
    problem = backend.probe(kubeconfig, CONTEXT)
    if problem:
        raise BackendUnavailable(f"the kind cluster is not reachable: {problem}. Fix: "
                                 '`make cluster-up`, or run the lab with BACKEND="sim"')
    return k8s.connect(kubeconfig, CONTEXT)


def _training_dir() -> Path:
    return paths.manifests_dir("training")


def _one(path: Path, kind: str) -> dict:
    docs = [d for d in k8s.load_manifests(path) if d.get("kind") == kind]
    if len(docs) != 1:
        raise ManifestError(f"{path} should hold exactly one {kind}, found {len(docs)}")
    return docs[0]


def model_pvc_manifest() -> dict:
    """The model volume's PersistentVolumeClaim (``cluster/manifests/training/10-model-pvc.yaml``)."""
    return _one(_training_dir() / "10-model-pvc.yaml", "PersistentVolumeClaim")


def ensure_model_pvc(target: backend.Backend | None = None, *, api=None) -> str:
    """Create the model namespace and PVC if missing (idempotent); return the PVC name.

    kind's default StorageClass binds the volume when its first pod starts, so the PVC stays
    Pending until the training job runs: that is expected, not an error.
    """
    api = api or api_client(target)
    pvc = model_pvc_manifest()
    k8s.ensure_namespace(api, pvc["metadata"]["namespace"])
    k8s.apply(api, pvc)
    return pvc["metadata"]["name"]


def delete_model_pvc(target: backend.Backend | None = None, *, api=None) -> bool:
    """Delete the model PVC (ignore-not-found; the model on it goes too). Safe twice."""
    return k8s.delete(api or api_client(target), model_pvc_manifest())


def training_job_manifest(image: str, *, seed: int = 42, fmt: str = "json",
                          model_name: str = "iris", n_estimators: int | None = None) -> dict:
    """The XGBoostJob of ``20-xgboostjob.yaml`` with the image and training arguments set.

    Args:
        image: the loaded training image (:func:`ensure_training_image`).
        seed: seed of the split and of XGBoost (as ``python -m helpers.train --seed``).
        fmt: ``json`` or ``ubj``: XGBoost's own format (``save_model``).
        model_name: the model folder on the PVC, and the name KServe serves it under.
        n_estimators: boosting rounds; None keeps helpers.training's default.
    """
    from helpers import training

    if fmt not in training.FORMATS:
        raise ManifestError(f"format {fmt!r}: choose one of {', '.join(training.FORMATS)}")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", model_name):
        raise ManifestError(f"model name {model_name!r} must be a DNS-1123 label (it becomes a "
                            "folder on the PVC and part of KServe's URLs)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ManifestError(f"seed must be an integer, got {seed!r}")
    job = copy.deepcopy(_one(_training_dir() / "20-xgboostjob.yaml", "XGBoostJob"))
    args = ["--output-dir", "/mnt/models", "--seed", str(seed), "--format", fmt,
            "--name", model_name]
    if n_estimators is not None:
        args += ["--n-estimators", str(int(n_estimators))]
    for spec in job["spec"]["xgbReplicaSpecs"].values():
        container = spec["template"]["spec"]["containers"][0]
        container["image"] = image
        container["args"] = list(args)
    return job


def _job_ref(job: dict) -> tuple[str, str, str, str, str]:
    group, version = job["apiVersion"].split("/")
    return group, version, job["metadata"]["namespace"], "xgboostjobs", job["metadata"]["name"]


def _get_custom(api, ref: tuple[str, str, str, str, str]) -> dict | None:
    """Read a custom object ``(group, version, namespace, plural, name)``; None if absent."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    group, version, namespace, plural, name = ref
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            group, version, namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _conditions(obj: dict | None) -> dict[str, dict]:
    return {c.get("type"): c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def delete_training_job(target: backend.Backend | None = None, *, api=None,
                        name: str = TRAINING_JOB, wait: float = 60.0) -> bool:
    """Delete the XGBoostJob and its pods (ignore-not-found), waiting until it is gone."""
    api = api or api_client(target)
    ref = {"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob",
           "metadata": {"name": name, "namespace": MODEL_NAMESPACE}}
    deleted = k8s.delete(api, ref, propagation="Foreground")
    if deleted and wait:
        group, version = ref["apiVersion"].split("/")
        k8s.wait_for(lambda: _get_custom(api, (group, version, MODEL_NAMESPACE, "xgboostjobs",
                                          name)) is None,
                     wait, f"XGBoostJob {MODEL_NAMESPACE}/{name} to be deleted", interval=1.0,
                     diagnostics=lambda: k8s.diagnose(api, MODEL_NAMESPACE))
    return deleted


def _pod_log(api, namespace: str, pod: str, lines: int = 20) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        return client.CoreV1Api(api).read_namespaced_pod_log(pod, namespace, tail_lines=lines)
    except ApiException as exc:
        return f"(no log: {exc.reason})"


@dataclass
class TrainingRun:
    """What a cluster training run showed: the gang, where it ran, where the model went."""

    job: str
    namespace: str
    succeeded: bool
    model_uri: str
    model_file: str
    pods: dict[str, dict[str, str]] = field(default_factory=dict)
    podgroup_phases: list[str] = field(default_factory=list)
    podgroup_min_member: int | None = None
    master_log: str = ""

    @property
    def accuracy(self) -> float | None:
        """Held-out accuracy the master printed (``python -m helpers.train``), if it did."""
        match = re.search(r"test accuracy ([0-9.]+)", self.master_log)
        return float(match.group(1)) if match else None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict for ``results.write_results``."""
        return {
            "job": self.job, "namespace": self.namespace, "succeeded": self.succeeded,
            "model_uri": self.model_uri, "model_file": self.model_file, "pods": self.pods,
            "schedulers": sorted({p["scheduler"] for p in self.pods.values()}),
            "podgroup_phases": self.podgroup_phases,
            "podgroup_min_member": self.podgroup_min_member, "accuracy": self.accuracy,
        }


def run_training_job(target: backend.Backend | None = None, *, seed: int = 42,
                     fmt: str = "json", model_name: str = "iris",
                     n_estimators: int | None = None, image: str | None = None,
                     timeout: float = 600.0, api=None) -> TrainingRun:
    """Train the Iris model on the cluster as a gang-scheduled XGBoostJob, onto the PVC.

    Builds/loads the training image (unless ``image`` is given), makes sure the model PVC
    exists, replaces any previous run of the job, and watches it to the end, recording what
    shows the gang scheduling: the PodGroup the operator made (its phases and minMember)
    and every pod's scheduler and node. The operator deletes the PodGroup when the job ends,
    so it is observed while the job runs.

    Args:
        target: the resolved backend (default: the kind context).
        seed, fmt, model_name, n_estimators: as ``python -m helpers.train``.
        image: an already loaded image reference.
        timeout: seconds to wait for the job to finish.

    Returns:
        A :class:`TrainingRun`; ``model_uri`` is the ``storageUri`` for the InferenceService.

    Raises:
        WaitTimeout: the job did not finish; the message holds pods, events and PodGroups.
        LabError: the job failed; the message holds the master's log and the diagnostics.
    """
    api = api or api_client(target)
    image = image or ensure_training_image()
    pvc = ensure_model_pvc(api=api)
    job = training_job_manifest(image, seed=seed, fmt=fmt, model_name=model_name,
                                n_estimators=n_estimators)
    name, ns = job["metadata"]["name"], job["metadata"]["namespace"]
    delete_training_job(api=api, name=name)
    k8s.apply(api, job)
    run_ = TrainingRun(job=name, namespace=ns, succeeded=False,
                       model_uri=f"pvc://{pvc}/{model_name}/",
                       model_file=f"{model_name}/model.{fmt}")
    group, version, _, plural, _ = _job_ref(job)

    def observe() -> bool:
        for pg in k8s.podgroups(api, ns):
            if pg["metadata"]["name"] == name:
                phase = (pg.get("status") or {}).get("phase", "Pending")
                if not run_.podgroup_phases or run_.podgroup_phases[-1] != phase:
                    run_.podgroup_phases.append(phase)
                run_.podgroup_min_member = pg.get("spec", {}).get("minMember")
        for pod in k8s.pods(api, ns, f"training.kubeflow.org/job-name={name}"):
            run_.pods[pod.metadata.name] = {
                "scheduler": pod.spec.scheduler_name or "",
                "node": pod.spec.node_name or "",
                "phase": pod.status.phase or "",
            }
        conds = _conditions(_get_custom(api, (group, version, ns, plural, name)))
        return any(conds.get(t, {}).get("status") == "True" for t in ("Succeeded", "Failed"))

    k8s.wait_for(observe, timeout, f"XGBoostJob {ns}/{name} to finish", interval=2.0,
                 diagnostics=lambda: k8s.diagnose(api, ns))
    conds = _conditions(_get_custom(api, (group, version, ns, plural, name)))
    master = next((p for p in run_.pods if "-master-" in p), None)
    run_.master_log = _pod_log(api, ns, master) if master else ""
    run_.succeeded = conds.get("Succeeded", {}).get("status") == "True"
    if not run_.succeeded:
        failed = conds.get("Failed", {})
        raise LabError(f"XGBoostJob {ns}/{name} failed: {failed.get('reason', '?')}: "
                       f"{failed.get('message', '')}\nmaster log:\n{run_.master_log}\n"
                       f"{k8s.diagnose(api, ns)}")
    return run_


# --------------------------------------------------------------------------- labs: model volume
LOADER_POD = "model-store-loader"
#: Runs inside the loader pod: unpack the base64 tar.gz from stdin into the volume, replacing
#: that model's folder, with tarfile's "data" filter (no absolute paths, links or devices).
_EXTRACT = (
    "import base64, io, shutil, sys, tarfile, pathlib; name = sys.argv[1]; "
    "shutil.rmtree(pathlib.Path('/mnt/models', name), ignore_errors=True); "
    "tarfile.open(fileobj=io.BytesIO(base64.b64decode(sys.stdin.read())), mode='r:gz')"
    ".extractall('/mnt/models', filter='data'); "
    "print('\\n'.join(sorted(str(p) for p in pathlib.Path('/mnt/models', name).rglob('*'))))"
)


def loader_pod_manifest(image: str) -> dict:
    """A short-lived pod that mounts the model PVC, for copying a model onto it."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": LOADER_POD, "namespace": MODEL_NAMESPACE,
                     "labels": {"app.kubernetes.io/part-of": "kflabs"}},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "loader", "image": image, "imagePullPolicy": "Never",
                "command": ["sleep", "600"],  # deleted as soon as the copy is done
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"cpu": "500m", "memory": "256Mi"}},
                "volumeMounts": [{"name": "model-store", "mountPath": "/mnt/models"}],
            }],
            "volumes": [{"name": "model-store",
                         "persistentVolumeClaim": {"claimName": MODEL_PVC}}],
        },
    }


def model_payload(local_dir: str | Path, name: str) -> str:
    """The model folder as base64 text of a tar.gz whose top folder is ``name``.

    Raises:
        ModelStoreError: ``local_dir`` is not a folder holding exactly one model file.
    """
    import base64
    import io
    import tarfile

    from helpers.model_store import find_model_file

    folder = paths.resolve(local_dir)
    find_model_file(folder)  # the one-model-file rule KServe's xgbserver applies
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(folder.iterdir()):
            if path.is_file():
                tar.add(path, arcname=f"{name}/{path.name}")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def extract_on_loader(payload: str, name: str, timeout: float = 120.0) -> list[str]:
    """Unpack ``payload`` into ``/mnt/models/<name>`` through the loader pod; list the files."""
    out = kubectl("exec", "-i", "-n", MODEL_NAMESPACE, LOADER_POD, "--", "python", "-c",
                  _EXTRACT, name, input_text=payload, timeout=timeout).stdout
    return [line for line in out.splitlines() if line.strip()]


def _loader_phase(api) -> str | None:
    """The loader pod's phase, or None when there is no such pod."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        pod = client.CoreV1Api(api).read_namespaced_pod(LOADER_POD, MODEL_NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return pod.status.phase


def upload_model(local_dir: str | Path, *, name: str | None = None,
                 target: backend.Backend | None = None, timeout: float = 180.0,
                 api=None) -> str:
    """Copy a model folder from the laptop onto the model PVC (``/mnt/models/<name>``).

    For labs that train in the notebook (lab 03, lab 04's formats) and then serve on the
    cluster: a short-lived pod mounts the PVC, the folder is streamed in, the pod is deleted.

    Args:
        local_dir: a model folder holding exactly one model file (e.g. ``build/model-store/iris``).
        name: the folder name on the PVC (default: ``local_dir``'s name).
        target: the resolved kind backend.
        timeout: seconds to wait for the loader pod to start.

    Returns:
        The ``storageUri`` for an InferenceService: ``pvc://model-store/<name>/``.
    """
    folder = paths.resolve(local_dir)
    name = name or folder.name
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name):
        raise ManifestError(f"model name {name!r} must be a DNS-1123 label (lowercase letters, "
                            "digits and '-')")
    payload = model_payload(folder, name)
    api = api or api_client(target)
    ensure_model_pvc(api=api)
    pod = loader_pod_manifest(ensure_training_image())
    if k8s.delete(api, pod):  # a leftover from an interrupted copy: a pod spec is immutable
        k8s.wait_for(lambda: _loader_phase(api) is None, 60, f"the old {LOADER_POD} to go",
                     interval=1.0)
    k8s.apply(api, pod)
    try:
        k8s.wait_for(lambda: _loader_phase(api) == "Running", timeout,
                     f"pod {MODEL_NAMESPACE}/{LOADER_POD} to run", interval=1.0,
                     diagnostics=lambda: k8s.diagnose(api, MODEL_NAMESPACE))
        files = extract_on_loader(payload, name)
    finally:
        k8s.delete(api, pod)
    print(f"copied {folder} onto PVC {MODEL_PVC}: {', '.join(files)}")
    return f"pvc://{MODEL_PVC}/{name}/"


# --------------------------------------------------------------------------- labs: serving
def _pvc_exists(api, namespace: str, name: str) -> bool:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        client.CoreV1Api(api).read_namespaced_persistent_volume_claim(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _isvc_diagnostics(api, namespace: str, name: str) -> str:
    isvc = _get_custom(api, ("serving.kserve.io", "v1beta1", namespace, "inferenceservices", name))
    lines = [f"-- InferenceService {namespace}/{name} conditions:"]
    for ctype, c in _conditions(isvc).items():
        lines.append(f"  {ctype}={c.get('status')} {c.get('reason', '')}: "
                     f"{(c.get('message') or '')[:200]}")
    for pod in k8s.pods(api, namespace, f"serving.kserve.io/inferenceservice={name}"):
        for status in (pod.status.init_container_statuses or []):
            if status.name == "storage-initializer" and not (
                    status.state and status.state.terminated
                    and status.state.terminated.exit_code == 0):
                lines.append(f"  storage-initializer of {pod.metadata.name}:\n"
                             + _pod_log(api, namespace, pod.metadata.name, 10))
    return "\n".join(lines) + "\n" + k8s.diagnose(api, namespace)


def deploy_inference_service(isvc: dict, target: backend.Backend | None = None, *,
                             timeout: float = 300.0, api=None) -> dict[str, str]:
    """Apply an InferenceService (from :mod:`helpers.serving.isvc`) and wait until it is Ready.

    Checks first what newcomers trip on: the manifest is validated, it gets Standard mode if
    it names none, and a ``pvc://`` storageUri must name a PVC that exists in the same
    namespace (KServe would otherwise leave the predictor without ``/mnt/models``).

    Returns:
        ``{"name", "namespace", "url", "predictor_service"}``; port-forward to
        ``predictor_service`` port 80 to reach it from the laptop.

    Raises:
        ManifestError: the manifest is invalid, or its PVC is missing.
        WaitTimeout: not Ready in time; the message holds its conditions, the
            storage-initializer's log, pods and events.
    """
    from helpers.serving import isvc as isvc_mod

    doc = copy.deepcopy(isvc_mod.validate(isvc, for_kind=True))
    meta = doc["metadata"]
    annotations = meta.setdefault("annotations", {}) or {}
    annotations.setdefault(isvc_mod.DEPLOYMENT_MODE_ANNOTATION, "Standard")
    meta["annotations"] = annotations
    name, ns = meta["name"], meta["namespace"]
    api = api or api_client(target)
    uri = doc["spec"]["predictor"]["model"].get("storageUri", "")
    if uri.startswith("pvc://"):
        pvc = uri[len("pvc://"):].split("/", 1)[0]
        if not _pvc_exists(api, ns, pvc):
            raise ManifestError(
                f"storageUri {uri!r} names PVC {pvc!r}, which does not exist in namespace "
                f"{ns!r}: a PVC is only mountable in its own namespace. Create it and put the "
                "model on it first: helpers.cluster.run_training_job()")
    k8s.ensure_namespace(api, ns)
    k8s.apply(api, doc)

    def ready() -> bool:
        obj = _get_custom(api, ("serving.kserve.io", "v1beta1", ns, "inferenceservices", name))
        return _conditions(obj).get("Ready", {}).get("status") == "True"

    k8s.wait_for(ready, timeout, f"InferenceService {ns}/{name} to be Ready", interval=2.0,
                 diagnostics=lambda: _isvc_diagnostics(api, ns, name))
    obj = _get_custom(api, ("serving.kserve.io", "v1beta1", ns, "inferenceservices", name)) or {}
    return {"name": name, "namespace": ns, "url": (obj.get("status") or {}).get("url", ""),
            "predictor_service": f"{name}-predictor"}


def delete_inference_service(name: str = "iris", namespace: str = MODEL_NAMESPACE,
                             target: backend.Backend | None = None, *, api=None) -> bool:
    """Delete an InferenceService (ignore-not-found). Safe to run twice."""
    ref = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
           "metadata": {"name": name, "namespace": namespace}}
    return k8s.delete(api or api_client(target), ref)


class PortForward:
    """A managed ``kubectl port-forward`` to a Service, bound to 127.0.0.1.

    Use as a context manager, or call :meth:`close` (safe twice). ``url`` is the local base
    URL for :class:`helpers.serving.client.Endpoint`.
    """

    _LINE = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) ->")

    def __init__(self, service: str, namespace: str, port: int = 80, *, local_port: int = 0,
                 context: str = CONTEXT, kubeconfig: str | None = None, timeout: float = 30.0):
        args = ["kubectl", "--context", context]
        if kubeconfig:
            args += ["--kubeconfig", str(kubeconfig)]
        args += ["port-forward", "-n", namespace, f"svc/{service}",
                 f"{local_port or ''}:{int(port)}", "--address", "127.0.0.1"]
        self.args = args
        self.local_port: int | None = None
        require_tools("kubectl")
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      stdin=subprocess.DEVNULL, text=True)
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert self._proc.stdout is not None
            for line in self._proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while self.local_port is None:
            try:
                line = lines.get(timeout=max(0.05, deadline - time.monotonic()))
            except queue.Empty:
                line = ""
            match = self._LINE.search(line or "")
            if match:
                self.local_port = int(match.group(1))
            elif line is None or time.monotonic() >= deadline:
                err = self._stop_and_read_stderr()
                raise CommandFailed(
                    f"`{_short(args)}` did not start forwarding within {timeout:g} s: "
                    f"{_first_line(err)}. Is the Service there and its pod Running? "
                    f"(kubectl --context {context} get pods -n {namespace})",
                    args, self._proc.returncode, err)

    def _terminate(self) -> None:
        """End the kubectl process: SIGTERM, then SIGKILL after 10 s (no-op once it has ended)."""
        if self._proc.poll() is None:
            self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def _stop_and_read_stderr(self) -> str:
        self._terminate()
        # stdout belongs to the pump thread; stderr is ours, and the process has ended.
        return self._proc.stderr.read() if self._proc.stderr else ""

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<local port>``."""
        return f"http://127.0.0.1:{self.local_port}"

    def close(self) -> None:
        """Stop the port-forward process (safe to call twice)."""
        self._terminate()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream:
                stream.close()

    def __enter__(self) -> PortForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def port_forward(service: str, namespace: str = MODEL_NAMESPACE, port: int = 80, *,
                 target: backend.Backend | None = None, local_port: int = 0,
                 timeout: float = 30.0) -> PortForward:
    """Forward a local port on 127.0.0.1 to a Service (e.g. ``iris-predictor`` port 80).

    kind has no load balancer, so the predictor is reached this way from the laptop; in
    Standard mode the predictor Service answers directly, without a ``Host`` header.

    Returns:
        A running :class:`PortForward`; its ``url`` feeds ``Endpoint(base_url=...)``.
    """
    context = target.context if target is not None and target.context else CONTEXT
    kubeconfig = target.kubeconfig if target is not None else None
    return PortForward(service, namespace, port, local_port=local_port, context=context,
                       kubeconfig=kubeconfig, timeout=timeout)


def cleanup(target: backend.Backend | None = None, *, keep_pvc: bool = True) -> None:
    """The labs' clean-up on kind: InferenceService and training job, optionally the PVC."""
    api = api_client(target)
    delete_inference_service(api=api)
    delete_training_job(api=api)
    if not keep_pvc:
        delete_model_pvc(api=api)


# --------------------------------------------------------------------------- command line
def status() -> dict[str, Any]:
    """Whether the cluster exists, its nodes' fake GPUs, and which components are installed."""
    require_tools("kind", "kubectl")
    if not cluster_exists():
        return {"cluster": CLUSTER_NAME, "exists": False}
    gpus = {n["metadata"]["name"]: (n.get("status", {}).get("allocatable") or {}).get(
        GPU_RESOURCE, "0") for n in _nodes()}
    checks = {"volcano": ("volcano-system", "volcano-scheduler"),
              "cert-manager": ("cert-manager", "cert-manager-webhook"),
              "kserve": ("kserve", "kserve-controller-manager"),
              "training-operator": ("kubeflow", "training-operator")}
    installed = {name: kubectl("get", "deployment", dep, "-n", ns, check=False,
                               timeout=30).returncode == 0
                 for name, (ns, dep) in checks.items()}
    return {"cluster": CLUSTER_NAME, "exists": True, "context": CONTEXT, "gpus": gpus,
            "installed": installed}


def build_parser() -> argparse.ArgumentParser:
    """The command line behind ``make cluster-up`` / ``make cluster-down``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.cluster",
                                     description="The kit's kind cluster.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="create or reuse the cluster and install everything")
    p_up.add_argument("--only", nargs="+", choices=COMPONENTS, default=list(COMPONENTS),
                      help="install only these components")
    p_up.add_argument("--gpus", type=int, default=TOTAL_FAKE_GPUS,
                      help="fake example.com/gpu in all, spread over the workers")
    p_up.add_argument("--timeout", type=float, default=INSTALL_TIMEOUT,
                      help="seconds each wait may take")
    p_up.add_argument("--no-image", action="store_true",
                      help="skip building/loading the training image")
    sub.add_parser("down", help="delete the cluster")
    sub.add_parser("status", help="show the cluster, fake GPUs and installed components")
    sub.add_parser("image", help="build the training image and load it into the nodes")
    return parser


@cli_errors
def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m helpers.cluster``."""
    args = build_parser().parse_args(argv)
    if args.command == "up":
        summary = up(components=args.only, gpus=args.gpus, timeout=args.timeout,
                     build_image=not args.no_image)
        print(json.dumps(summary, indent=2))
    elif args.command == "down":
        down()
    elif args.command == "status":
        print(json.dumps(status(), indent=2))
    else:
        print(ensure_training_image())
    return 0


if __name__ == "__main__":
    sys.exit(main())
