"""The backend interface: one set of verbs every backend implements, or refuses in one way.

A backend is where a lab runs. The labs and the pure packages (``helpers.scheduling``,
``helpers.serving``, ``helpers.pipeline``) call these verbs on the object they are given and
never test its name:

==================== ============================================================================
verb                 what it does
==================== ============================================================================
``run_scheduling``   run a scheduling scenario's manifests; return the model's result shape
``publish_model``    put a saved model where an InferenceService reads it; return its storageUri
``serve``            bring an InferenceService's model up; return a handle with ``cleanup()``
``withdraw``         undo ``serve``, even one that failed half-way (safe twice)
``train``            run the chapter's training job; return its storageUri and accuracy
``provision_volume`` make the model volume (the pipeline's first step)
``deploy``           declare an InferenceService and await it; return where it answers
``reach``            open a way to where ``deploy`` said the model answers
``controller``       start what keeps the pipeline's served model alive here (sim only)
``clean_pipeline``   remove what the pipeline left on the backend
==================== ============================================================================

A backend that lacks a verb inherits the one here, which raises
:class:`~helpers.errors.BackendUnavailable` naming the backends that have it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from helpers.errors import BackendUnavailable, PipelineError

#: The verbs a backend may implement (the order the table above lists them in).
VERBS = ("run_scheduling", "publish_model", "serve", "withdraw", "train", "provision_volume",
         "deploy", "reach", "controller", "clean_pipeline")


@dataclass(frozen=True)
class Backend:
    """A resolved backend: why it was chosen and how to reach its API server, plus its verbs.

    Subclasses set :attr:`name` and override the verbs they implement.

    Attributes:
        reason: why :func:`helpers.backend.resolve` chose it (printed in one line).
        kubeconfig: the kubeconfig of a cluster backend (None for ``sim``).
        context: its context (None: the kubeconfig's current one).
    """

    reason: str
    kubeconfig: str | None = None
    context: str | None = None

    #: The backend's name, as a lab's ``BACKEND`` parameter spells it.
    name: ClassVar[str] = ""
    #: Where it comes in lists of backends (the embedded default first).
    order: ClassVar[int] = 99
    #: True when cells apply manifests to a real API server (``kind``, ``kwok``).
    is_cluster: ClassVar[bool] = False
    #: Whether an InferenceService must also meet the cluster's own rules (its PVC, namespace).
    checks_cluster_rules: ClassVar[bool] = False
    #: Whether several labs may run at once against it (no shared cluster state).
    parallel_labs: ClassVar[bool] = False
    #: Whether a scheduling result counts nodes kube-scheduler's gang plugin reserved at Permit
    #: as allocated (the model does; an API server shows bound pods only).
    counts_permit_reservations: ClassVar[bool] = False
    #: Why this backend lacks the verbs it does not implement (said in the refusal).
    lacks_because: ClassVar[str] = ""

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> Backend:
        """Check this backend is usable here and return it (cluster backends probe the API).

        Raises:
            BackendUnavailable: it is not reachable; the message names the fix.
        """
        return cls(f"{cls.name} chosen", kubeconfig, context)

    # ------------------------------------------------------------------ the verbs
    def adapt_manifests(self, docs: list[dict], time_scale: float) -> list[dict]:
        """The lab's manifests as a scheduling run applies them here (unchanged by default)."""
        return docs

    def release_nodes(self, api: Any) -> None:
        """Undo what ``prepare_nodes`` changed on a shared cluster, after a scheduling run."""

    def health(self) -> str:
        """What of the backend itself is down, as lines to append to a timed-out wait's error.

        Empty when all is well, and by default (a cluster's own components are its operator's).
        """
        return ""

    def run_scheduling(self, manifest_paths: list[Path], nodes: list, scheduler: str, *,
                       seed: int = 0, config: Any = None) -> Any:
        """Run a scenario's manifests on ``nodes`` under ``scheduler``; the model's result shape."""
        raise self.lacks("run_scheduling", "run the scheduling labs")

    def publish_model(self, folder: Path, name: str) -> str:
        """Make the saved model in ``folder`` readable by an InferenceService; its storageUri."""
        raise self.lacks("publish_model", "hold a model")

    def serve(self, manifest: dict[str, Any], store_dir: str | os.PathLike[str], *,
              timeout: float = 60.0, **options: Any) -> Any:
        """Bring ``manifest``'s model up from ``store_dir``; a handle with ``cleanup()``."""
        raise self.lacks("serve", "serve a model")

    def withdraw(self, manifest: dict[str, Any], server: Any = None) -> None:
        """Stop ``server`` and delete what :meth:`serve` declared. Safe twice."""
        if server is not None:
            server.cleanup()

    def train(self, *, seed: int, model_name: str, claim: str,
              state_dir: str | os.PathLike[str], trainer: str = "v1") -> tuple[str, float | None]:
        """Train the Iris model onto the volume ``claim``; ``(storage_uri, accuracy)``.

        ``trainer`` picks Kubeflow's training controller on a cluster (:data:`TRAINERS`).
        """
        raise self.lacks("train", "train a model")

    def provision_volume(self, claim: str, state_dir: str | os.PathLike[str]) -> str:
        """Create the model volume ``claim`` (idempotent); return its name."""
        raise self.lacks("provision_volume", "hold a model volume")

    def deploy(self, manifest: dict[str, Any], state_dir: str | os.PathLike[str],
               timeout: float) -> str:
        """Declare the InferenceService and wait until Ready; where it answers."""
        raise self.lacks("deploy", "serve a model")

    def reach(self, where: str) -> tuple[str, Callable[[], None] | None]:
        """``(base_url, close)`` for what :meth:`deploy` returned (``close`` may be None)."""
        if where.startswith("http://"):
            return where, None
        raise PipelineError(f"cannot reach {where!r}: expected http://... or service://<ns>/<svc> "
                            "(the serve step's output)")

    def controller(self, state_dir: str | os.PathLike[str]) -> Any:
        """What must run in this process while the pipeline runs (None: the cluster's own)."""
        return None

    def clean_pipeline(self, model_name: str) -> list[str]:
        """Remove what the pipeline declared on this backend; what was removed."""
        return []

    # ------------------------------------------------------------------ capability checks
    def can(self, verb: str) -> bool:
        """True when this backend implements ``verb`` (overrides the refusing default)."""
        return getattr(type(self), verb) is not getattr(Backend, verb)

    def require(self, verb: str, doing: str) -> Backend:
        """Return self if it implements ``verb``; else raise :meth:`lacks`'s error."""
        if not self.can(verb):
            raise self.lacks(verb, doing)
        return self

    def lacks(self, verb: str, doing: str) -> BackendUnavailable:
        """The one error for a missing capability: it names the backends that have it."""
        having = [cls.name for cls in registered() if cls(reason="").can(verb)]
        why = f" ({self.lacks_because})" if self.lacks_because else ""
        return BackendUnavailable(
            f"BACKEND={self.name!r} cannot {doing}{why}: run it with "
            + " or ".join(f"BACKEND={n!r}" for n in having))


#: The training controllers a cluster backend trains through: ``v1`` the Training Operator's
#: XGBoostJob (the chapter's), ``v2`` Kubeflow Trainer's TrainJob.
TRAINERS = ("v1", "v2")


def check_trainer(trainer: str) -> str:
    """``trainer`` if it is one of :data:`TRAINERS`.

    Raises:
        PipelineError: another value; names the choices.
    """
    if trainer not in TRAINERS:
        raise PipelineError(f"TRAINER={trainer!r}: choose {' or '.join(map(repr, TRAINERS))} "
                            "(v1: the Training Operator's XGBoostJob, v2: Kubeflow Trainer's TrainJob)")
    return trainer


_REGISTRY: dict[str, type[Backend]] = {}


def register(cls: type[Backend]) -> type[Backend]:
    """Class decorator: make a backend known to :func:`registered` and :func:`backend_class`."""
    _REGISTRY[cls.name] = cls
    return cls


def registered() -> list[type[Backend]]:
    """Every registered backend class, the embedded default first."""
    return sorted(_REGISTRY.values(), key=lambda cls: cls.order)


def backend_class(name: str) -> type[Backend]:
    """The class of backend ``name``.

    Raises:
        BackendUnavailable: no backend has that name.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise BackendUnavailable(
            f"unknown backend {name!r}: use one of {', '.join(_REGISTRY)}") from None
