"""Pictures of a scheduling result: per-node timeline (Gantt) and utilisation over time.

Both work on any backend's result (``SchedulingResult`` or its ``to_dict()``) and render
headless (papermill, CI): they only draw on matplotlib figures and return them.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
from matplotlib.patches import Patch

from helpers.scheduling.model import SchedulingResult


def _as_dict(result: SchedulingResult | dict[str, Any]) -> dict[str, Any]:
    return result.to_dict() if isinstance(result, SchedulingResult) else result


def _lanes(result: dict[str, Any]) -> dict[str, list[tuple[str, float, float | None, float]]]:
    """Pack each node's pods into lanes (intervals that don't overlap share a lane).

    A node gets at least one lane per unit of the scarce resource it has (a lane per GPU),
    so a GPU no pod used shows as an empty lane rather than vanishing from the picture.
    """
    resource = result["metrics"]["utilisation"]["resource"]
    end = result["metrics"]["end_time"]
    per_node: dict[str, list[tuple[float, float, str, float | None]]] = {}
    for name, pod in result["pods"].items():
        if pod["node"] is None or pod["bound_at"] is None:
            continue
        stop = pod["finished_at"] if pod["finished_at"] is not None else end
        per_node.setdefault(pod["node"], []).append((pod["bound_at"], stop, name, pod["working_at"]))
    lanes: dict[str, list[tuple[str, float, float | None, float]]] = {}
    for node in sorted(result["nodes"]):
        rows: list[float] = []  # end time of each lane's last interval
        for start, stop, name, working in sorted(per_node.get(node, [])):
            for i, busy_until in enumerate(rows):
                if busy_until <= start:
                    rows[i] = stop
                    break
            else:
                rows.append(stop)
                i = len(rows) - 1
            lanes.setdefault(f"{node}/{i}", []).append((name, start, working, stop))
        units = int((result["nodes"][node].get("allocatable") or {}).get(resource, 0))
        for i in range(len(rows), max(units, 1)):
            lanes.setdefault(f"{node}/{i}", [])
    return {lane: lanes[lane] for lane in sorted(lanes, key=_lane_order)}


def _lane_order(lane: str) -> tuple[str, int]:
    node, _, index = lane.rpartition("/")
    return node, int(index)


def gantt(result: SchedulingResult | dict[str, Any], ax=None, title: str | None = None,
          color_by: str = "job"):
    """Draw one row per node lane: hatched while a pod holds resources idle, solid while it works.

    Args:
        result: A scheduling result.
        ax: Axes to draw on (a new figure when None).
        title: Axes title (default: the scheduler's name).
        color_by: ``job`` or ``queue`` (the Volcano queue of the pod's job).

    Returns:
        The matplotlib Figure.
    """
    data = _as_dict(result)
    if color_by not in ("job", "queue"):
        raise ValueError(f"color_by must be 'job' or 'queue', got {color_by!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(10, 0.35 * max(4, len(data["nodes"]) * 2) + 1))

    def key_of(pod_name: str) -> str:
        job = data["pods"][pod_name]["job"]
        if color_by == "job":
            return job
        return str((data["jobs"].get(job) or {}).get("queue") or "(no queue)")

    lanes = _lanes(data)
    keys = sorted({key_of(name) for name in data["pods"]})
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    colour = {j: cmap(i % cmap.N) for i, j in enumerate(keys)}
    labels = list(lanes)
    for row, lane in enumerate(labels):
        for name, start, working, stop in lanes[lane]:
            job = key_of(name)
            idle_end = working if working is not None else stop
            if idle_end > start:
                ax.barh(row, idle_end - start, left=start, color=colour[job], alpha=0.35,
                        hatch="///", edgecolor="black", linewidth=0.3)
            if working is not None and stop > working:
                ax.barh(row, stop - working, left=working, color=colour[job], edgecolor="black",
                        linewidth=0.3)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlim(0, max(data["metrics"]["end_time"], 1))
    ax.set_xlabel("time (s)")
    verdict = "GRIDLOCKED" if data["gridlocked"] else "no gridlock"
    ax.set_title(title or f"{data['scheduler']} scheduler: {verdict}")
    handles = [Patch(color=colour[j], label=j) for j in keys[:12]]
    handles.append(Patch(facecolor="white", hatch="///", edgecolor="black", label="held, idle"))
    ax.legend(handles=handles, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax.figure


def utilisation(result: SchedulingResult | dict[str, Any], ax=None, title: str | None = None):
    """Plot the share of the scarce resource allocated and the share doing work, over time.

    The gap between the two curves is the waste: resources held by pods that do nothing.

    Returns:
        The matplotlib Figure.
    """
    data = _as_dict(result)
    u = data["metrics"]["utilisation"]
    cap = max(u["capacity"], 1)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3))
    alloc = [a / cap for a in u["allocated"]]
    work = [w / cap for w in u["working"]]
    # Where no GPU is idle the two curves coincide: "allocated" is drawn wide and "working"
    # thin and dashed on top of it, so both stay visible.
    ax.step(u["t"], alloc, where="post", label="allocated", lw=3.2, alpha=0.75, color="tab:blue")
    ax.step(u["t"], work, where="post", label="working", lw=1.4, ls="--", color="tab:orange")
    ax.fill_between(u["t"], work, alloc, step="post", alpha=0.3, color="red", label="waste")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(0, max(data["metrics"]["end_time"], 1))
    ax.set_xlabel("time (s)")
    ax.set_ylabel(f"share of {u['resource']}")
    ax.set_title(title or f"{data['scheduler']}: waste {data['metrics']['waste_gpu_seconds']:.0f} GPU-s")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax.figure


def compare(results: dict[str, SchedulingResult | dict[str, Any]]):
    """Side-by-side timelines (top) and utilisation (bottom), one column per result.

    Every panel shares one time axis (0 to the latest end), so the columns compare at a
    glance: a run that finished in 243 s is drawn against the other's 3600 s, not stretched.

    Args:
        results: Label -> result, e.g. ``{"default": r1, "volcano": r2}``.

    Returns:
        The matplotlib Figure.
    """
    n = len(results)
    fig, axes = plt.subplots(2, n, figsize=(7 * n, 7), squeeze=False, sharex="all",
                             gridspec_kw={"height_ratios": [2, 1]})
    for col, (label, result) in enumerate(results.items()):
        gantt(result, ax=axes[0][col], title=f"{label}: timeline")
        utilisation(result, ax=axes[1][col], title=f"{label}: utilisation")
    end = max(max(_as_dict(r)["metrics"]["end_time"], 1) for r in results.values())
    axes[0][0].set_xlim(0, end)  # shared: sets every panel
    for ax in axes[0]:
        ax.tick_params(labelbottom=True)  # sharex hides the upper row's tick labels
    fig.tight_layout()
    return fig
