"""The labs' scenarios and the one call that runs them on any backend.

A :class:`Scenario` names manifest files under ``cluster/manifests/scheduling`` per
scheduler and the cluster they are sized for. :func:`run_scenario` runs one on the model, or
calls the ``run_scheduling`` verb of the backend object it is given (``sim`` runs the model
too; ``kind``/``kwok`` apply the manifests to a real API server through
:mod:`helpers.backend.scheduling_run`), and returns the same
:class:`~helpers.scheduling.model.SchedulingResult` either way. This package never imports
a backend: the verb is the whole contract::

    backend.run_scheduling(manifest_paths: list[pathlib.Path], nodes: list[NodeSpec],
                           scheduler: str, *, seed: int, config: SimConfig) -> SchedulingResult
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from helpers import paths
from helpers.errors import BackendUnavailable, LabError
from helpers.scheduling.model import SchedulingResult, load_manifests, make_nodes
from helpers.scheduling.simulate import SimConfig, simulate


@dataclass(frozen=True)
class Scenario:
    """A lesson's workload: manifest paths per scheduler and the cluster they are sized for."""

    name: str
    description: str
    manifests: dict[str, tuple[str, ...]]
    nodes: int
    node_gpus: int
    config: dict = field(default_factory=dict)

    def paths(self, scheduler: str) -> list[Path]:
        """Absolute manifest paths for ``scheduler`` (namespace first)."""
        if scheduler not in self.manifests:
            raise LabError(f"scenario {self.name!r} has no {scheduler!r} variant "
                           f"(variants: {', '.join(self.manifests)})")
        base = paths.manifests_dir("scheduling")
        return [base / "namespace.yaml", *(base / p for p in self.manifests[scheduler])]


SCENARIOS: dict[str, Scenario] = {
    s.name: s for s in (
        Scenario("chapter",
                 "The chapter's case: an always-on service holds 5 of 8 GPUs; a 5-worker job "
                 "arrives, then a 3-worker job.",
                 {"default": ("chapter/default",), "volcano": ("chapter/volcano",),
                  "gang": ("chapter/gang",)},
                 nodes=4, node_gpus=2),
        Scenario("two-jobs",
                 "Two 4-worker jobs on 6 GPUs, applied together (Indexed Jobs / PodGroups).",
                 {"default": ("two-jobs/default",), "volcano": ("two-jobs/volcano",),
                  "default-pods": ("two-jobs/default-pods",),
                  "volcano-job": ("two-jobs/volcano-job",), "gang": ("two-jobs/gang",)},
                 nodes=3, node_gpus=2),
        Scenario("gang-bad-input",
                 "Workload API mistakes kube-scheduler accepts silently: pods naming a missing "
                 "Workload, minCount above the pod count, a gang larger than the cluster.",
                 {"gang-missing-workload": ("gang-bad-input/missing-workload",),
                  "gang-min-count": ("gang-bad-input/min-count-too-big",),
                  "gang-too-big": ("gang-bad-input/too-big",)},
                 nodes=3, node_gpus=2),
        Scenario("queues",
                 "Two Queues (weights 3:1, team-b capped at 4 GPUs), four 2-worker gangs each.",
                 {"volcano": ("queues",)}, nodes=4, node_gpus=2),
    )
}


def scenario(name: str) -> Scenario:
    """Look a scenario up by name, with a clear error listing the known ones."""
    if name not in SCENARIOS:
        raise LabError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    return SCENARIOS[name]


def scheduler_of(variant: str) -> str:
    """The scheduler a variant runs under: ``volcano``, ``gang`` (kube-scheduler's
    GangScheduling plugin, Workload API) or ``default``, from the variant's prefix."""
    for prefix in ("volcano", "gang"):
        if variant.startswith(prefix):
            return prefix
    return "default"


def run_scenario(which: str | Scenario, variant: str = "default", backend=None, *, seed: int = 0,
                 nodes: int | None = None, node_gpus: int | None = None,
                 horizon: float | None = None, **config) -> SchedulingResult:
    """Run a scenario's ``variant`` on the model or a cluster; same result shape either way.

    Args:
        which: Scenario name (see :data:`SCENARIOS`) or a :class:`Scenario`.
        variant: ``default``, ``volcano`` or ``gang`` (and the scenario's extra variants, e.g.
            ``volcano-job``); see :func:`scheduler_of`.
        backend: The backend object :func:`helpers.backend.resolve` returned (its
            ``run_scheduling`` verb runs the scenario), or None for the model.
        seed: Tie-breaking seed of the model.
        nodes: Override the scenario's node count.
        node_gpus: Override ``example.com/gpu`` per node.
        horizon: Observation window in seconds (default: SimConfig's).
        **config: Further :class:`SimConfig` fields for the model.

    Raises:
        BackendUnavailable: A name instead of a backend object, or an unreachable cluster.
        LabError: Unknown scenario or variant.
    """
    sc = which if isinstance(which, Scenario) else scenario(which)
    scheduler = scheduler_of(variant)
    manifest_paths = sc.paths(variant)
    n = nodes if nodes is not None else sc.nodes
    g = node_gpus if node_gpus is not None else sc.node_gpus
    cfg = SimConfig(**{**sc.config, **config, **({"horizon": horizon} if horizon else {})})
    if backend is None:
        return simulate(load_manifests(manifest_paths), make_nodes(n, g), scheduler,
                        seed=seed, config=cfg)
    if isinstance(backend, str):
        raise BackendUnavailable(
            f"unknown backend {backend!r} here: run_scenario takes the backend object that "
            "helpers.backend.resolve(BACKEND) returns (or None for the model)")
    result = backend.run_scheduling(manifest_paths, make_nodes(n, g), scheduler, seed=seed,
                                    config=cfg)
    _log_run(sc.name, variant, n, g, result)
    return result


#: Environment variable naming a JSON-lines file: when set, every scenario run on a cluster
#: appends ``{"scenario", "variant", "nodes", "node_gpus", "result"}`` to it. The test suite
#: sets it while the labs run on the kwok control plane, so the conformance check compares the
#: model with the very runs the labs made instead of running each scenario a second time.
RUN_LOG_ENV = "KFLABS_RUN_LOG"


def _log_run(name: str, variant: str, nodes: int, node_gpus: int, result: SchedulingResult) -> None:
    target = os.environ.get(RUN_LOG_ENV)
    if not target:
        return
    record = {"scenario": name, "variant": variant, "nodes": nodes, "node_gpus": node_gpus,
              "result": result.to_dict()}
    with open(target, "a", encoding="utf-8") as log:
        log.write(json.dumps(record) + "\n")


def logged_runs(path: str | os.PathLike[str]) -> list[dict]:
    """The records a run log holds (see :data:`RUN_LOG_ENV`), results rebuilt as objects."""
    records = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        record["result"] = SchedulingResult.from_dict(record["result"])
        records.append(record)
    return records
