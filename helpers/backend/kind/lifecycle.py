"""The kind cluster's lifecycle: create or reuse it from ``cluster/kind/kind-config.yaml``, and patch
fake GPUs (``example.com/gpu``) onto the workers. Every step is idempotent and every wait bounded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from helpers import paths, versions
from helpers.errors import BackendUnavailable, LabError
from helpers.kube.kubectl import CommandFailed, _first_line, kubectl, require_tools, run
from helpers.kube.names import GPU_RESOURCE
from helpers.kube.names import KIND_CLUSTER_NAME as CLUSTER_NAME
from helpers.kube.names import KIND_CONTEXT as CONTEXT

#: Fake GPUs spread over the workers: the same 8 the scheduling model's cluster has, so the
#: labs' numbers agree (every lab pod asks for exactly one).
TOTAL_FAKE_GPUS = 8
#: Label kind-config.yaml puts on the nodes that get fake GPUs.
FAKE_GPU_LABEL = "kflabs.example.com/fake-gpus"
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
    if config is None and image is None:
        # A maintainer machine with no registry: the node image built by `make cluster-images`.
        from helpers.backend.kind.maintainer.kindconfig import local_cluster
        local = local_cluster()
        if local:
            config, image = local
            print(f"using the node image built here, {image}, and {config}")
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


def scenario_layout(workers: Sequence[str], node_gpus: Sequence[int]) -> dict[str, int]:
    """The fake GPUs each worker gets for a scheduling scenario's nodes (``node_gpus``).

    With no more scenario nodes than workers, worker ``i`` gets node ``i``'s GPUs and the
    others none, so the cluster holds the scenario's GPUs, node by node. With more (the
    chapter's 4 nodes on kind's 3 workers), the scenario's total is spread as
    :func:`gpu_layout` does.

    >>> scenario_layout(["w1", "w2", "w3"], [2, 2, 2])
    {'w1': 2, 'w2': 2, 'w3': 2}
    >>> scenario_layout(["w1", "w2", "w3"], [2, 2])
    {'w1': 2, 'w2': 2, 'w3': 0}
    >>> scenario_layout(["w1", "w2", "w3"], [2, 2, 2, 2])
    {'w1': 3, 'w2': 3, 'w3': 2}
    """
    if len(node_gpus) > len(workers):
        return gpu_layout(workers, sum(node_gpus))
    return {w: (node_gpus[i] if i < len(node_gpus) else 0) for i, w in enumerate(workers)}


def patch_fake_gpus(total: int = TOTAL_FAKE_GPUS, timeout: float = 60.0,
                    sleep=time.sleep, layout: dict[str, int] | None = None) -> dict[str, int]:
    """Advertise ``example.com/gpu`` on the workers by JSON-patching each node's status.

    An extended resource is a plain integer count: the scheduler treats it like any other
    resource but nothing on the node backs it, which is exactly what a lab about scheduling
    needs. ``~1`` encodes the ``/`` in the resource name (JSON Pointer). Idempotent: "add"
    replaces an existing value.

    Args:
        total: fake GPUs in all, spread by :func:`gpu_layout` (``make cluster-up``'s 8).
        layout: ``{worker: gpus}`` instead (a scheduling scenario's, :func:`scenario_layout`).

    Returns:
        ``{node: gpus}`` as now allocatable.
    """
    layout = layout if layout is not None else gpu_layout(worker_nodes(), total)
    total = sum(layout.values())
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


