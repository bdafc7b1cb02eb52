"""Choose where a lab runs: ``sim`` (embedded default), ``kind``, ``kwok`` or ``auto``.

* ``sim``  - no cluster, no Docker: the scheduling model and a local KServe model server.
* ``kind`` - a kind cluster on this machine, reached through kubeconfig (``make cluster-up``).
* ``kwok`` - the Docker-less control plane: real kube-apiserver, kube-scheduler and Volcano
  on fake nodes (``make controlplane-up``). Scheduling labs only.
* ``auto`` - a cluster only when one is *explicitly requested* through the environment
  variable ``KFLABS_BACKEND=kind|kwok`` *and* reachable; otherwise ``sim``.

:func:`resolve` prints one line saying what it chose and why. A backend that cannot be
used raises :class:`helpers.errors.BackendUnavailable` naming the fix, never a traceback.

Each backend is an object with the same verbs (:mod:`helpers.backend.base`): the labs and the
model packages call them and never test a backend's name. The implementations live in
:mod:`helpers.backend.sim`, :mod:`helpers.backend.kind` and :mod:`helpers.backend.kwok`.
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers.backend.base import VERBS, Backend, backend_class, registered
from helpers.backend.kind import KindBackend
from helpers.backend.kwok import KwokBackend
from helpers.backend.sim import SimBackend
from helpers.errors import BackendUnavailable
from helpers.kube.names import KIND_CLUSTER_NAME, KIND_CONTEXT, kwok_kubeconfig

__all__ = ["AUTO_ENV", "BACKENDS", "KIND_CLUSTER_NAME", "KIND_CONTEXT", "VERBS", "Backend",
           "KindBackend", "KwokBackend", "SimBackend", "backend_class", "default_kubeconfig",
           "kwok_kubeconfig", "make", "probe", "registered", "resolve"]

#: What a lab's ``BACKEND`` parameter may say, the embedded default first.
BACKENDS = (*(cls.name for cls in registered()), "auto")
#: Environment variable through which ``auto`` may be asked for a cluster.
AUTO_ENV = "KFLABS_BACKEND"


def default_kubeconfig() -> Path:
    """The kubeconfig kubectl would use (see :func:`helpers.kube.client.default_kubeconfig`)."""
    from helpers.kube import client

    return client.default_kubeconfig()


def probe(kubeconfig: Path, context: str | None, timeout: float = 3.0) -> str | None:
    """None when the API server behind ``kubeconfig``/``context`` answers, else why not."""
    from helpers.kube import client

    return client.probe(kubeconfig, context, timeout)


def make(name: str, reason: str = "", kubeconfig: str | None = None,
         context: str | None = None) -> Backend:
    """A backend object of the given name, without checking it is reachable (tests, pipelines)."""
    return backend_class(name)(reason, kubeconfig, context)


def resolve(
    requested: str = "sim",
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    announce: bool = True,
) -> Backend:
    """Resolve the ``BACKEND`` parameter of a lab into a usable :class:`Backend`.

    Args:
        requested: ``sim``, ``kind``, ``kwok`` or ``auto``.
        kubeconfig: Kubeconfig path for a cluster backend (default: the usual one).
        context: Kubeconfig context (default ``kind-kflabs`` for kind).
        announce: Print the one-line choice.

    Raises:
        BackendUnavailable: ``kind``/``kwok`` requested but not reachable, or an unknown name.
    """
    name = (requested or "sim").strip().lower()
    if name not in BACKENDS:
        raise BackendUnavailable(
            f"unknown BACKEND={requested!r}: choose one of {', '.join(BACKENDS)}"
        )
    if name == "auto":
        chosen = _auto(kubeconfig, context)
    else:
        chosen = backend_class(name).connect(kubeconfig, context)
    if announce:
        print(f"backend: {chosen.name} - {chosen.reason}")
    return chosen


def _auto(kubeconfig: str | None, context: str | None) -> Backend:
    wanted = os.environ.get(AUTO_ENV, "").strip().lower()
    clusters = [cls for cls in registered() if cls.is_cluster]
    if wanted not in {cls.name for cls in clusters}:
        return SimBackend(f"no cluster requested ({AUTO_ENV} is not "
                          f"{' or '.join(cls.name for cls in clusters)})")
    try:
        found = backend_class(wanted).connect(kubeconfig, context)
    except BackendUnavailable as exc:
        return SimBackend(f"{AUTO_ENV}={wanted} requested but unusable: {exc}")
    return type(found)(f"{AUTO_ENV}={wanted} and {found.reason}", found.kubeconfig, found.context)

