"""An interactive explorer: change the cluster and two jobs, re-run the model at once.

:func:`two_jobs` builds the workload in memory (the same objects the parser produces from
``cluster/manifests/scheduling/two-jobs``) and :func:`explore` runs it; both are plain
functions, tested and usable headless. :func:`explorer` wraps them in ipywidgets for
JupyterLab; building it needs no display, so labs stay runnable under papermill.
:func:`should_show` decides whether a lab displays it: in a kernel a JupyterLab session
started, yes; under papermill, nbval or a plain Python, no.
"""

from __future__ import annotations

import importlib.util
import os

from helpers.errors import LabError
from helpers.scheduling.model import (
    DEFAULT_SCHEDULER,
    GPU,
    VOLCANO,
    ApplyStep,
    JobSpec,
    Manifests,
    PodGroupSpec,
    PodSpec,
    SchedulingResult,
    make_nodes,
)
from helpers.scheduling.simulate import SimConfig, simulate

ORDERS = ("interleaved", "A first", "B first")


def two_jobs(size_a: int, size_b: int, order: str, scheduler: str, work_seconds: float = 120.0, *,
             min_resources: bool = True) -> Manifests:
    """Two gang jobs of one-GPU workers, created in ``order``, for ``scheduler``.

    Args:
        size_a: Workers of job A (its WORLD_SIZE and, for Volcano, minMember).
        size_b: Workers of job B.
        order: ``interleaved`` (A0, B0, A1, B1, ...), ``A first`` or ``B first``.
        scheduler: ``default`` (bare pods) or ``volcano`` (bare pods + PodGroups).
        work_seconds: Work after the rendezvous.
        min_resources: Give the PodGroups ``minResources`` (Volcano's enqueue gate); without
            it enqueue admits both gangs and only allocate's statement protects them.

    Raises:
        LabError: Sizes below 1 or an unknown order.
    """
    if size_a < 1 or size_b < 1:
        raise LabError(f"job sizes must be >= 1 (got {size_a}, {size_b})")
    if order not in ORDERS:
        raise LabError(f"unknown order {order!r} (choose {', '.join(ORDERS)})")
    volcano = scheduler == "volcano"
    step = ApplyStep(source="explorer")
    req = {"cpu": 100, "memory": 64 * 2**20, GPU: 1}
    pods: dict[str, list[PodSpec]] = {}
    for name, size in (("train-a", size_a), ("train-b", size_b)):
        pods[name] = [PodSpec(name=f"{name}-{i}", job=name, requests=dict(req),
                              scheduler_name=VOLCANO if volcano else DEFAULT_SCHEDULER,
                              group=name if volcano else None, world_size=size,
                              work_seconds=work_seconds, source="explorer") for i in range(size)]
        if volcano:
            total = {k: v * size for k, v in req.items()} if min_resources else None
            step.podgroups.append(PodGroupSpec(name=name, min_member=size, source="explorer",
                                               min_resources=total))
        step.jobs.append(JobSpec(name=name, kind="Pods", pods=pods[name], source="explorer"))
    a, b = pods["train-a"], pods["train-b"]
    if order == "interleaved":
        step.bare_pods = [p for i in range(max(len(a), len(b))) for p in (a[i:i + 1] + b[i:i + 1])]
    else:
        step.bare_pods = a + b if order == "A first" else b + a
    return Manifests([step])


def explore(nodes: int = 3, *, gpus_per_node: int = 2, size_a: int = 4, size_b: int = 4,
            order: str = "interleaved", scheduler: str = "default", seed: int = 0,
            min_resources: bool = True) -> SchedulingResult:
    """Run the two-job workload (:func:`two_jobs`) on ``nodes`` identical nodes; return the result."""
    manifests = two_jobs(size_a, size_b, order, scheduler, min_resources=min_resources)
    return simulate(manifests, make_nodes(nodes, gpus_per_node), scheduler, seed=seed,
                    config=SimConfig(horizon=600))


#: Values of a lab's ``SHOW_EXPLORER`` knob.
SHOW_CHOICES = ("auto", "yes", "no")


def live_widgets() -> bool:
    """True when this code runs in a notebook kernel that a Jupyter server session started,
    with ipywidgets installed: a frontend is there to draw widgets.

    The server tells its kernels their notebook through ``JPY_SESSION_NAME``; papermill and
    nbval start kernels without it (:mod:`helpers.runner` removes it even when started from
    a notebook), and a plain Python has no kernel at all.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    return bool(os.environ.get("JPY_SESSION_NAME")) and importlib.util.find_spec("ipywidgets") is not None


def should_show(choice: str = "auto") -> bool:
    """Whether a lab displays the explorer: ``auto`` (:func:`live_widgets`), ``yes`` or ``no``.

    Raises:
        LabError: ``choice`` is not one of :data:`SHOW_CHOICES`.
    """
    if choice not in SHOW_CHOICES:
        raise LabError(f"SHOW_EXPLORER={choice!r}: choose one of {', '.join(SHOW_CHOICES)}")
    return live_widgets() if choice == "auto" else choice == "yes"


def explorer(seed: int = 0):
    """Build the ipywidgets explorer (sliders + a live timeline); display it in JupyterLab.

    Returns:
        An ``ipywidgets.VBox`` with a ``redraw()`` method that re-runs the model and draws the
        timeline into the widget's output area. Nothing is displayed here, so headless runs are
        unaffected, and ``redraw()`` works outside a kernel too (it then only prints the repr).
    """
    import ipywidgets as w
    import matplotlib.pyplot as plt
    from IPython.display import display

    from helpers.scheduling import plots

    controls = {
        "nodes": w.IntSlider(value=3, min=1, max=8, description="nodes"),
        "gpus_per_node": w.IntSlider(value=2, min=1, max=8, description="GPUs/node"),
        "size_a": w.IntSlider(value=4, min=1, max=16, description="job A size"),
        "size_b": w.IntSlider(value=4, min=1, max=16, description="job B size"),
        "order": w.Dropdown(options=ORDERS, value="interleaved", description="arrival"),
        "scheduler": w.ToggleButtons(options=["default", "volcano"], value="default",
                                     description="scheduler"),
    }
    out = w.Output()
    summary = w.HTML()

    def redraw(_change=None):
        result = explore(seed=seed, **{k: c.value for k, c in controls.items()})
        m = result.metrics
        summary.value = (f"<b>gridlocked: {result.gridlocked}</b> &nbsp; jobs completed: "
                         f"{m['jobs_completed']}/{m['jobs_total']} &nbsp; waste: "
                         f"{m['waste_gpu_seconds']:.0f} GPU-s")
        with out:
            out.clear_output(wait=True)
            fig = plots.gantt(result)
            display(fig)  # this figure only (plt.show() takes no figure); then let it go
            plt.close(fig)

    for c in controls.values():
        c.observe(redraw, names="value")
    box = w.VBox([w.HBox([controls["nodes"], controls["gpus_per_node"]]),
                  w.HBox([controls["size_a"], controls["size_b"]]),
                  w.HBox([controls["order"], controls["scheduler"]]), summary, out])
    box.redraw = redraw
    return box
