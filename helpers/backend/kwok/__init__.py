"""The ``kwok`` backend: the Docker-less control plane, real schedulers on fake nodes.

Real upstream binaries, built from the Go module proxy by the wrapper modules under
``cluster/controlplane/`` and run as ordinary processes bound to 127.0.0.1:

* etcd, the store;
* kube-apiserver, with a generated CA, serving certificate, service-account key and a
  bearer token (authorization ``AlwaysAllow``: this is a private test cluster);
* kube-controller-manager (batch/v1 Jobs, namespaces, garbage collection), kube-scheduler
  and Volcano's vc-scheduler and vc-controller-manager, all with ``--leader-elect=false``;
* kwok, playing the kubelet for fake Nodes (annotation ``kwok.x-k8s.io/node=fake``) with
  the stages in ``cluster/controlplane/config/kwok-stages.yaml``: pods run at once and
  never complete unless the helper asks for it.

No container ever runs, so only scheduling can be taught here. The Kubeflow Training
Operator v1, Kubeflow Trainer v2 and JobSet are built too and started only on request
(:class:`training_operator`, :class:`~.trainer_v2.trainer_v2`).

The package: :mod:`~.layout` (files, ports), :mod:`~.build` (Go builds), :mod:`~.pki`
(certificates, kubeconfig), :mod:`~.supervisor` (processes: ``up``/``down``/``status``),
:mod:`~.nodes` (CRDs, fake nodes), :mod:`~.training_operator`, :mod:`~.trainer_v2`. The command line is
``python -m helpers.controlplane``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from helpers.backend.base import Backend, register
from helpers.errors import BackendUnavailable
from helpers.kube.names import kwok_kubeconfig


def go_fix() -> str:
    """How to get the control plane running on this machine."""
    if shutil.which("go"):
        return ("run `make controlplane-up` (builds the real kube-apiserver, kube-scheduler and"
                " Volcano with Go, no Docker needed)")
    return "install Go (https://go.dev/doc/install), then run `make controlplane-up`"


@register
class KwokBackend(Backend):
    """The local control plane: real kube-apiserver, kube-scheduler and Volcano, fake nodes."""

    name = "kwok"
    order = 2
    is_cluster = True
    lacks_because = "it runs no containers: its nodes are fake"

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None) -> KwokBackend:
        """Probe the control plane ``make controlplane-up`` started."""
        from helpers.kube import client

        cfg = Path(kubeconfig).expanduser() if kubeconfig else kwok_kubeconfig()
        problem = client.probe(cfg, context)
        if problem:
            raise BackendUnavailable(f'BACKEND="kwok": {problem}. Fix: {go_fix()}; or use BACKEND="sim".')
        return cls("local control plane reachable", str(cfg), context)

    def run_scheduling(self, manifest_paths: list[Path], nodes: list, scheduler: str, *,
                       seed: int = 0, config: Any = None) -> Any:
        """Apply the manifests to the control plane and watch them, on fresh fake nodes."""
        from helpers.backend import scheduling_run

        return scheduling_run.run(manifest_paths, nodes, scheduler=scheduler, backend=self, seed=seed)

    def health(self) -> str:
        """The control plane's components that are no longer running, with their log tails."""
        from helpers.backend.kwok import supervisor

        found = supervisor.problems()
        return "\n-- the control plane: " + "\n".join(found) if found else ""

    def prepare_nodes(self, api: Any, nodes: list) -> None:
        """Restart a component that has exited, then replace every fake node with ``nodes``
        and wait until they are Ready."""
        from helpers.backend import scheduling_run
        from helpers.backend.kwok import nodes as kwok_nodes
        from helpers.backend.kwok import supervisor
        from helpers.kube import client

        supervisor.revive()  # a scheduler that crashed in the last run schedules this one
        kwok_nodes.delete_fake_nodes(api)
        objs = scheduling_run.node_objects(nodes)
        for obj in objs:
            kwok_nodes.add_fake_node(api, obj)
        client.wait_nodes_ready(api, [o["metadata"]["name"] for o in objs], timeout=60)
