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


#: How to get each command the kind backend (and ``make cluster-up``) needs; ``{kind}`` is its pin.
TOOL_FIXES = {
    "docker": "install Docker (https://docs.docker.com/get-docker/) and start it",
    "kind": "install kind {kind} (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)",
    "kubectl": "install kubectl (https://kubernetes.io/docs/tasks/tools/)",
    "git": "install git: kubectl fetches the Training Operator's kustomization with it",
}
#: The commands a kind cluster needs on this machine.
KIND_TOOLS = ("docker", "kind", "kubectl")


def tool_fix(tool: str) -> str:
    """What to do about a missing command (``install ...``), from :data:`TOOL_FIXES`."""
    from helpers import versions

    return TOOL_FIXES.get(tool, f"install {tool}").format(kind=versions.pin("kind"))


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _kind_message(problem: str) -> str:
    """One sentence: what is wrong, which tools (only those) are missing, and what to do."""
    missing = [tool for tool in KIND_TOOLS if shutil.which(tool) is None]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        return (f'BACKEND="kind": {problem}, and {_join(missing)} {verb} not on PATH: '
                f"{'; '.join(tool_fix(t) for t in missing)}; then run `make cluster-up`, "
                'or run the lab with BACKEND="sim".')
    return (f'BACKEND="kind": {problem}: run `make cluster-up` to create the cluster, '
            'or run the lab with BACKEND="sim".')


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
            raise BackendUnavailable(_kind_message(problem))
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
