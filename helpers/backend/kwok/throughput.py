"""``make bench``'s scheduling throughput on the local control plane: real schedulers vs the model.

:func:`throughput_comparison` (called by :mod:`helpers.tools.bench_controlplane`) creates 1,000
fake nodes, then the same one-GPU gangs for the model and for kube-scheduler and vc-scheduler,
and compares pods placed per second.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from helpers.backend.scheduling_run import _connect, node_objects
from helpers.kube import client as k8s
from helpers.scheduling.model import DEFAULT_SCHEDULER, GPU, load_manifests


def _throughput_manifests(folder: Path, scheduler: str, gangs: int, gang_size: int) -> Path:
    """Write the throughput scenario as manifests both the model and the cluster read."""
    import yaml

    ns = "kflabs-throughput"
    docs: list[dict] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    res = {"cpu": "10m", "memory": "16Mi", GPU: "1"}
    for g in range(gangs):
        group = f"gang-{g:04d}"
        if scheduler == "volcano":
            docs.append({"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
                         "metadata": {"name": group, "namespace": ns},
                         "spec": {"minMember": gang_size, "queue": "default"}})
        for i in range(gang_size):
            meta: dict[str, Any] = {"name": f"{group}-{i:02d}", "namespace": ns}
            if scheduler == "volcano":
                meta["annotations"] = {"scheduling.k8s.io/group-name": group}
            docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {
                "schedulerName": "volcano" if scheduler == "volcano" else DEFAULT_SCHEDULER,
                "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "worker", "image": "busybox:1.36.1",
                                "env": [{"name": "WORLD_SIZE",
                                         "value": str(gang_size if scheduler == "volcano" else 1)},
                                        {"name": "WORK_SECONDS", "value": "forever"}],
                                "resources": {"requests": dict(res), "limits": dict(res)}}]}})
    path = folder / f"throughput-{scheduler}.yaml"
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def throughput_comparison(nodes: int = 1000, gpus_per_node: int = 8, gangs: int = 100,
                          gang_size: int = 20, timeout: float = 600.0) -> dict:
    """Pods scheduled per second on the 1,000-node scenario: real schedulers vs the model.

    The same manifests (``gangs`` x ``gang_size`` one-GPU pods; PodGroups for Volcano) go to
    the model and to the running local control plane. On the cluster the scheduler is
    paused (SIGSTOP) while the pods are created, then resumed: the figure is pods bound per
    wall-clock second from the resume until the last binding, so pod creation by this
    client is not counted. The model's figure is pods placed per wall-clock second of
    :func:`helpers.scheduling.simulate`.

    Returns:
        Per scheduler: pods, real and model pods/s, and real/model as a ratio.
    """
    import tempfile

    from helpers.backend.kwok import nodes as kwok_nodes
    from helpers.backend.kwok import supervisor
    from helpers.scheduling.model import make_nodes
    from helpers.scheduling.simulate import simulate

    api = _connect(None, None)
    core = k8s.core(api)
    node_specs = make_nodes(nodes, gpus_per_node, cpu="64", memory="512Gi", prefix="bench")
    kwok_nodes.delete_fake_nodes(api)
    start = time.perf_counter()
    for obj in node_objects(node_specs):
        kwok_nodes.add_fake_node(api, obj)
    k8s.wait_nodes_ready(api, [n.name for n in node_specs], timeout=300)
    out: dict[str, Any] = {"nodes": nodes, "node_create_seconds": round(time.perf_counter() - start, 1)}
    total = gangs * gang_size
    with tempfile.TemporaryDirectory() as tmp:
        for scheduler, component in (("default", "kube-scheduler"), ("volcano", "vc-scheduler")):
            path = _throughput_manifests(Path(tmp), scheduler, gangs, gang_size)
            manifests = load_manifests([path])
            t = time.perf_counter()
            model = simulate(manifests, node_specs, scheduler)
            model_s = time.perf_counter() - t
            placed = sum(j.bound + j.completed for j in model.jobs.values())
            docs = k8s.load_manifests(path)
            k8s.delete_namespace(api, "kflabs-throughput", timeout=300)
            k8s.ensure_namespace(api, "kflabs-throughput")
            supervisor.pause(component)
            try:
                for doc in docs[1:]:
                    if doc["kind"] == "Pod":
                        core.create_namespaced_pod("kflabs-throughput", doc)
                    else:
                        k8s.apply(api, doc)
            finally:
                supervisor.resume(component)
            t = time.perf_counter()

            def unbound() -> int:
                return len(core.list_namespaced_pod("kflabs-throughput",
                                                    field_selector="spec.nodeName=").items)

            k8s.wait_for(lambda: unbound() == 0, timeout, f"{total} pods to be bound by {component}",
                         interval=0.5)
            real_s = time.perf_counter() - t
            real_rate, model_rate = total / real_s, placed / model_s
            out[scheduler] = {"pods": total, "real_pods_per_second": round(real_rate, 1),
                              "model_pods_per_second": round(model_rate, 1),
                              "model_placed": placed,
                              "real_over_model": round(real_rate / model_rate, 4)}
        k8s.delete_namespace(api, "kflabs-throughput", timeout=300)
    kwok_nodes.delete_fake_nodes(api)
    return out
