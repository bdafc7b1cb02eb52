"""Run the pipeline locally with kfp's ``SubprocessRunner``, and clean up after it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from helpers import paths
from helpers.errors import LabError, PipelineError
from helpers.pipeline.components import build_pipeline
from helpers.pipeline.steps import DEFAULT_WORK_DIR, PIPELINE_NAME, _target


@dataclass
class PipelineRun:
    """A local run of the pipeline: its outputs, timing, log and the sim controller."""

    backend: str
    model_name: str
    accuracy: float
    seconds: float
    state_dir: Path
    outputs_dir: Path
    log: str = field(repr=False, default="")
    sim: Any = field(repr=False, default=None)

    @property
    def run_dir(self) -> Path:
        """This run's folder under ``outputs_dir`` (kfp names it ``<pipeline>-<timestamp>``)."""
        runs = sorted(self.outputs_dir.glob(f"{PIPELINE_NAME}-*"), key=lambda p: p.stat().st_mtime)
        if not runs:
            raise PipelineError(f"no run folder under {self.outputs_dir}: did the run start?")
        return runs[-1]

    def outputs(self) -> dict[str, dict[str, Any]]:
        """Per task, what kfp's local runner recorded: output parameters and metrics.

        Returns:
            ``{task: {"parameters": {...}, "metrics": {...}, "artifacts": [names]}}``.
        """
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(self.run_dir.glob("*/executor_output.json")):
            data = json.loads(path.read_text())
            metrics: dict[str, Any] = {}
            for name, group in data.get("artifacts", {}).items():
                if name == "metrics":
                    for artifact in group["artifacts"]:
                        metrics.update(artifact.get("metadata", {}))
            found[path.parent.name] = {"parameters": data.get("parameterValues", {}),
                                       "metrics": metrics,
                                       "artifacts": sorted(data.get("artifacts", {}))}
        return found

    @property
    def served_at(self) -> str:
        """The serve step's output: where the model answers (``http://...`` or ``service://...``)."""
        return self.outputs()["serve"]["parameters"]["Output"]

    def stop(self) -> None:
        """Stop the sim controller and its model servers. Safe to call twice."""
        if self.sim is not None:
            self.sim.stop()


def run_local(backend_name: str = "sim", seed: int = 42, model_name: str = "iris",
              work_dir: str | os.PathLike[str] = DEFAULT_WORK_DIR, trainer: str = "v1") -> PipelineRun:
    """Execute the pipeline with kfp's local SubprocessRunner.

    ``trainer`` picks the training controller on a cluster (``v1`` the Training Operator's
    XGBoostJob, ``v2`` Kubeflow Trainer's TrainJob); it is checked before anything runs.

    On ``sim`` this first starts the :class:`SimCluster` controller in this process (it owns
    the model server after the serve step ends: stop it with :meth:`PipelineRun.stop`). On
    ``kind`` the steps act on the cluster through the kubeconfig.

    Returns:
        A :class:`PipelineRun` (the served model keeps running on sim).

    Raises:
        PipelineError: a step failed; the message holds the tail of the components' log.
    """
    from kfp import local

    from helpers.backend.base import check_trainer

    target = _target(backend_name)  # raises the explained error for kwok / unknown names
    check_trainer(trainer)
    work = paths.resolve(work_dir)
    state_dir = work / "sim-cluster"
    outputs = work / "local_outputs"
    sim = target.controller(state_dir)  # sim: the stand-in's KServe controller; else None
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(outputs))
    pipeline_func = build_pipeline(image="python:3.11", install_kfp=False)
    buffer = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            task = pipeline_func(backend=backend_name, seed=seed, model_name=model_name,
                                 state_dir=str(state_dir), trainer=trainer)
    except (RuntimeError, LabError) as exc:
        if sim is not None:
            sim.stop()
        tail = "\n".join(buffer.getvalue().strip().splitlines()[-25:])
        message = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))  # kfp colours its messages
        raise PipelineError(f"the pipeline failed on {backend_name}: {message}\n"
                            f"--- last log lines ---\n{tail}") from None
    return PipelineRun(backend_name, model_name, float(task.output), time.perf_counter() - start, state_dir,
                       outputs, buffer.getvalue(), sim)


def cleanup(run: PipelineRun | None = None,
            work_dir: str | os.PathLike[str] = DEFAULT_WORK_DIR) -> list[str]:
    """Stop servers and remove the run state (the compiled YAML stays). Safe to call twice.

    Returns:
        What was removed (folder names), for the lab to print.
    """
    removed = []
    if run is not None:
        run.stop()
        # On a cluster: InferenceService and XGBoostJob, ignore-not-found; the PVC stays.
        removed += _target(run.backend).clean_pipeline(run.model_name)
    work = paths.resolve(work_dir)
    for name in ("sim-cluster", "local_outputs"):
        target = work / name
        if target.exists():
            shutil.rmtree(target)
            removed.append(name)
    return removed


