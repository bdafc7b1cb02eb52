"""The chapter's end-to-end demonstration as a Kubeflow Pipeline (kfp SDK v2).

Four components, one per step of the chapter's flow::

    volume  ->  train (+ save_model)  ->  serve (InferenceService)  ->  predict

Each component is a lightweight Python component whose body calls one *step* function of
this module; the step does the work on the chosen backend:

============ ============================================ ==========================================
step         ``sim`` (embedded default)                    ``kind`` (a real cluster)
============ ============================================ ==========================================
volume       a local folder standing in for the PVC       the ``model-store`` PVC
train        :func:`helpers.training.train` + save_model  a gang-scheduled XGBoostJob onto the PVC
serve        an InferenceService record, reconciled by    the InferenceService, applied and Ready
             :class:`SimCluster`'s controller into
             KServe's own model server on 127.0.0.1
predict      V2 requests to that server                   V2 requests through a port-forward
============ ============================================ ==========================================

:func:`compile_pipeline` writes the pipeline YAML (KFP's IR) that a Kubeflow Pipelines
install accepts; :func:`inspect_ir` reads it back through kfp's own protobuf schema. On the
embedded default, :func:`run_local` executes the pipeline with kfp's local
``SubprocessRunner``: every component runs as a subprocess of this Python, importing the
installed ``helpers`` package.

The package: :mod:`~helpers.pipeline.components` (the four kfp components and the pipeline),
:mod:`~helpers.pipeline.steps` (what each step does, through the backend's verbs),
:mod:`~helpers.pipeline.ir` (compile, inspect, draw) and :mod:`~helpers.pipeline.local`
(run with kfp's local runner, clean up). On ``sim`` the steps share
:class:`~helpers.backend.sim_cluster.SimCluster`, a file-backed stand-in for KServe's controller.
"""

# No ``from __future__ import annotations`` anywhere in this package: kfp reads the components'
# annotations (dsl.Output[dsl.Dataset], ...) as real types when it builds them.
from helpers.backend.sim_cluster import SimCluster, sim_controller
from helpers.errors import PipelineError
from helpers.pipeline.components import base_image, build_pipeline, predict, serve, train, volume
from helpers.pipeline.ir import compile_pipeline, inspect_ir, plot_dag, topological_order
from helpers.pipeline.local import PipelineRun, cleanup, run_local
from helpers.pipeline.steps import (
    DEFAULT_WORK_DIR,
    MODEL_CLAIM,
    PIPELINE_NAME,
    STEPS,
    Connection,
    connect,
    read_rows,
    step_predict,
    step_serve,
    step_train,
    step_volume,
)

__all__ = ["DEFAULT_WORK_DIR", "MODEL_CLAIM", "PIPELINE_NAME", "STEPS", "Connection", "PipelineError",
           "PipelineRun", "SimCluster", "base_image", "build_pipeline", "cleanup", "compile_pipeline",
           "connect", "inspect_ir", "plot_dag", "predict", "read_rows", "run_local", "serve",
           "sim_controller", "step_predict", "step_serve", "step_train", "step_volume",
           "topological_order", "train", "volume"]
