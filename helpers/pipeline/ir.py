"""Compile the pipeline to KFP's IR (the YAML a Kubeflow Pipelines install accepts), read it back
through kfp's own protobuf schema, and draw its DAG.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from helpers import paths
from helpers.errors import PipelineError
from helpers.pipeline.components import build_pipeline
from helpers.pipeline.steps import DEFAULT_WORK_DIR, PIPELINE_NAME

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def compile_pipeline(path: str | os.PathLike[str] | None = None, image: str | None = None) -> Path:
    """Compile the pipeline to KFP's YAML IR (what you upload to Kubeflow Pipelines).

    Args:
        path: output file; default ``build/pipeline/iris-end-to-end.yaml``.
        image: components' base image (default the kit's training image).

    Returns:
        The path written.
    """
    from kfp import compiler

    target = paths.resolve(path) if path else paths.resolve(DEFAULT_WORK_DIR) / f"{PIPELINE_NAME}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(image, install_kfp=True), str(target))
    return target


def inspect_ir(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate a compiled pipeline YAML the way KFP's API server reads it, and summarise it.

    The document is parsed into kfp's own ``PipelineSpec`` protobuf (unknown or mistyped
    fields are errors, as on upload), then loaded back with
    ``kfp.components.load_component_from_file``.

    Returns:
        ``{"name", "schema_version", "sdk_version", "tasks": {task: [upstream tasks]},
        "edges": [(producer, consumer, input)], "components", "images", "parameters", "order"}``.

    Raises:
        PipelineError: the file is missing or not a valid KFP pipeline.
    """
    import yaml
    from google.protobuf import json_format
    from kfp import components
    from kfp.pipeline_spec import pipeline_spec_pb2

    target = paths.resolve(path)
    if not target.is_file():
        raise PipelineError(f"no compiled pipeline at {target}: run pipeline.compile_pipeline() first")
    docs = list(yaml.safe_load_all(target.read_text()))
    try:
        spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
        components.load_component_from_file(str(target))
    except (json_format.ParseError, ValueError, TypeError, KeyError) as exc:
        raise PipelineError(f"{target} is not a valid KFP pipeline: {exc}") from exc
    tasks = {name: sorted(task.dependent_tasks) for name, task in spec.root.dag.tasks.items()}
    edges = []  # (producer, consumer, input name): what flows along each arrow
    for name, task in spec.root.dag.tasks.items():
        for key, value in task.inputs.parameters.items():
            if value.HasField("task_output_parameter"):
                edges.append((value.task_output_parameter.producer_task, name, key))
        for key, value in task.inputs.artifacts.items():
            if value.HasField("task_output_artifact"):
                edges.append((value.task_output_artifact.producer_task, name, key))
    return {
        "name": spec.pipeline_info.name,
        "schema_version": spec.schema_version,
        "sdk_version": spec.sdk_version,
        "tasks": tasks,
        "edges": sorted(edges),
        "order": topological_order(tasks),
        "components": sorted(spec.components),
        "images": sorted({ex["container"]["image"]
                          for ex in docs[0]["deploymentSpec"]["executors"].values()}),
        "parameters": sorted(spec.root.input_definitions.parameters),
    }


def topological_order(tasks: dict[str, list[str]]) -> list[str]:
    """Order tasks so each comes after the tasks it depends on (ties by name)."""
    order: list[str] = []
    remaining = dict(tasks)
    while remaining:
        ready = sorted(t for t, deps in remaining.items() if all(d in order for d in deps))
        if not ready:
            raise PipelineError(f"the pipeline DAG has a cycle among {sorted(remaining)}")
        order += ready
        for t in ready:
            remaining.pop(t)
    return order


def plot_dag(summary: dict[str, Any]) -> Figure:
    """Draw the compiled DAG (from :func:`inspect_ir`): a box per task, an arrow per input it gets.

    Made with pyplot, so Jupyter's inline backend shows it at the end of the cell (a bare
    ``Figure`` is shown by nothing: the notebook printed only its repr); assign the result
    to avoid a second copy. Close it with ``plt.close(fig)`` outside notebooks.
    """
    import matplotlib.pyplot as plt

    order = summary["order"]
    fig, ax = plt.subplots(figsize=(1.9 * len(order) + 0.5, 2.2), layout="constrained")
    pos = {task: (i * 2.0, 0.0) for i, task in enumerate(order)}
    for producer, consumer, name in summary["edges"]:
        (x0, _), (x1, _) = pos[producer], pos[consumer]
        skip = abs(x1 - x0) > 2.0  # arrows that jump over a task arc above it
        ax.annotate("", xy=(x1 - 0.45, 0.12 if skip else 0.0), xytext=(x0 + 0.45, 0.12 if skip else 0.0),
                    arrowprops={"arrowstyle": "->", "lw": 1.4,
                                "connectionstyle": "arc3,rad=-0.3" if skip else "arc3"})
        ax.text((x0 + x1) / 2, 0.62 if skip else 0.1, name, ha="center", va="bottom", fontsize=8,
                color="#444444")
    for task, (x, y) in pos.items():
        ax.text(x, y, task, ha="center", va="center", fontsize=11,
                bbox={"boxstyle": "round,pad=0.5", "fc": "#dbe9f6", "ec": "#2b6ca3"})
    ax.set_xlim(-1, 2.0 * len(order) - 1)
    ax.set_ylim(-0.5, 0.9)
    ax.set_axis_off()
    ax.set_title(f"{summary['name']}: tasks of the compiled pipeline")
    return fig


