"""What the control plane holds besides its processes: Volcano's CRDs and the fake KWOK nodes
(annotation ``kwok.x-k8s.io/node=fake``) with fake GPUs.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from helpers import paths, versions
from helpers.backend.kwok import build
from helpers.backend.kwok.layout import FAKE_NODE_ANNOTATION, kubeconfig_path
from helpers.errors import BackendUnavailable
from helpers.kube import client as k8s
from helpers.kube.names import GPU_RESOURCE

# --------------------------------------------------------------------------- cluster content


def volcano_crd_files() -> list[Path]:
    """Volcano's CRDs in the Go module cache, at the pin.

    Both ``config/crd/volcano/bases`` and ``config/crd/jobflow/bases``: vc-controller-manager
    watches JobFlows and JobTemplates too, and waits for those informers before its queue
    controller opens any Queue (without them no PodGroup is ever enqueued).

    Raises:
        BackendUnavailable: Go is missing or the module cannot be downloaded.
    """
    root = module_dir("volcano.sh/volcano", versions.pin("volcano")) / "config/crd"
    return sorted([*(root / "volcano/bases").glob("*.yaml"), *(root / "jobflow/bases").glob("*.yaml")])


def module_dir(module: str, version: str) -> Path:
    """Download ``module@version`` into the Go module cache (if needed); return its folder.

    Used to take upstream CRDs at test time rather than committing them.

    Raises:
        BackendUnavailable: Go is missing, or the proxy does not serve that version.
    """
    go = build.go_binary()
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"],
                          cwd=paths.build_dir() if paths.build_dir().is_dir() else paths.ROOT,
                          capture_output=True, text=True, env=build._go_env(go), check=False)
    info = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    if proc.returncode != 0 or not info.get("Dir"):
        raise BackendUnavailable(f"could not download Go module {module}@{version}: "
                                 f"{info.get('Error') or proc.stderr.strip()[-300:]}")
    return Path(info["Dir"])


def install_volcano_crds(log: Callable[[str], None]) -> None:
    api = k8s.connect(str(kubeconfig_path()))
    names = k8s.apply_crds(api, volcano_crd_files())
    log(f"  Volcano CRDs established: {len(names)}")


def fake_node(name: str, gpus: int, cpu: str = "32", memory: str = "256Gi",
              pods: int = 110) -> dict:
    """A Node object kwok will manage, with ``example.com/gpu`` capacity.

    Args:
        name: Node name.
        gpus: Whole ``example.com/gpu`` units (an extended resource: integers, no overcommit).
        cpu: CPU capacity (plenty by default: GPUs are the scarce resource in the labs).
        memory: Memory capacity.
        pods: Pod capacity.
    """
    res = {"cpu": cpu, "memory": memory, "pods": str(pods), GPU_RESOURCE: str(gpus)}
    key, value = FAKE_NODE_ANNOTATION
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {key: value},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "type": "kwok"}},
        "status": {"capacity": res, "allocatable": dict(res)},
    }


def create_fake_nodes(api, count: int, gpus: int, *, prefix: str = "kwok-node",
                      cpu: str = "32", memory: str = "256Gi", wait: float = 60) -> list[str]:
    """Replace every fake node with ``count`` fresh ones and wait until they are Ready.

    Args:
        api: A kubernetes ``ApiClient`` (see :func:`helpers.kube.client.connect`).
        count: Number of nodes.
        gpus: ``example.com/gpu`` per node.
        prefix: Node names are ``<prefix>-<i>``.
        cpu: CPU capacity per node.
        memory: Memory capacity per node.
        wait: Seconds to wait for kwok to report them Ready.

    Returns:
        The node names.
    """
    delete_fake_nodes(api)
    names = [f"{prefix}-{i}" for i in range(count)]
    for name in names:
        add_fake_node(api, fake_node(name, gpus, cpu=cpu, memory=memory))
    k8s.wait_nodes_ready(api, names, timeout=wait)
    return names


def add_fake_node(api, node: dict) -> None:
    """Create one Node from :func:`fake_node` and set its capacity on the status subresource.

    The capacity is written twice on purpose: a create keeps it today, but status belongs to
    the status subresource, which is where kind nodes get their GPUs patched too.
    """

    core = k8s.core(api)
    try:
        core.create_node(node)
    except k8s.ApiException as exc:
        if not k8s.status_is(exc, 409):
            raise
    core.patch_node_status(node["metadata"]["name"], {"status": node["status"]})


def delete_fake_nodes(api) -> None:
    """Delete every Node carrying kwok's annotation (others are left alone)."""

    core = k8s.core(api)
    key, value = FAKE_NODE_ANNOTATION
    for node in core.list_node().items:
        if (node.metadata.annotations or {}).get(key) == value:
            core.delete_node(node.metadata.name, grace_period_seconds=0)


