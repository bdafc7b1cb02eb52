"""Choose where a lab runs: ``sim`` (embedded default), ``kind``, ``kwok`` or ``auto``.

* ``sim``  - no cluster, no Docker: the scheduling model and a local KServe model server.
* ``kind`` - a kind cluster on this machine, reached through kubeconfig (``make cluster-up``).
* ``kwok`` - the Docker-less control plane: real kube-apiserver, kube-scheduler and Volcano
  on fake nodes (``make controlplane-up``). Scheduling labs only.
* ``auto`` - a cluster only when one is *explicitly requested* through the environment
  variable ``KFLABS_BACKEND=kind|kwok`` *and* reachable; otherwise ``sim``.

:func:`resolve` prints one line saying what it chose and why. A backend that cannot be
used raises :class:`helpers.errors.BackendUnavailable` naming the fix, never a traceback.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from helpers import paths
from helpers.errors import BackendUnavailable

BACKENDS = ("sim", "kind", "kwok", "auto")
#: kind cluster name (``kind create cluster --name``) and so its kubeconfig context.
KIND_CLUSTER_NAME = "kflabs"
KIND_CONTEXT = f"kind-{KIND_CLUSTER_NAME}"
#: Environment variable through which ``auto`` may be asked for a cluster.
AUTO_ENV = "KFLABS_BACKEND"


@dataclass(frozen=True)
class Backend:
    """The resolved backend: its name, why it was chosen, and how to reach a cluster."""

    name: str
    reason: str
    kubeconfig: str | None = None
    context: str | None = None

    @property
    def is_cluster(self) -> bool:
        """True for ``kind`` and ``kwok``: cells apply manifests to a real API server."""
        return self.name in ("kind", "kwok")


def kwok_kubeconfig() -> Path:
    """Kubeconfig written by ``make controlplane-up``."""
    return paths.build_dir() / "controlplane" / "kubeconfig"


def default_kubeconfig() -> Path:
    """The kubeconfig kubectl would use: first entry of ``$KUBECONFIG``, else ``~/.kube/config``."""
    env = os.environ.get("KUBECONFIG", "")
    first = next((p for p in env.split(os.pathsep) if p), "")
    return Path(first).expanduser() if first else Path.home() / ".kube" / "config"


def _kind_fix() -> str:
    missing = [tool for tool in ("docker", "kind", "kubectl") if shutil.which(tool) is None]
    if missing:
        return (
            f"{', '.join(missing)} not found on PATH: install Docker (https://docs.docker.com/get-docker/),"
            " kind (https://kind.sigs.k8s.io) and kubectl, then run `make cluster-up`;"
            ' or run the lab with BACKEND="sim"'
        )
    return 'run `make cluster-up` to create it, or run the lab with BACKEND="sim"'


def probe(kubeconfig: Path, context: str | None, timeout: float = 3.0) -> str | None:
    """Return None when the API server behind ``kubeconfig``/``context`` answers, else why not."""
    if not kubeconfig.is_file():
        return f"no kubeconfig at {kubeconfig}"
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        contexts, _ = config.list_kube_config_contexts(config_file=str(kubeconfig))
    except (ConfigException, OSError, ValueError) as exc:
        return f"kubeconfig {kubeconfig} is unreadable ({exc})"
    names = [c["name"] for c in contexts or []]
    if context and context not in names:
        return f"context {context!r} not in {kubeconfig} (found: {', '.join(names) or 'none'})"
    try:
        api = config.new_client_from_config(config_file=str(kubeconfig), context=context)
        with api:
            client.VersionApi(api).get_code(_request_timeout=timeout)
    except Exception as exc:  # noqa: BLE001 - any failure here means "not reachable"
        summary = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
        return f"API server not reachable ({summary})"
    return None


def _check(name: str, kubeconfig: str | None, context: str | None) -> Backend:
    if name == "kind":
        cfg = Path(kubeconfig).expanduser() if kubeconfig else default_kubeconfig()
        ctx = context or KIND_CONTEXT
        problem = probe(cfg, ctx)
        if problem:
            raise BackendUnavailable(f'BACKEND="kind": {problem}. Fix: {_kind_fix()}.')
        return Backend("kind", f"kind cluster reachable through context {ctx}", str(cfg), ctx)
    cfg = Path(kubeconfig).expanduser() if kubeconfig else kwok_kubeconfig()
    problem = probe(cfg, context)
    if problem:
        fix = (
            "run `make controlplane-up` (builds the real kube-apiserver, kube-scheduler and"
            " Volcano with Go, no Docker needed)"
            if shutil.which("go")
            else "install Go (https://go.dev/doc/install), then run `make controlplane-up`"
        )
        raise BackendUnavailable(f'BACKEND="kwok": {problem}. Fix: {fix}; or use BACKEND="sim".')
    return Backend("kwok", "local control plane reachable", str(cfg), context)


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
    if name == "sim":
        chosen = Backend("sim", "embedded default: scheduling model and local KServe server")
    elif name == "auto":
        wanted = os.environ.get(AUTO_ENV, "").strip().lower()
        if wanted in ("kind", "kwok"):
            try:
                chosen = _check(wanted, kubeconfig, context)
                chosen = Backend(chosen.name, f"{AUTO_ENV}={wanted} and {chosen.reason}",
                                 chosen.kubeconfig, chosen.context)
            except BackendUnavailable as exc:
                chosen = Backend("sim", f"{AUTO_ENV}={wanted} requested but unusable: {exc}")
        else:
            chosen = Backend("sim", f"no cluster requested ({AUTO_ENV} is not kind or kwok)")
    else:
        chosen = _check(name, kubeconfig, context)
    if announce:
        print(f"backend: {chosen.name} - {chosen.reason}")
    return chosen
