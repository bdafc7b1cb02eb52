"""KServe's architecture as a layered picture (matplotlib, renders headless).

Bottom to top: Kubernetes; KServe's control plane (the InferenceService controller and the
storage initializer that pulls the model); the model-server runtimes per framework; and
the stages KServe gives every model - pre-process, predict, post-process, explain,
monitor. Labels name the pieces this kit uses, so the picture matches lab 05.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

#: The per-model stages KServe provides (top row of the picture).
STAGES = ("pre-process", "predict", "post-process", "explain", "monitor")
RUNTIMES = ("XGBoost\n(xgbserver)", "ONNX\n(Triton)", "scikit-learn", "PyTorch", "TensorFlow")
LAYERS = (
    ("Kubernetes: scheduling, Deployments, Services, autoscaling, RBAC", "#d9e2f3"),
    ("KServe control plane: InferenceService controller, storage initializer "
     "(pvc://, s3://, gs://, ...)", "#fde9d9"),
)


#: Space kept between neighbouring boxes (axes fraction): boxes never touch.
GAP = 0.03


def _box(ax, rect: tuple[float, float, float, float], text: str, color: str, *,
         size: int = 9, style: str = "-") -> FancyBboxPatch:
    x, y, w, h = rect
    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.015",
                           facecolor=color, edgecolor="#444444", linewidth=1, linestyle=style)
    ax.add_patch(patch)
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)
    return patch


def _arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str = "", *,
           rad: float = 0.0, offset: tuple[float, float] = (0.0, 0.0)) -> None:
    ax.annotate("", xy=end, xytext=start,
                arrowprops={"arrowstyle": "-|>", "lw": 1.3, "color": "#1f4e79",
                            "connectionstyle": f"arc3,rad={rad}", "shrinkA": 0, "shrinkB": 0})
    if label:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], label,
                ha="center", va="center", fontsize=7.5, color="#1f4e79",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.9})


def _row(x0: float, x1: float, n: int) -> list[tuple[float, float]]:
    """``n`` boxes of equal width between ``x0`` and ``x1``, :data:`GAP` apart: (left, width)."""
    width = (x1 - x0 - GAP * (n - 1)) / n
    return [(x0 + i * (width + GAP), width) for i in range(n)]


def plot_architecture() -> Figure:
    """Return the layered KServe architecture picture, with arrows for how a request flows.

    A request enters at pre-process, goes through predict (run by the runtime of the
    model's format) and post-process, and returns to the client; the control plane creates
    the Kubernetes objects and its storage initializer puts the model where the runtime
    reads it. Made with pyplot so Jupyter's inline backend shows it; it renders headless too.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.2))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    left, right = 0.17, 0.99
    stage_y, stage_h = 0.66, 0.12
    runtime_y, runtime_h = 0.40, 0.13
    control_y, kube_y, layer_h = 0.17, 0.01, 0.09
    client = (0.01, stage_y, 0.11, stage_h)
    _box(ax, client, "client\n(V1 / V2)", "#ffffff")
    stages = dict(zip(STAGES, _row(left, right, len(STAGES)), strict=True))
    for name, (x, w) in stages.items():
        optional = name in ("explain", "monitor")  # beside the request path, not on it
        _box(ax, (x, stage_y, w, stage_h), name, "#fff2cc", style="--" if optional else "-")
    runtimes = _row(left, right, len(RUNTIMES))
    for (x, w), name in zip(runtimes, RUNTIMES, strict=True):
        _box(ax, (x, runtime_y, w, runtime_h), name, "#e2efda", size=8)
    (control, _), (kube, _) = LAYERS[1], LAYERS[0]
    _box(ax, (0.01, control_y, 0.98, layer_h), control, "#fde9d9")
    _box(ax, (0.01, kube_y, 0.98, layer_h), kube, "#d9e2f3")

    mid = stage_y + stage_h / 2
    (pre_x, pre_w), (pred_x, pred_w), (post_x, post_w) = (stages[s] for s in STAGES[:3])
    _arrow(ax, (client[0] + client[2], mid + 0.02), (pre_x, mid + 0.02))
    _arrow(ax, (pre_x + pre_w, mid), (pred_x, mid))
    _arrow(ax, (pred_x + pred_w, mid), (post_x, mid))
    _arrow(ax, (post_x + post_w / 2, stage_y + stage_h), (client[0] + client[2] / 2, stage_y + stage_h),
           "response", rad=0.25, offset=(0.0, 0.1))
    _arrow(ax, (pred_x + pred_w / 2, stage_y), (runtimes[0][0] + runtimes[0][1] / 2, runtime_y + runtime_h),
           "runs the model", offset=(0.04, 0.0))
    _arrow(ax, (runtimes[0][0] + runtimes[0][1] / 2, control_y + layer_h),
           (runtimes[0][0] + runtimes[0][1] / 2, runtime_y), "model files -> /mnt/models",
           offset=(0.1, 0.0))
    _arrow(ax, (0.6, control_y), (0.6, kube_y + layer_h), "creates Deployment, Service",
           offset=(0.11, 0.0))
    ax.text(0.5, 0.96, "One InferenceService per model: same stages and protocols (V1, V2) "
            "whatever the framework", ha="center", fontsize=10, weight="bold")
    fig.tight_layout()
    return fig
