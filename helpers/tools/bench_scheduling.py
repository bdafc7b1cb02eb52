"""``make bench`` section "scheduling": the model at scale, and each scheduling lab's run time.

Workload: 1,000 nodes (8 ``example.com/gpu``, 64 cpu, 256Gi each) and 500 gangs of 20
one-GPU workers (10,000 pods), applied together: Indexed Jobs for kube-scheduler, Volcano
Jobs (minAvailable 20) for Volcano, Indexed Jobs naming a Workload (gang minCount 20) for
kube-scheduler's GangScheduling plugin; then the same with 4 GPUs per node (contended).
Figures are reported, never asserted.
"""

from __future__ import annotations

import time
import tracemalloc

from helpers.scheduling.model import (
    DEFAULT_SCHEDULER,
    GPU,
    VOLCANO,
    ApplyStep,
    JobSpec,
    Manifests,
    PodGroupSpec,
    PodSpec,
    WorkloadSpec,
    make_nodes,
)
from helpers.scheduling.simulate import SCHEDULERS, SimConfig, simulate


def gang_workload(gangs: int = 500, size: int = 20, *, volcano: bool,
                  work: float = 600.0, workload_api: bool = False) -> Manifests:
    """Build ``gangs`` jobs of ``size`` one-GPU workers in memory (same objects the parser makes).

    ``volcano``: Volcano Jobs with their PodGroups; ``workload_api``: Indexed Jobs whose pods
    name a Workload with one gang pod group (kube-scheduler's GangScheduling plugin); neither:
    plain Indexed Jobs.
    """
    step = ApplyStep(source="bench")
    req = {"cpu": 100, "memory": 64 * 2**20, GPU: 1}
    for g in range(gangs):
        name = f"gang-{g:04d}"
        pods = [PodSpec(name=f"{name}-{i}", job=name, requests=dict(req),
                        scheduler_name=VOLCANO if volcano else DEFAULT_SCHEDULER,
                        group=name if volcano else None, world_size=size, work_seconds=work,
                        workload_ref=(name, "workers") if workload_api else None,
                        source="bench") for i in range(size)]
        if workload_api:
            step.workloads.append(WorkloadSpec(name=name, pod_groups={"workers": size}, source="bench"))
        if volcano:
            step.podgroups.append(PodGroupSpec(name=name, min_member=size,
                                               min_resources={k: v * size for k, v in req.items()},
                                               source="bench", vcjob=name))
            step.jobs.append(JobSpec(name=name, kind="VolcanoJob", pods=pods, source="bench",
                                     min_available=size, queue="default"))
        else:
            step.jobs.append(JobSpec(name=name, kind="Job", pods=pods, source="bench"))
    return Manifests([step])


def _measure(scheduler: str, gpus_per_node: int = 8) -> dict:
    def once():
        manifests = gang_workload(volcano=scheduler == "volcano", workload_api=scheduler == "gang")
        nodes = make_nodes(1000, gpus_per_node, cpu="64", memory="256Gi")
        return simulate(manifests, nodes, scheduler, seed=0, config=SimConfig(horizon=7200))

    # Time and memory are measured in separate runs: tracemalloc slows Python down.
    start = time.perf_counter()
    result = once()
    seconds = time.perf_counter() - start
    tracemalloc.start()
    once()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"seconds": round(seconds, 2), "peak_mb": round(peak / 2**20, 1),
            "jobs_completed": result.metrics["jobs_completed"], "gridlocked": result.gridlocked,
            "events": len(result.events)}


def run() -> dict:
    """Time the three schedulers on the 1,000-node / 10,000-pod workload and each lab on sim."""
    import resource

    from helpers import paths
    from helpers.tools import runner

    out = {"workload": "1000 nodes x 8 GPUs, 500 gangs x 20 pods", "target_seconds": 5,
           "target_peak_mb": 500}
    for scheduler in SCHEDULERS:
        out[scheduler] = _measure(scheduler)
    # Contended: 4,000 GPUs for 10,000 workers; kube-scheduler gridlocks, Volcano drains the queue.
    out["contended_4_gpus_per_node"] = {s: _measure(s, 4) for s in SCHEDULERS}
    out["process_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    labs = {}
    for nb in sorted(paths.labs_dir().glob("0[12]_*.ipynb")):
        start = time.perf_counter()
        run_ = runner.run_lab(nb, parameters={"OUTPUT_DIR": str(paths.build_dir() / "bench-results")},
                              output_notebook=paths.build_dir() / "bench-notebooks" / nb.name)
        labs[nb.stem] = {"seconds": round(time.perf_counter() - start, 2), "status": run_.status}
    out["labs_on_sim"] = labs
    return out
