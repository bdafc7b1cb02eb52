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


def _box(ax, rect: tuple[float, float, float, float], text: str, color: str,
         size: int = 9) -> None:
    x, y, w, h = rect
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.01,rounding_size=0.02",
                                facecolor=color, edgecolor="#444444", linewidth=1))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size)


def plot_architecture() -> Figure:
    """Return the layered KServe architecture picture.

    Made with pyplot so Jupyter's inline backend shows it; it renders headless too.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    for row, (label, color) in enumerate(LAYERS):
        _box(ax, (0.02, 0.04 + row * 0.2, 0.96, 0.16), label, color)
    width = 0.96 / len(RUNTIMES)
    for i, name in enumerate(RUNTIMES):
        _box(ax, (0.02 + i * width + 0.005, 0.44, width - 0.01, 0.18), name, "#e2efda", size=8)
    width = 0.96 / len(STAGES)
    for i, name in enumerate(STAGES):
        _box(ax, (0.02 + i * width + 0.005, 0.70, width - 0.01, 0.14), name, "#fff2cc")
    ax.text(0.5, 0.93, "One InferenceService per model: same stages and protocols (V1, V2) "
            "whatever the framework", ha="center", fontsize=10, weight="bold")
    fig.tight_layout()
    return fig
