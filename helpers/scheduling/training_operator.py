"""Kubeflow Training Operator + Volcano: the Deployment patch and the PodGroup it then creates.

The operator gang-schedules its jobs through Volcano only when it runs with
``--gang-scheduler-name=volcano``. That flag belongs on the operator's *Deployment*: the
Deployment's pod template is what the ReplicaSet turns into pods, so a patched template rolls
out a new operator pod, while an edit to the running pod is refused (a pod's command cannot
change) or lost with the next pod.

With the flag, for every job (e.g. an XGBoostJob) the operator creates a PodGroup named after
the job, ``minMember`` = all replicas, queue ``default`` (``spec.runPolicy.schedulingPolicy``
overrides minAvailable, queue, minResources and priorityClass), and creates the pods with
``schedulerName: volcano`` and the ``scheduling.k8s.io/group-name`` annotation once the
PodGroup has left Pending.
"""

from __future__ import annotations

import copy
from typing import Any

from helpers.errors import ManifestError
from helpers.scheduling.model import CPU, MEMORY, parse_quantity

FLAG = "--gang-scheduler-name=volcano"
NAMESPACE = "kubeflow"
DEPLOYMENT = "training-operator"


def gang_scheduler_patch() -> list[dict[str, Any]]:
    """The JSON patch that adds the flag to the operator container's command (index 1).

    Apply with ``kubectl patch -n kubeflow deployment training-operator --type=json -p '<patch>'``.
    """
    return [{"op": "add", "path": "/spec/template/spec/containers/0/command/1", "value": FLAG}]


def apply_json_patch(doc: dict[str, Any], patch: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply an RFC 6902 ``add`` patch to a copy of ``doc`` (enough to show what changes).

    Raises:
        ManifestError: An operation other than ``add`` or a path that does not exist.
    """
    out = copy.deepcopy(doc)
    for op in patch:
        if op.get("op") != "add":
            raise ManifestError(f"patch op {op.get('op')!r} is not supported here (supported: add)")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].strip("/").split("/")]
        node: Any = out
        for part in parts[:-1]:
            try:
                node = node[int(part)] if isinstance(node, list) else node[part]
            except (KeyError, IndexError, ValueError):
                raise ManifestError(f"patch path {op['path']}: {part!r} does not exist") from None
        last = parts[-1]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if index > len(node):
                raise ManifestError(f"patch path {op['path']}: index {index} is past the end")
            node.insert(index, op["value"])
        else:
            node[last] = op["value"]
    return out


def operator_deployment(image: str = "kubeflow/training-operator") -> dict[str, Any]:
    """The shape of the operator's Deployment in its standalone install (what the patch edits)."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": DEPLOYMENT, "namespace": NAMESPACE},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "training-operator", "image": image, "command": ["/manager"]}]}}}}


def format_quantity(resource: str, value: int) -> str:
    """A quantity as ``parse_quantity`` counts it, written back (cpu in m, memory in Mi)."""
    return f"{value}m" if resource == CPU else (f"{value // 2**20}Mi" if resource == MEMORY
                                                else str(value))


def operator_podgroup(job: dict[str, Any]) -> dict[str, Any]:
    """The PodGroup the operator creates for a Kubeflow job (XGBoostJob, PyTorchJob...).

    Args:
        job: The job manifest, with ``spec.<kind>ReplicaSpecs`` (e.g. ``xgbReplicaSpecs``).

    Raises:
        ManifestError: No replica specs found.
    """
    spec = job.get("spec", {})
    replica_specs = next((v for k, v in spec.items() if k.endswith("ReplicaSpecs")), None)
    if not isinstance(replica_specs, dict) or not replica_specs:
        raise ManifestError(f"{job.get('kind', 'job')} {job.get('metadata', {}).get('name')}: "
                            "field spec.*ReplicaSpecs is missing (e.g. xgbReplicaSpecs)")
    policy = spec.get("runPolicy", {}).get("schedulingPolicy", {})
    total = sum(int(r.get("replicas", 1)) for r in replica_specs.values())
    min_member = int(policy.get("minAvailable", total))
    resources: dict[str, int] = {}
    for role in replica_specs.values():
        for c in role["template"]["spec"]["containers"]:
            for name, qty in (c.get("resources", {}).get("requests") or {}).items():
                value = parse_quantity(qty, resource=name, where=f"{name} request")
                resources[name] = resources.get(name, 0) + value * int(role.get("replicas", 1))
    min_resources = policy.get("minResources") or {
        k: format_quantity(k, v) for k, v in resources.items()}
    name = job["metadata"]["name"]
    return {"apiVersion": "scheduling.volcano.sh/v1beta1", "kind": "PodGroup",
            "metadata": {"name": name, "namespace": job["metadata"].get("namespace", "default")},
            "spec": {"minMember": min_member, "queue": policy.get("queue", "default"),
                     "minResources": min_resources,
                     "priorityClassName": policy.get("priorityClass", "")}}


def xgboost_job(name: str = "xgboost-dist-iris", workers: int = 3) -> dict[str, Any]:
    """An XGBoostJob like the course's (1 Master + ``workers`` Workers), without schedulerName."""
    def role(replicas: int, policy: str) -> dict[str, Any]:
        return {"replicas": replicas, "restartPolicy": policy, "template": {"spec": {"containers": [
            {"name": "xgboost", "image": "ghcr.io/kubeflow/training-v1/xgboost-dist-iris",
             "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}}}
    return {"apiVersion": "kubeflow.org/v1", "kind": "XGBoostJob",
            "metadata": {"name": name, "namespace": "kubeflow"},
            "spec": {"xgbReplicaSpecs": {"Master": role(1, "Never"),
                                         "Worker": role(workers, "ExitCode")}}}
