"""Kubeflow Trainer v2 and the JobSet controller on the kwok control plane, started on request
(:class:`trainer_v2`, a context manager used by the tests).

Both are controller-runtime managers whose configuration files name the webhook server's host,
so, unlike the Training Operator v1 (:mod:`helpers.backend.kwok.training_operator`, which needs
a network namespace), they listen on 127.0.0.1 and kube-apiserver calls their webhooks for
real: the webhook configurations are upstream's (from the Go module cache, with upstream's
kustomize patches) with each ``clientConfig`` pointed at ``https://127.0.0.1:<port>`` and the
``caBundle`` of a CA made here. Their own certificate rotators are turned off
(``certManagement.enable: false`` / ``internalCertManagement.enable: false``, the flags both
projects document for certificates "provided externally").
"""

from __future__ import annotations

import base64
import copy
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from helpers import versions
from helpers.backend.kwok import nodes, pki, supervisor
from helpers.backend.kwok.layout import _tail, bin_dir, kubeconfig_path, state_dir
from helpers.errors import BackendUnavailable
from helpers.kube import client as k8s
from helpers.processes import stop_group

#: Namespace of upstream's install (manifests/overlays/manager at v2.3.0).
NAMESPACE = "kubeflow-system"
TRAINER_MODULE = "github.com/kubeflow/trainer/v2"
JOBSET_MODULE = "sigs.k8s.io/jobset"


def trainer_dir() -> Path:
    """Trainer v2's module at the pin (``trainer``), in the Go module cache."""
    return nodes.module_dir(TRAINER_MODULE, versions.pin("trainer"))


def jobset_dir() -> Path:
    """JobSet's module at the pin (``jobset``), in the Go module cache."""
    return nodes.module_dir(JOBSET_MODULE, versions.pin("jobset"))


def crd_files() -> list[Path]:
    """JobSet's CRD, then Trainer's three (TrainJob, TrainingRuntime, ClusterTrainingRuntime)."""
    return [jobset_dir() / "config/components/crd/bases/jobset.x-k8s.io_jobsets.yaml",
            *sorted((trainer_dir() / "manifests/base/crds").glob("trainer.kubeflow.org_*.yaml"))]


def json_patch(doc: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply the ``add``/``replace`` operations of an RFC 6902 patch (kustomize's patches).

    Raises:
        ValueError: another operation, or a path that does not exist.
    """
    out = copy.deepcopy(doc)
    for op in ops:
        if op.get("op") not in ("add", "replace"):
            raise ValueError(f"unsupported JSON patch operation {op.get('op')!r}")
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].split("/")[1:]]
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = copy.deepcopy(op["value"])
        elif op["op"] == "replace" and last not in node:
            raise ValueError(f"JSON patch replaces {op['path']}, which does not exist")
        else:
            node[last] = copy.deepcopy(op["value"])
    return out


def _patched(manifests: Path, patches: dict[str, Path], prefix: str = "") -> list[dict[str, Any]]:
    """The webhook configurations of ``manifests`` with upstream's kustomize patches applied.

    ``patches`` maps a kind to its patch file; ``prefix`` is the overlay's ``namePrefix``.
    """
    docs = []
    for raw in k8s.load_manifests(manifests):
        doc = (json_patch(raw, yaml.safe_load(patches[raw["kind"]].read_text()))
               if raw["kind"] in patches else raw)
        doc["metadata"]["name"] = prefix + doc["metadata"]["name"]
        docs.append(doc)
    return docs


def webhook_configurations(trainer_port: int, jobset_port: int, trainer_ca: bytes,
                           jobset_ca: bytes) -> list[dict[str, Any]]:
    """Upstream's webhook configurations, each pointed at its server on 127.0.0.1.

    Names, rules, ``failurePolicy: Fail`` and object selectors are upstream's (Trainer's
    manifests/base/webhook with its two patches; JobSet's config/components/webhook with its
    patches, which limit the pod webhooks to pods labelled ``jobset.sigs.k8s.io/jobset-name``,
    and the default overlay's ``jobset-`` name prefix); only ``clientConfig`` changes, from
    the in-cluster Service to ``url: https://127.0.0.1:<port><path>``.
    """
    wh_t = trainer_dir() / "manifests/base/webhook"
    wh_j = jobset_dir() / "config/components/webhook"
    sets = [
        (_patched(wh_t / "manifests.yaml",
                  {"MutatingWebhookConfiguration": wh_t / "patch_mutating.yaml",
                   "ValidatingWebhookConfiguration": wh_t / "patch_validating.yaml"}),
         trainer_port, trainer_ca),
        (_patched(wh_j / "manifests.yaml",
                  {"MutatingWebhookConfiguration": wh_j / "patches/mutating-patch.yaml",
                   "ValidatingWebhookConfiguration": wh_j / "patches/validating-patch.yaml"},
                  prefix="jobset-"), jobset_port, jobset_ca),
    ]
    out = []
    for docs, port, ca in sets:
        for doc in docs:
            for hook in doc["webhooks"]:
                path = hook["clientConfig"]["service"]["path"]
                hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}",
                                        "caBundle": base64.b64encode(ca).decode()}
            out.append(doc)
    return out


def _config(upstream: Path, overrides: dict[str, Any]) -> dict[str, Any]:
    cfg = yaml.safe_load(upstream.read_text())
    for key, value in overrides.items():
        cfg[key] = {**(cfg.get(key) or {}), **value}
    return cfg


def trainer_config(webhook_port: int, health_port: int) -> dict[str, Any]:
    """Upstream's controller_manager_config.yaml with the changes the kwok control plane needs:
    webhook and probes on 127.0.0.1, no metrics server, no leader election, no cert rotator."""
    return _config(trainer_dir() / "manifests/base/manager/controller_manager_config.yaml", {
        "webhook": {"host": "127.0.0.1", "port": webhook_port},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0", "secureServing": False},
        "leaderElection": {"leaderElect": False},
        "certManagement": {"enable": False},
    })


def jobset_config(webhook_port: int, health_port: int, cert_dir: Path) -> dict[str, Any]:
    """JobSet's config/components/manager/controller_manager_config.yaml, changed the same way."""
    return _config(jobset_dir() / "config/components/manager/controller_manager_config.yaml", {
        "webhook": {"host": "127.0.0.1", "port": webhook_port, "certDir": str(cert_dir)},
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": "0"},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
    })


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as resp:  # noqa: S310 - loopback
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


class trainer_v2:  # noqa: N801 - used as a context manager, like open()
    """Run the JobSet controller and Trainer v2's controller manager against the control plane.

    On entry: applies JobSet's and Trainer's CRDs from the Go module cache, writes a
    certificate for each webhook server, starts both managers (JobSet first: Trainer turns
    every TrainJob into a JobSet), waits until both report ``/readyz`` (Trainer's readiness
    includes its webhook server), then registers the webhook configurations. On exit: the
    webhook configurations go first (JobSet's pod webhooks are ``failurePolicy: Fail``), then
    the processes and their certificates. The CRDs stay, like Volcano's.

    Example::

        with trainer_v2(api):
            k8s.apply(api, cluster_training_runtime)
            k8s.apply(api, trainjob)    # -> JobSet -> Jobs -> pods + a Volcano PodGroup
    """

    def __init__(self, api, timeout: float = 90):
        """Args: api: an ``ApiClient`` for the running control plane; timeout: start bound."""
        self.api = api
        self.timeout = timeout
        self.procs: dict[str, subprocess.Popen] = {}
        self.folder = state_dir() / "trainer-v2"
        self.hooks: list[dict[str, Any]] = []

    def log(self, name: str) -> Path:
        """The log file of ``jobset`` or ``trainer``."""
        return state_dir() / "logs" / f"{name}-controller-manager.log"

    def __enter__(self):
        """Apply the CRDs, start both managers, wait until ready, register the webhooks."""
        binaries = {n: bin_dir() / f"{n}-controller-manager" for n in ("jobset", "trainer")}
        missing = [str(b) for b in binaries.values() if not b.is_file()]
        if missing:
            raise BackendUnavailable(f"{', '.join(missing)} missing: run "
                                     "`python -m helpers.controlplane build`")
        supervisor.require_up()
        p = supervisor.ports()
        try:
            k8s.apply_crds(self.api, crd_files())
            k8s.apply(self.api, {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": NAMESPACE}})
            shutil.rmtree(self.folder, ignore_errors=True)
            jobset_certs = self.folder / "jobset-certs"
            jobset_ca = pki.write_webhook_certs(jobset_certs, "jobset")
            # Trainer's configuration has no certDir: controller-runtime's default,
            # $TMPDIR/k8s-webhook-server/serving-certs, with TMPDIR set for this process only.
            trainer_tmp = self.folder / "trainer-tmp"
            trainer_ca = pki.write_webhook_certs(
                trainer_tmp / "k8s-webhook-server" / "serving-certs", "trainer")
            configs = {
                "jobset": jobset_config(p["jobset-webhook"], p["jobset-health"], jobset_certs),
                "trainer": trainer_config(p["trainer-webhook"], p["trainer-health"]),
            }
            env = {**os.environ, "KUBECONFIG": str(kubeconfig_path()),
                   "POD_NAMESPACE": NAMESPACE, "NAMESPACE": NAMESPACE}
            for name in ("jobset", "trainer"):
                cfg = self.folder / f"{name}-config.yaml"
                cfg.write_text(yaml.safe_dump(configs[name], sort_keys=False))
                self.log(name).parent.mkdir(parents=True, exist_ok=True)
                with self.log(name).open("w") as out:
                    self.procs[name] = subprocess.Popen(
                        [str(binaries[name]), f"--config={cfg}", "--zap-log-level=info"],
                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                        env={**env, "TMPDIR": str(trainer_tmp)} if name == "trainer" else env,
                        start_new_session=True)
            deadline = time.monotonic() + self.timeout
            for name in ("jobset", "trainer"):
                while not _ready(p[f"{name}-health"]):
                    if self.procs[name].poll() is not None or time.monotonic() > deadline:
                        raise BackendUnavailable(
                            f"the {name} controller manager did not become ready on 127.0.0.1:"
                            f"{p[f'{name}-health']}; last lines of {self.log(name)}:\n"
                            f"{_tail(self.log(name))}")
                    time.sleep(0.5)
            self.hooks = webhook_configurations(p["trainer-webhook"], p["jobset-webhook"],
                                                trainer_ca, jobset_ca)
            for hook in self.hooks:
                k8s.apply(self.api, hook)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def diagnose(self, lines: int = 30) -> str:
        """Whether each manager still runs, and the last ``lines`` of its log."""
        parts = []
        for name in ("jobset", "trainer"):
            proc = self.procs.get(name)
            state = ("never started" if proc is None else "running" if proc.poll() is None
                     else f"exited with code {proc.returncode}")
            parts.append(f"-- {name} controller manager: {state}; last lines of "
                         f"{self.log(name)}:\n{_tail(self.log(name), lines)}")
        return "\n".join(parts)

    def __exit__(self, *exc) -> None:
        """Remove the webhook configurations, stop both managers, remove their certificates."""
        try:
            for hook in self.hooks:
                k8s.delete(self.api, hook)
            self.hooks = []
        finally:  # the managers stop even when the API server no longer answers
            for name in ("trainer", "jobset"):
                if name in self.procs:
                    stop_group(self.procs.pop(name), grace=15)
            shutil.rmtree(self.folder, ignore_errors=True)
