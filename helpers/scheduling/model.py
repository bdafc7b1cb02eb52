"""Objects of the scheduling model, parsed from the same manifests a cluster gets.

Parsing reads ``cluster/manifests/scheduling`` (or any file/directory given) with
:func:`load_manifests`. Each *file* is one apply step, applied in order; documents inside a
file are applied in their order. Supported kinds (anything else is a
:class:`helpers.errors.ManifestError` naming the file, the field and what is supported):

* ``v1 Namespace``, ``v1 Service`` (headless; recorded, no scheduling effect: it only makes
  the workers' DNS names resolve),
* ``v1 Pod``, ``batch/v1 Job`` (``completionMode: Indexed``), ``apps/v1 Deployment``,
* ``scheduling.k8s.io/v1 PriorityClass``,
* ``scheduling.volcano.sh/v1beta1 PodGroup`` and ``Queue``, ``batch.volcano.sh/v1alpha1 Job``.

A bare pod belongs to the job named by its PodGroup annotation, else by its ``subdomain``
(the headless Service its peers share), else it is a job of its own.

A worker's behaviour comes from its container env, exactly as on a cluster: ``WORLD_SIZE``
(how many peers it waits for, itself included) and ``WORK_SECONDS`` (seconds of work after
the rendezvous, or ``forever`` for a service that never exits).

The public result of a run, :class:`SchedulingResult`, is the shape every backend returns
(see :mod:`helpers.scheduling` for the field-by-field description).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers.errors import ManifestError, yaml_problem
from helpers.kube.names import DNS1123_LABEL, DNS1123_SUBDOMAIN, GPU_RESOURCE
from helpers.scheduling.results import (  # noqa: F401 - re-exported
    SERVICE_KIND,
    JobResult,
    PodGroupResult,
    SchedulingResult,
)

#: Resource names of the model. ``pods`` is the node's pod-count limit, not a request.
CPU = "cpu"
MEMORY = "memory"
GPU = GPU_RESOURCE
DEFAULT_SCHEDULER = "default-scheduler"
VOLCANO = "volcano"
GROUP_ANNOTATION = "scheduling.k8s.io/group-name"
#: Priority classes every cluster has (kube-apiserver creates them).
SYSTEM_PRIORITY_CLASSES = {"system-cluster-critical": 2_000_000_000,
                           "system-node-critical": 2_000_001_000}
VCJOB_EVENTS = ("*", "PodPending", "PodRunning", "PodEvicted", "PodFailed", "Unknown",
                "TaskCompleted", "TaskFailed", "OutOfSync", "CommandIssued", "JobUpdated")
VCJOB_ACTIONS = ("AbortJob", "RestartJob", "RestartTask", "RestartPod", "RestartPartition",
                 "TerminateJob", "CompleteJob", "ResumeJob")
VCJOB_PLUGINS = ("svc", "env", "ssh")
SUPPORTED_KINDS = (
    "v1/Namespace", "v1/Service", "v1/Pod", "batch/v1/Job", "apps/v1/Deployment",
    "scheduling.k8s.io/v1/PriorityClass", "scheduling.volcano.sh/v1beta1/PodGroup",
    "scheduling.volcano.sh/v1beta1/Queue", "batch.volcano.sh/v1alpha1/Job",
    "scheduling.k8s.io/v1alpha1/Workload",
)
#: Kubernetes 1.35's limit on ``spec.podGroups`` of a Workload (``WorkloadMaxPodGroups``).
WORKLOAD_MAX_POD_GROUPS = 8

_BIN = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DEC = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "P": 1e15, "E": 1e18}
_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def parse_quantity(value: Any, *, resource: str, where: str) -> int:
    """Parse a Kubernetes quantity into the model's integer unit.

    CPU becomes millicores, memory bytes, every other resource a whole count.

    Args:
        value: The quantity as written (``"100m"``, ``"64Mi"``, ``2``).
        resource: Resource name, which selects the unit.
        where: ``file: field`` used in the error message.

    Raises:
        ManifestError: Not a quantity, negative, or a fraction of an integer resource.
    """
    text = str(value).strip()
    m = _QTY.match(text)
    if not m:
        raise ManifestError(f"{where}: {value!r} is not a Kubernetes quantity "
                            f"(supported: e.g. 500m, 2, 64Mi, 1Gi)")
    number, suffix = float(m.group(1)), m.group(2) or ""
    scaled = number * (_BIN[suffix] if suffix in _BIN else _DEC[suffix])
    if scaled < 0:
        raise ManifestError(f"{where}: negative quantity {value!r}")
    if resource == CPU:
        return math.ceil(round(scaled * 1000, 6))
    result = round(scaled, 6)
    if resource != MEMORY and result != int(result):
        raise ManifestError(f"{where}: {resource} must be a whole number, got {value!r} "
                            "(extended resources cannot be fractional)")
    return math.ceil(result)


# --------------------------------------------------------------------------- objects


@dataclass
class NodeSpec:
    """A node: allocatable resources (cpu millicores, memory bytes, counts) and a pod limit."""

    name: str
    allocatable: dict[str, int]
    max_pods: int = 110


@dataclass
class PodSpec:
    """One pod as the schedulers see it."""

    name: str
    job: str
    requests: dict[str, int]
    scheduler_name: str = DEFAULT_SCHEDULER
    priority: int = 0
    group: str | None = None
    #: ``spec.workloadRef`` as ``(workload name, podGroup name)`` (Workload API, 1.35 alpha).
    workload_ref: tuple[str, str] | None = None
    world_size: int = 1
    work_seconds: float | None = 60.0  # None: runs forever (a service)
    source: str = ""


@dataclass
class PodGroupSpec:
    """A Volcano PodGroup: the gang (``minMember``), its queue and optional ``minResources``."""

    name: str
    min_member: int
    queue: str = "default"
    min_resources: dict[str, int] | None = None
    priority: int = 0
    source: str = ""
    #: Set for the PodGroup a Volcano Job controller creates (pods come once it is Inqueue).
    vcjob: str | None = None


@dataclass
class WorkloadSpec:
    """A ``scheduling.k8s.io/v1alpha1`` Workload: its pod groups and their gang ``minCount``.

    ``pod_groups`` maps each pod group's name to its ``policy.gang.minCount``, or None for
    ``policy.basic`` (pods scheduled one at a time, as without a Workload).
    """

    name: str
    pod_groups: dict[str, int | None]
    source: str = ""


@dataclass
class QueueSpec:
    """A Volcano Queue: weight, optional capability (per resource) and reclaimable."""

    name: str
    weight: int = 1
    capability: dict[str, int] = field(default_factory=dict)
    reclaimable: bool = True
    priority: int = 0
    source: str = ""


@dataclass
class JobSpec:
    """A workload that yields pods: batch/v1 Job, Deployment, Volcano Job or bare pods."""

    name: str
    kind: str  # "Job" | "Deployment" | "VolcanoJob" | "Pods"
    pods: list[PodSpec]
    source: str = ""
    min_available: int | None = None
    queue: str | None = None


@dataclass
class ApplyStep:
    """The objects of one manifest file, applied together."""

    source: str
    jobs: list[JobSpec] = field(default_factory=list)
    podgroups: list[PodGroupSpec] = field(default_factory=list)
    queues: list[QueueSpec] = field(default_factory=list)
    workloads: list[WorkloadSpec] = field(default_factory=list)
    services: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    priority_classes: dict[str, int] = field(default_factory=dict)
    #: Bare pods in document order: the order they are created in (A0, B0, A1, ...).
    bare_pods: list[PodSpec] = field(default_factory=list)


@dataclass
class Manifests:
    """Every apply step, in order."""

    steps: list[ApplyStep]

    @property
    def jobs(self) -> list[JobSpec]:
        """All workloads in apply order."""
        return [j for s in self.steps for j in s.jobs]

    @property
    def podgroups(self) -> list[PodGroupSpec]:
        """All PodGroups in apply order."""
        return [g for s in self.steps for g in s.podgroups]

    @property
    def queues(self) -> list[QueueSpec]:
        """All Queues in apply order."""
        return [q for s in self.steps for q in s.queues]

    @property
    def workloads(self) -> list[WorkloadSpec]:
        """All Workloads (kube-scheduler's gang groups) in apply order."""
        return [w for s in self.steps for w in s.workloads]

    def select(self, keep) -> Manifests:
        """A copy keeping only workloads (and their PodGroups) whose name satisfies ``keep``.

        Queues, Services and PriorityClasses are kept. Example:
        ``m.select(lambda name: name.startswith("team-b"))``.
        """
        steps = []
        for s in self.steps:
            steps.append(ApplyStep(
                source=s.source, jobs=[j for j in s.jobs if keep(j.name)],
                podgroups=[g for g in s.podgroups if keep(g.name)], queues=list(s.queues),
                workloads=[w for w in s.workloads if keep(w.name)],
                services=list(s.services), namespaces=list(s.namespaces),
                priority_classes=dict(s.priority_classes),
                bare_pods=[p for p in s.bare_pods if keep(p.job)]))
        return Manifests(steps)


def make_nodes(count: int, gpus: int = 2, cpu: str | int = "4", memory: str = "8Gi", *,
               max_pods: int = 110, prefix: str = "node") -> list[NodeSpec]:
    """Build ``count`` identical nodes with ``gpus`` of ``example.com/gpu`` each.

    Args:
        count: Number of nodes (>= 1).
        gpus: ``example.com/gpu`` per node (the lab's scarce resource, patched onto kind nodes).
        cpu: Allocatable CPU as a quantity.
        memory: Allocatable memory as a quantity.
        max_pods: The kubelet's pod limit.
        prefix: Node name prefix; nodes are ``<prefix>-0`` ... (zero-padded for sorting).

    Raises:
        ManifestError: A non-positive count or a negative quantity.
    """
    if int(count) < 1:
        raise ManifestError(f"nodes: need at least 1 node, got {count}")
    if int(gpus) < 0:
        raise ManifestError(f"node gpus: must be >= 0, got {gpus}")
    alloc = {CPU: parse_quantity(cpu, resource=CPU, where="node cpu"),
             MEMORY: parse_quantity(memory, resource=MEMORY, where="node memory"),
             GPU: int(gpus)}
    width = len(str(count - 1))
    return [NodeSpec(f"{prefix}-{i:0{width}d}", dict(alloc), max_pods) for i in range(count)]


# --------------------------------------------------------------------------- parsing


class _Doc:
    """Typed access to one YAML document with errors naming the file and field."""

    def __init__(self, data: dict, source: str):
        self.data = data
        self.source = source

    def err(self, path: str, problem: str) -> ManifestError:
        return ManifestError(f"{self.source}: field {path}: {problem}")

    def get(self, path: str, default: Any = ..., kind: type | tuple = object) -> Any:
        node: Any = self.data
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is ...:
                    raise self.err(path, "is required")
                return default
            node = node[part]
        if node is None and default is not ...:
            return default
        if not isinstance(node, kind) or (kind is int and isinstance(node, bool)):
            names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
            raise self.err(path, f"must be {names}, got {type(node).__name__} {node!r}")
        return node


def _requests(doc: _Doc, container: dict, path: str) -> dict[str, int]:
    res = container.get("resources") or {}
    if not isinstance(res, dict):
        raise doc.err(f"{path}.resources", "must be a mapping")
    requests = res.get("requests") or {}
    limits = res.get("limits") or {}
    out: dict[str, int] = {}
    # Kubernetes copies a limit into a missing request, so limits count as requests then.
    for section, values in (("limits", limits), ("requests", requests)):
        for name, qty in values.items():
            where = f"{doc.source}: field {path}.resources.{section}.{name}"
            out[name] = parse_quantity(qty, resource=name, where=where)
    for name in set(limits) & set(requests) - {CPU, MEMORY}:
        if parse_quantity(limits[name], resource=name, where=doc.source) != out[name]:
            raise doc.err(f"{path}.resources", f"extended resource {name}: requests must equal "
                          "limits (extended resources cannot be overcommitted)")
    return out


def _env_value(doc: _Doc, container: dict, path: str, name: str) -> str | None:
    for i, env in enumerate(container.get("env") or []):
        if isinstance(env, dict) and env.get("name") == name:
            if "value" not in env:
                raise doc.err(f"{path}.env[{i}]",
                              f"{name} must be a literal value (valueFrom is not modelled)")
            return str(env["value"])
    return None


def _pod_template(doc: _Doc, spec_path: str, *, name: str, job: str, steps_priorities: dict[str, int],  # noqa: PLR0912 - one check per pod field the model reads
                  group: str | None, scheduler_default: str | None = None) -> PodSpec:
    spec = doc.get(spec_path, kind=dict)
    containers = spec.get("containers")
    if not isinstance(containers, list) or not containers:
        raise doc.err(f"{spec_path}.containers", "must be a non-empty list")
    for key in ("initContainers", "affinity", "nodeSelector", "tolerations", "topologySpreadConstraints",
                "nodeName", "overhead", "schedulingGates", "resourceClaims"):
        if spec.get(key):
            raise doc.err(f"{spec_path}.{key}", "is not supported by the scheduling model (supported pod "
                          "fields: containers[].resources, containers[].env, schedulerName, "
                          "priorityClassName, hostname, subdomain, restartPolicy and other fields "
                          "with no scheduling effect)")
    requests: dict[str, int] = {}
    world = None
    work: float | None = None
    work_set = False
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            raise doc.err(f"{spec_path}.containers[{i}]", "must be a mapping")
        cpath = f"{spec_path}.containers[{i}]"
        for rname, qty in _requests(doc, c, cpath).items():
            requests[rname] = requests.get(rname, 0) + qty
        ws = _env_value(doc, c, cpath, "WORLD_SIZE")
        if ws is not None:
            if not ws.isdigit() or int(ws) < 1:
                raise doc.err(f"{cpath}.env.WORLD_SIZE", f"must be a positive integer, got {ws!r}")
            world = int(ws)
        wk = _env_value(doc, c, cpath, "WORK_SECONDS")
        if wk is not None:
            work_set = True
            if wk == "forever":
                work = None
            else:
                try:
                    work = float(wk)
                except ValueError:
                    raise doc.err(f"{cpath}.env.WORK_SECONDS",
                                  f"must be a number of seconds or 'forever', got {wk!r}") from None
                if work < 0:
                    raise doc.err(f"{cpath}.env.WORK_SECONDS", "must be >= 0")
    if world is None or not work_set:
        missing = [n for n, v in (("WORLD_SIZE", world), ("WORK_SECONDS", work_set)) if not v]
        raise doc.err(f"{spec_path}.containers[].env", f"missing {', '.join(missing)}: the model reads a "
                      "worker's peers and work time from these variables (see cluster/manifests/scheduling)")
    restart = spec.get("restartPolicy", "Always")
    if restart not in ("Always", "OnFailure", "Never"):
        raise doc.err(f"{spec_path}.restartPolicy", f"{restart!r} is not a restart policy "
                      "(supported: Always, OnFailure, Never)")
    if restart == "Always" and work is not None:
        raise doc.err(f"{spec_path}.restartPolicy", "Always restarts a worker that exits, so its "
                      "WORK_SECONDS would never end the pod: use Never (batch work) or "
                      "WORK_SECONDS 'forever' (a service)")
    scheduler = spec.get("schedulerName", scheduler_default or DEFAULT_SCHEDULER)
    if scheduler not in (DEFAULT_SCHEDULER, VOLCANO):
        raise doc.err(f"{spec_path}.schedulerName", f"{scheduler!r} is not modelled "
                      f"(supported: {DEFAULT_SCHEDULER}, {VOLCANO})")
    pc = spec.get("priorityClassName") or ""
    priority = 0
    if pc:
        if pc not in steps_priorities:
            raise doc.err(f"{spec_path}.priorityClassName", f"PriorityClass {pc!r} is not defined "
                          "(apply a scheduling.k8s.io/v1 PriorityClass first)")
        priority = steps_priorities[pc]
    if "priority" in spec and spec["priority"] != priority:
        raise doc.err(f"{spec_path}.priority", f"{spec['priority']!r} disagrees with priorityClassName "
                      f"{pc or '(none)'} = {priority}; the API server would reject it")
    ref = _workload_ref(doc, spec_path, spec, scheduler)
    return PodSpec(name=name, job=job, requests=requests, scheduler_name=scheduler, priority=priority,
                   group=group, workload_ref=ref, world_size=world, work_seconds=work,
                   source=doc.source)


def _workload_ref(doc: _Doc, spec_path: str, spec: dict, scheduler: str) -> tuple[str, str] | None:
    ref = spec.get("workloadRef")
    if ref is None:
        return None
    path = f"{spec_path}.workloadRef"
    if not isinstance(ref, dict):
        raise doc.err(path, "must be a mapping {name, podGroup}")
    if ref.get("podGroupReplicaKey"):
        raise doc.err(f"{path}.podGroupReplicaKey", "is not modelled (one replica per pod group)")
    unknown = sorted(set(ref) - {"name", "podGroup", "podGroupReplicaKey"})
    if unknown:
        raise doc.err(f"{path}.{unknown[0]}", "is not a WorkloadReference field "
                      "(fields: name, podGroup, podGroupReplicaKey)")
    name, group = ref.get("name"), ref.get("podGroup")
    for fname, value, pattern, what in (("name", name, DNS1123_SUBDOMAIN, "DNS subdomain"),
                                        ("podGroup", group, DNS1123_LABEL, "DNS label")):
        if not isinstance(value, str) or not pattern.match(value):
            raise doc.err(f"{path}.{fname}", f"is required and must be a {what}, got {value!r}")
    if scheduler != DEFAULT_SCHEDULER:
        raise doc.err(path, f"only kube-scheduler reads it (its GangScheduling plugin), but the pod "
                      f"names schedulerName {scheduler!r}: use {DEFAULT_SCHEDULER} or drop workloadRef")
    return name, group


def _parse_workload(doc: _Doc, step: ApplyStep, name: str) -> None:
    doc.get("spec", kind=dict)
    groups = doc.get("spec.podGroups", kind=list)
    if not groups or len(groups) > WORKLOAD_MAX_POD_GROUPS:
        raise doc.err("spec.podGroups", f"must have 1 to {WORKLOAD_MAX_POD_GROUPS} items, got {len(groups)}")
    ref = doc.get("spec.controllerRef", None, kind=dict)
    if ref is not None and not (ref.get("kind") and ref.get("name")):
        raise doc.err("spec.controllerRef", "needs kind and name (apiGroup is optional)")
    pod_groups: dict[str, int | None] = {}
    for i, g in enumerate(groups):
        path = f"spec.podGroups[{i}]"
        if not isinstance(g, dict):
            raise doc.err(path, "must be a mapping {name, policy}")
        gname = g.get("name")
        if not isinstance(gname, str) or not DNS1123_LABEL.match(gname):
            raise doc.err(f"{path}.name", f"is required and must be a DNS label, got {gname!r}")
        if gname in pod_groups:
            raise doc.err(f"{path}.name", f"duplicate pod group {gname!r}")
        policy = g.get("policy")
        if not isinstance(policy, dict) or len({"basic", "gang"} & set(policy)) != 1 \
                or set(policy) - {"basic", "gang"}:
            raise doc.err(f"{path}.policy", "exactly one of `basic`, `gang` is required")
        if "basic" in policy:
            pod_groups[gname] = None
            continue
        gang = policy["gang"]
        count = gang.get("minCount") if isinstance(gang, dict) else None
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise doc.err(f"{path}.policy.gang.minCount", f"must be a positive integer, got {count!r}")
        pod_groups[gname] = count
    step.workloads.append(WorkloadSpec(name=name, pod_groups=pod_groups, source=doc.source))


def _name(doc: _Doc) -> str:
    name = doc.get("metadata.name", kind=str)
    if not DNS1123_SUBDOMAIN.match(name):
        raise doc.err("metadata.name", f"{name!r} is not a valid Kubernetes name")
    return name


def _resources_map(doc: _Doc, path: str, value: Any) -> dict[str, int]:
    if not isinstance(value, dict):
        raise doc.err(path, "must be a mapping of resource name to quantity")
    return {k: parse_quantity(v, resource=k, where=f"{doc.source}: field {path}.{k}")
            for k, v in value.items()}


def _parse_doc(doc: _Doc, step: ApplyStep, priorities: dict[str, int]) -> None:  # noqa: PLR0912, PLR0915 - one branch per kind the model reads
    api = doc.get("apiVersion", kind=str)
    kind = doc.get("kind", kind=str)
    key = f"{api}/{kind}"
    if key not in SUPPORTED_KINDS:
        raise doc.err("kind", f"{api} {kind} is not supported by the scheduling model "
                      f"(supported: {', '.join(SUPPORTED_KINDS)})")
    name = _name(doc)
    if kind == "Namespace":
        step.namespaces.append(name)
    elif kind == "Service":
        if doc.get("spec.clusterIP", None) != "None":
            raise doc.err("spec.clusterIP", "must be None: the workers rendezvous through a headless Service")
        step.services.append(name)
    elif kind == "PriorityClass":
        value = doc.get("value", kind=int)
        priorities[name] = value
        step.priority_classes[name] = value
    elif key == "v1/Pod":
        ann = doc.get("metadata.annotations", {}, kind=dict)
        group = ann.get(GROUP_ANNOTATION)
        # A bare pod's job: its PodGroup, else the headless Service domain its peers share.
        job = group or doc.get("spec.subdomain", None) or name
        pod = _pod_template(doc, "spec", name=name, job=job, steps_priorities=priorities, group=group)
        step.bare_pods.append(pod)
        step.jobs.append(JobSpec(name=pod.job, kind="Pods", pods=[pod], source=doc.source))
    elif key == "batch/v1/Job":
        mode = doc.get("spec.completionMode", "NonIndexed", kind=str)  # Kubernetes' default
        if mode != "Indexed":
            raise doc.err("spec.completionMode", (
                f"{mode!r}{' (the default when unset)' if mode == 'NonIndexed' else ''} is not modelled: "
                "the model supports Indexed Jobs (supported: Indexed), whose pods get stable indices "
                "(<job>-0, <job>-1, ..., JOB_COMPLETION_INDEX) that distributed workers use as ranks "
                "and that fix the order the Job controller creates them in; add "
                "`completionMode: Indexed` to the Job's spec"))
        completions = doc.get("spec.completions", kind=int)
        parallelism = doc.get("spec.parallelism", kind=int)
        if parallelism != completions or completions < 1:
            raise doc.err("spec.parallelism", "must equal spec.completions (>= 1): all workers run at once")
        if doc.get("spec.suspend", False, kind=bool):
            raise doc.err("spec.suspend", "true is not modelled (a suspended Job creates no pods)")
        template = [_pod_template(doc, "spec.template.spec", name=f"{name}-{i}", job=name,
                                  steps_priorities=priorities, group=None) for i in range(completions)]
        step.jobs.append(JobSpec(name=name, kind="Job", pods=template, source=doc.source))
    elif key == "apps/v1/Deployment":
        replicas = doc.get("spec.replicas", kind=int)
        pods = [_pod_template(doc, "spec.template.spec", name=f"{name}-{i}", job=name,
                              steps_priorities=priorities, group=None) for i in range(replicas)]
        for p in pods:
            if p.world_size != 1:
                raise doc.err("spec.template.spec.containers[].env.WORLD_SIZE",
                              "must be 1 for a Deployment (its replicas are independent)")
        step.jobs.append(JobSpec(name=name, kind=SERVICE_KIND, pods=pods, source=doc.source))
    elif kind == "PodGroup":
        min_member = doc.get("spec.minMember", kind=int)
        if min_member < 1:
            raise doc.err("spec.minMember", "must be >= 1")
        mr = doc.get("spec.minResources", None)
        pc = doc.get("spec.priorityClassName", "", kind=str)
        if pc and pc not in priorities:
            raise doc.err("spec.priorityClassName", f"PriorityClass {pc!r} is not defined")
        step.podgroups.append(PodGroupSpec(
            name=name, min_member=min_member, queue=doc.get("spec.queue", "default", kind=str),
            min_resources=None if mr is None else _resources_map(doc, "spec.minResources", mr),
            priority=priorities.get(pc, 0), source=doc.source))
    elif kind == "Workload":
        _parse_workload(doc, step, name)
    elif kind == "Queue":
        weight = doc.get("spec.weight", kind=int)
        if weight < 1:
            raise doc.err("spec.weight", "must be >= 1")
        cap = doc.get("spec.capability", {}, kind=dict)
        for unsupported in ("guarantee", "deserved", "parent"):
            if doc.get(f"spec.{unsupported}", None) is not None:
                raise doc.err(f"spec.{unsupported}", "is not modelled (supported: weight, capability, "
                              "reclaimable, priority)")
        step.queues.append(QueueSpec(name=name, weight=weight,
                                     capability=_resources_map(doc, "spec.capability", cap),
                                     reclaimable=doc.get("spec.reclaimable", kind=bool),
                                     priority=doc.get("spec.priority", 0, kind=int), source=doc.source))
    else:  # batch.volcano.sh/v1alpha1 Job
        _parse_vcjob(doc, step, priorities, name)


def _parse_vcjob(doc: _Doc, step: ApplyStep, priorities: dict[str, int], name: str) -> None:
    scheduler = doc.get("spec.schedulerName", kind=str)
    if scheduler != VOLCANO:
        raise doc.err("spec.schedulerName", f"{scheduler!r}: only volcano is modelled for Volcano Jobs")
    queue = doc.get("spec.queue", kind=str)
    doc.get("spec.maxRetry", kind=int)
    min_available = doc.get("spec.minAvailable", kind=int)
    for i, pol in enumerate(doc.get("spec.policies", [], kind=list)):
        if not isinstance(pol, dict) or pol.get("action") not in VCJOB_ACTIONS or \
                (pol.get("event") not in VCJOB_EVENTS and not pol.get("events")):
            raise doc.err(f"spec.policies[{i}]", f"needs event (one of {', '.join(VCJOB_EVENTS)}) and "
                          f"action (one of {', '.join(VCJOB_ACTIONS)})")
    for plugin in doc.get("spec.plugins", {}, kind=dict):
        if plugin not in VCJOB_PLUGINS:
            raise doc.err(f"spec.plugins.{plugin}", f"unknown plugin (supported: {', '.join(VCJOB_PLUGINS)})")
    tasks = doc.get("spec.tasks", kind=list)
    if not tasks:
        raise doc.err("spec.tasks", "must list at least one task")
    pods: list[PodSpec] = []
    for t, task in enumerate(tasks):
        # Address the task as spec.tasks.<i> so errors name the full field path.
        sub = _Doc({"spec": {"tasks": {str(t): task if isinstance(task, dict) else {}}}}, doc.source)
        tname = sub.get(f"spec.tasks.{t}.name", kind=str)
        replicas = sub.get(f"spec.tasks.{t}.replicas", kind=int)
        sub.get(f"spec.tasks.{t}.minAvailable", kind=int)
        sub.get(f"spec.tasks.{t}.maxRetry", kind=int)
        spec_path = f"spec.tasks.{t}.template.spec"
        for i in range(replicas):
            pods.append(_pod_template(sub, spec_path, name=f"{name}-{tname}-{i}", job=name,
                                      steps_priorities=priorities, group=name, scheduler_default=VOLCANO))
    if min_available < 1 or min_available > len(pods):
        raise doc.err("spec.minAvailable", f"{min_available} must be between 1 and the total replicas "
                      f"({len(pods)}); the admission webhook rejects it otherwise")
    for p in pods:
        if p.scheduler_name != VOLCANO:
            raise doc.err("spec.tasks[].template.spec.schedulerName",
                          "must be volcano (as spec.schedulerName)")
    pc = doc.get("spec.priorityClassName", "", kind=str)
    if pc and pc not in priorities:
        raise doc.err("spec.priorityClassName", f"PriorityClass {pc!r} is not defined")
    # The job controller sums the requests of the first minAvailable pods (calcPGMinResources).
    min_res: dict[str, int] = {}
    for p in pods[:min_available]:
        for r, v in p.requests.items():
            min_res[r] = min_res.get(r, 0) + v
    step.podgroups.append(PodGroupSpec(name=name, min_member=min_available, queue=queue,
                                       min_resources=min_res, priority=priorities.get(pc, 0),
                                       source=doc.source, vcjob=name))
    step.jobs.append(JobSpec(name=name, kind="VolcanoJob", pods=pods, source=doc.source,
                             min_available=min_available, queue=queue))


def manifest_files(manifest_paths: list[str | Path] | str | Path) -> list[Path]:
    """Expand files and folders into the ordered file list (folders: sorted, recursive).

    Relative paths resolve against the repository root. The order is the apply order: the
    model and the cluster runner (``scheduling_run``) both take one apply step per file.

    Raises:
        ManifestError: a path does not exist, or a folder holds no ``.yaml``/``.yml`` file.
    """
    from helpers import paths as kit_paths

    if isinstance(manifest_paths, str | Path):
        manifest_paths = [manifest_paths]
    out: list[Path] = []
    for raw in manifest_paths:
        p = kit_paths.resolve(raw)
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml"))
            if not found:
                raise ManifestError(f"{p}: directory holds no .yaml/.yml manifest")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise ManifestError(f"{p}: no such manifest file or directory")
    return out


def load_manifests(paths: list[str | Path] | str | Path) -> Manifests:
    """Parse manifest files (or directories, read in sorted order) into apply steps.

    Args:
        paths: Files or directories. Relative paths resolve against the repository root.

    Returns:
        One :class:`ApplyStep` per file, in order.

    Raises:
        ManifestError: Unreadable YAML, unsupported kind or field, a duplicate name, or a
            reference to an undefined PodGroup/PriorityClass; the message names the file
            and the field.
    """

    if isinstance(paths, str | Path):
        paths = [paths]
    steps: list[ApplyStep] = []
    priorities = dict(SYSTEM_PRIORITY_CLASSES)
    seen: dict[tuple[str, str], str] = {}
    for f in manifest_files(paths):
        source = _display(f)
        try:
            docs = [d for d in yaml.safe_load_all(f.read_text()) if d is not None]
        except yaml.YAMLError as exc:
            raise ManifestError(f"{source}: not valid YAML: {yaml_problem(exc)}") from None
        step = ApplyStep(source=source)
        for i, data in enumerate(docs):
            if not isinstance(data, dict):
                raise ManifestError(f"{source}: document {i} is not a mapping")
            doc = _Doc(data, f"{source} (document {i})")
            _parse_doc(doc, step, priorities)
            kind = f"{data.get('apiVersion')}/{data.get('kind')}"
            key = (kind, str(data["metadata"]["name"]))
            if key in seen:
                raise ManifestError(f"{doc.source}: field metadata.name: {kind} {key[1]!r} is already "
                                    f"defined in {seen[key]}")
            seen[key] = doc.source
        steps.append(step)
    manifests = Manifests(steps)
    _check_groups(manifests)
    return manifests


def _check_groups(m: Manifests) -> None:
    groups: set[str] = set()
    for g in m.podgroups:
        if g.name in groups:
            raise ManifestError(f"{g.source}: field metadata.name: PodGroup {g.name!r} is defined twice "
                                "(a Volcano Job creates a PodGroup named after itself)")
        groups.add(g.name)
    job_names: dict[str, JobSpec] = {}
    for job in m.jobs:
        if job.kind == "Pods" and job.name in job_names and job_names[job.name].kind == "Pods":
            job_names[job.name].pods.extend(job.pods)
            job.pods = []
            continue
        job_names.setdefault(job.name, job)
        for p in job.pods:
            if p.group and p.group not in groups:
                raise ManifestError(f"{p.source}: field metadata.annotations.{GROUP_ANNOTATION}: PodGroup "
                                    f"{p.group!r} is not defined (apply it before its pods)")
            if p.group and p.scheduler_name != VOLCANO:
                raise ManifestError(f"{p.source}: field spec.schedulerName: pod {p.name} joins PodGroup "
                                    f"{p.group!r} but is not scheduled by volcano")
    for step in m.steps:
        step.jobs = [j for j in step.jobs if j.pods]
    for job in m.jobs:
        biggest = max(p.world_size for p in job.pods)
        if biggest > len(job.pods) and job.kind != "Pods":
            raise ManifestError(f"{job.source}: field env.WORLD_SIZE: {biggest} peers but job {job.name} "
                                f"has only {len(job.pods)} pods; its workers could never rendezvous")


def _display(path: Path) -> str:
    from helpers import paths as kit_paths

    try:
        return str(path.resolve().relative_to(kit_paths.ROOT))
    except ValueError:
        return str(path)
