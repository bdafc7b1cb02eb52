"""The chapter this kit teaches, and which lab covers each of its learning objectives."""

from __future__ import annotations

from dataclasses import dataclass

from helpers import paths

CHAPTER = "Ch 10. Common Kubeflow Integrations: Volcano and KServe"


@dataclass(frozen=True)
class Objective:
    """One learning objective of the chapter, and the labs that demonstrate it."""

    text: str
    labs: tuple[str, ...]


#: The chapter's learning objectives (paraphrased) mapped to the labs that cover them,
#: followed by the chapter's further concepts.
OBJECTIVES: tuple[Objective, ...] = (
    Objective("Explain why batch (gang) scheduling matters and how one-pod-at-a-time "
              "scheduling gridlocks a nearly full cluster", ("01_gridlock_vs_gang",)),
    Objective("Explain what Volcano is for and where it came from",
              ("02_volcano_jobs_and_queues",)),
    Objective("List what Kubeflow needs before it can use Volcano: the install and the "
              "Training Operator's gang-scheduler flag", ("02_volcano_jobs_and_queues",)),
    Objective("Launch a simple Volcano job and follow its PodGroup",
              ("02_volcano_jobs_and_queues",)),
    Objective("Explain the problem KServe solves, its history and its goals",
              ("05_serve_with_kserve",)),
    Objective("Build and submit a KServe InferenceService manifest that serves a model",
              ("05_serve_with_kserve", "06_end_to_end")),
    Objective("Train the Iris model with XGBoost and save it with save_model() to a volume",
              ("03_train_iris_xgboost", "06_end_to_end")),
    Objective("Weigh pickle against model formats: security, compatibility, efficiency, "
              "language support", ("04_pickle_vs_onnx",)),
    Objective("Run the whole flow as a Kubeflow Pipeline: volume, train, serve, predict",
              ("06_end_to_end",)),
)


def objective_table() -> list[dict]:
    """Rows (objective, labs, present) for lab 00; ``present`` says each lab file exists."""
    existing = {p.stem for p in paths.labs_dir().glob("[0-9][0-9]_*.ipynb")}
    return [
        {"objective": o.text, "labs": list(o.labs),
         "present": all(lab in existing for lab in o.labs)}
        for o in OBJECTIVES
    ]
