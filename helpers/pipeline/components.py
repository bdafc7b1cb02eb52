"""The pipeline's four kfp components and the pipeline that wires them.

Lightweight components: kfp ships each function's source to the executor, so every import
sits inside the function and the work happens in :mod:`helpers.pipeline.steps`.
"""

# No ``from __future__ import annotations`` here: kfp reads the components' annotations
# (dsl.Output[dsl.Dataset], ...) as real types when it builds them.

from kfp import dsl

from helpers.pipeline.steps import DEFAULT_WORK_DIR, PIPELINE_NAME, STEPS


def volume(backend: str, state_dir: str) -> str:
    """Provision the model volume (a PVC on a cluster, a local folder on sim)."""
    from helpers.pipeline import steps  # runs in kfp's executor

    return steps.step_volume(backend, state_dir)


def train(backend: str, state_dir: str, claim: str, seed: int, model_name: str,  # noqa: PLR0917
          trainer: str, test_rows: dsl.Output[dsl.Dataset], metrics: dsl.Output[dsl.Metrics]) -> str:
    """Train the Iris XGBoost model and save_model() it onto the volume; return its storageUri."""
    from helpers.pipeline import steps  # runs in kfp's executor

    uri, accuracy = steps.step_train(backend, state_dir, claim, seed=seed, model_name=model_name,
                                        test_csv=test_rows.path, trainer=trainer)
    metrics.log_metric("train_accuracy", accuracy)
    return uri


def serve(backend: str, state_dir: str, storage_uri: str, model_name: str) -> str:
    """Serve the model through an InferenceService; return where it answers."""
    from helpers.pipeline import steps  # runs in kfp's executor

    return steps.step_serve(backend, state_dir, storage_uri, model_name)


def predict(backend: str, endpoint: str, model_name: str,
            test_rows: dsl.Input[dsl.Dataset], metrics: dsl.Output[dsl.Metrics]) -> float:
    """Predict the held-out rows through the served model (V2); return the accuracy."""
    from helpers.pipeline import steps  # runs in kfp's executor

    accuracy, n_rows = steps.step_predict(backend, endpoint, model_name, test_rows.path)
    metrics.log_metric("served_accuracy", accuracy)
    metrics.log_metric("rows", n_rows)
    return accuracy


def base_image() -> str:
    """The image the components run in on a cluster: the kit's training image (has helpers)."""
    from helpers.backend.kind import images

    return images.training_image_tag()


def build_pipeline(image: str | None = None, install_kfp: bool = False):
    """Build the kfp pipeline function.

    Args:
        image: the components' base image (default :func:`base_image`).
        install_kfp: let each component ``pip install`` kfp at start-up, as KFP's default
            does; off for the local runner, which uses this environment's kfp.

    Returns:
        The ``@dsl.pipeline`` function ``iris_end_to_end(backend, seed, model_name, state_dir,
        trainer)``.
    """
    image = image or base_image()
    make = {name: dsl.component(func, base_image=image, install_kfp_package=install_kfp)
            for name, func in zip(STEPS, (volume, train, serve, predict), strict=True)}

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Iris on Kubeflow: volume -> train (XGBoost) -> serve (KServe) -> predict")
    def iris_end_to_end(backend: str = "sim", seed: int = 42, model_name: str = "iris",
                        state_dir: str = DEFAULT_WORK_DIR + "/sim-cluster",
                        trainer: str = "v1") -> float:
        volume = make["volume"](backend=backend, state_dir=state_dir).set_display_name("volume")
        train = make["train"](backend=backend, state_dir=state_dir, claim=volume.output, seed=seed,
                              model_name=model_name, trainer=trainer).set_display_name("train")
        serve = make["serve"](backend=backend, state_dir=state_dir, storage_uri=train.outputs["Output"],
                              model_name=model_name).set_display_name("serve")
        predict = make["predict"](backend=backend, endpoint=serve.output, model_name=model_name,
                                  test_rows=train.outputs["test_rows"]).set_display_name("predict")
        return predict.outputs["Output"]

    return iris_end_to_end


