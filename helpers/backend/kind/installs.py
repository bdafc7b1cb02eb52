"""Installs on the kind cluster at the pins in ``cluster/versions.yaml``: Volcano, cert-manager,
KServe (Standard mode), the Training Operator (patched with ``--gang-scheduler-name=volcano``)
and Kubeflow Trainer v2 with JobSet and its runtimes;
:func:`up` and :func:`down` behind ``make cluster-up`` / ``make cluster-down``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from helpers import versions
from helpers.backend.kind import images, lifecycle
from helpers.backend.kind.sources import installer_source, load_kit_images
from helpers.errors import LabError
from helpers.kube.kubectl import CommandFailed, diagnostics, kubectl, require_tools, retry_transient, rollout
from helpers.kube.names import KIND_CLUSTER_NAME as CLUSTER_NAME
from helpers.kube.names import KIND_CONTEXT as CONTEXT
from helpers.scheduling import training_operator as operator

#: Default bound of each install wait (image pulls on a laptop's first run are the slow part).
INSTALL_TIMEOUT = 600.0
COMPONENTS = ("volcano", "cert-manager", "kserve", "training-operator", "trainer-v2")

# --------------------------------------------------------------------------- installs
def volcano_url() -> str:
    """Volcano's installer manifest at the pinned tag (never master: it pulls :latest)."""
    return ("https://raw.githubusercontent.com/volcano-sh/volcano/"
            f"{versions.pin('volcano')}/installer/volcano-development.yaml")


def cert_manager_url() -> str:
    """cert-manager's release manifest at the pinned version."""
    pin = versions.pin("cert_manager")
    return f"https://github.com/cert-manager/cert-manager/releases/download/{pin}/cert-manager.yaml"


def kserve_urls() -> tuple[str, str]:
    """KServe's release manifests at the pinned version: the controller, then the runtimes."""
    base = f"https://github.com/kserve/kserve/releases/download/{versions.pin('kserve')}"
    return f"{base}/kserve.yaml", f"{base}/kserve-cluster-resources.yaml"


def training_operator_kustomization() -> str:
    """The Training Operator's standalone overlay at the pinned tag (kubeflow/trainer repo)."""
    return ("github.com/kubeflow/trainer.git/manifests/overlays/standalone"
            f"?ref={versions.pin('training_operator')}")


def _apply_remote(source: str, *, what: str, timeout: float, kustomize: bool = False) -> None:
    # Server-side apply: Volcano's and KServe's CRDs are too big for the client-side
    # last-applied annotation. --force-conflicts lets a re-run take fields back.
    flag = "-k" if kustomize else "-f"
    retry_transient(["kubectl", "--context", CONTEXT, "apply", "--server-side",
                     "--force-conflicts", flag, source], what=what, timeout=timeout)


_VOLCANO_PROBE = {
    "apiVersion": "batch.volcano.sh/v1alpha1", "kind": "Job",
    "metadata": {"name": "kflabs-webhook-probe", "namespace": "default"},
    "spec": {"minAvailable": 1, "schedulerName": "volcano", "queue": "default", "tasks": [{
        "name": "probe", "replicas": 1, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "probe", "image": "busybox:1.36.1"}]}}}]},
}


def install_volcano(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install Volcano from its pinned installer manifest and wait until it admits jobs.

    Waits for the admission webhook, the controllers and the scheduler to roll out, then
    sends a VolcanoJob through the admission webhooks as a server-side dry run (retrying the
    connection-refused errors of a webhook that is still starting): only then is Volcano
    usable.
    """
    _install_and_probe("Volcano", versions.pin("volcano"),
                       installer_source("volcano", volcano_url()), "volcano-system",
                       deployments=("volcano-admission", "volcano-controllers", "volcano-scheduler"),
                       probe=_VOLCANO_PROBE, webhook="Volcano admission webhook", timeout=timeout)


def _install_and_probe(title: str, version: str, url: str, namespace: str, *,
                       deployments: tuple[str, ...], probe: dict, webhook: str,
                       timeout: float) -> None:
    """Apply an installer, wait for its deployments, then dry-run ``probe`` through its webhook.

    The dry run retries the connection-refused and x509 errors of a webhook that is still
    starting; a real rejection, or a timeout, fails with the namespace's diagnostics.
    """
    print(f"installing {title} {version}")
    _apply_remote(url, what=f"apply {title}", timeout=timeout)
    for deployment in deployments:
        rollout(namespace, deployment, timeout)
    try:
        retry_transient(["kubectl", "--context", CONTEXT, "create", "--dry-run=server", "-f", "-"],
                        input_text=json.dumps(probe), what=webhook, timeout=timeout)
    except CommandFailed as exc:
        raise CommandFailed(f"{exc}\n{diagnostics(namespace)}", exc.args_list,
                            exc.returncode, exc.stderr) from None


_CERT_PROBE = {
    "apiVersion": "cert-manager.io/v1", "kind": "Issuer",
    "metadata": {"name": "kflabs-webhook-probe", "namespace": "default"},
    "spec": {"selfSigned": {}},
}


def install_cert_manager(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install cert-manager (KServe's webhooks get their TLS certificates from it) and wait."""
    _install_and_probe("cert-manager", versions.pin("cert_manager"),
                       installer_source("cert-manager", cert_manager_url()), "cert-manager",
                       deployments=("cert-manager", "cert-manager-cainjector", "cert-manager-webhook"),
                       probe=_CERT_PROBE, webhook="cert-manager webhook", timeout=timeout)


def configure_kserve_standard(timeout: float = INSTALL_TIMEOUT) -> bool:
    """Make Standard (raw Deployment) KServe's default mode, without Ingress objects.

    KServe's own default is still Knative (Serverless), which needs Istio and Knative
    Serving. kind has no ingress controller, so Ingress creation is turned off too; the labs
    reach the predictor Service with ``kubectl port-forward``.

    Returns:
        True when the ConfigMap changed (the controller is then restarted to re-read it).
    """
    cm = json.loads(kubectl("get", "configmap", "inferenceservice-config", "-n", "kserve",
                            "-o", "json").stdout)
    data = cm.get("data") or {}
    try:
        deploy = json.loads(data.get("deploy") or "{}")
        ingress = json.loads(data.get("ingress") or "{}")
    except ValueError as exc:
        raise LabError(f"KServe's inferenceservice-config holds invalid JSON ({exc}): "
                       "reinstall KServe (`make cluster-down && make cluster-up`)") from None
    if deploy.get("defaultDeploymentMode") == "Standard" and ingress.get("disableIngressCreation"):
        return False
    deploy["defaultDeploymentMode"] = "Standard"
    ingress["disableIngressCreation"] = True
    patch = {"data": {"deploy": json.dumps(deploy, indent=1),
                      "ingress": json.dumps(ingress, indent=1)}}
    kubectl("patch", "configmap", "inferenceservice-config", "-n", "kserve", "--type=merge",
            "-p", json.dumps(patch))
    kubectl("rollout", "restart", "deployment/kserve-controller-manager", "-n", "kserve")
    rollout("kserve", "kserve-controller-manager", timeout)
    return True


def install_kserve(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install KServe (controller, then the ClusterServingRuntimes) in Standard mode.

    Needs cert-manager first: KServe's manifest holds a cert-manager Issuer and Certificate,
    and the runtimes pass through KServe's own webhook, so both applies retry the start-up
    errors of those webhooks.
    """
    print(f"installing KServe {versions.pin('kserve')} (Standard mode)")
    controller, runtimes = kserve_urls()
    controller = installer_source("kserve", controller)
    runtimes = installer_source("kserve-runtimes", runtimes)
    # The release manifest leaves the namespace out (KServe's install script makes it).
    kubectl("apply", "-f", "-", input_text=json.dumps(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kserve"}}))
    _apply_remote(controller, what="apply KServe", timeout=timeout)
    rollout("kserve", "kserve-controller-manager", timeout)
    _apply_remote(runtimes, what="apply KServe serving runtimes", timeout=timeout)
    configure_kserve_standard(timeout)


def patch_training_operator() -> bool:
    """Add ``--gang-scheduler-name=volcano`` to the Training Operator's Deployment.

    The Deployment is patched, never the pod: a pod edit would be lost at the next restart.
    Idempotent: nothing happens when the flag is there; another gang-scheduler value is
    replaced.

    Returns:
        True when the Deployment was changed.
    """
    dep = json.loads(kubectl("get", "deployment", operator.DEPLOYMENT, "-n", operator.NAMESPACE,
                             "-o", "json").stdout)
    command = dep["spec"]["template"]["spec"]["containers"][0].get("command") or []
    if operator.FLAG in command:
        return False
    name = operator.FLAG.partition("=")[0]
    found = [i for i, arg in enumerate(command) if arg.startswith(name)]
    if found:
        patch = [{"op": "replace", "path": f"/spec/template/spec/containers/0/command/{found[0]}",
                  "value": operator.FLAG}]
    elif command:
        patch = operator.gang_scheduler_patch()
    else:
        raise LabError("the training-operator Deployment has no container command to extend: "
                       "its manifest changed upstream; check the training_operator pin")
    kubectl("patch", "deployment", operator.DEPLOYMENT, "-n", operator.NAMESPACE, "--type=json",
            "-p", json.dumps(patch))
    return True


def install_training_operator(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install the Training Operator standalone, patched to gang-schedule with Volcano."""
    print(f"installing the Training Operator {versions.pin('training_operator')} "
          "(gang scheduler: volcano)")
    existing = kubectl("get", "deployment", operator.DEPLOYMENT, "-n", operator.NAMESPACE, "-o", "json",
                       check=False, timeout=60)
    command: list[str] = []
    if existing.returncode == 0:
        command = json.loads(existing.stdout)["spec"]["template"]["spec"]["containers"][0].get(
            "command") or []
    if operator.FLAG in command:
        # Re-applying would take the patched command back (server-side apply owns the field)
        # and roll the operator twice; it is installed and patched already.
        print("  already installed and patched")
    else:
        remote = training_operator_kustomization()
        source = installer_source("training-operator", remote)
        if source == remote:
            require_tools("git")
        _apply_remote(source, what="apply the Training Operator", timeout=timeout,
                      kustomize=source == remote)
        patch_training_operator()
    rollout("kubeflow", "training-operator", timeout)


#: Namespace and Deployments of Trainer v2's manager overlay (JobSet's carries its namePrefix).
TRAINER_V2_NAMESPACE = "kubeflow-system"
TRAINER_V2_DEPLOYMENTS = ("jobset-controller-manager", "kubeflow-trainer-controller-manager")


def trainer_v2_kustomizations() -> tuple[str, str]:
    """Upstream's overlays at the pinned tag, as its installation guide gives them to
    ``kubectl apply --server-side -k``: the controller manager (with JobSet), then the runtimes."""
    base = "github.com/kubeflow/trainer.git/manifests/overlays"
    ref = f"?ref={versions.pin('trainer')}"
    return f"{base}/manager{ref}", f"{base}/runtimes{ref}"


def install_trainer_v2(timeout: float = INSTALL_TIMEOUT) -> None:
    """Install Kubeflow Trainer v2 + JobSet, upstream's runtimes and the kit's runtime.

    Upstream's overlays at the pin ``trainer``: ``manifests/overlays/manager`` (the controller
    manager, its CRDs and webhooks in ``kubeflow-system``, and the JobSet release it bundles),
    then ``manifests/overlays/runtimes`` (``xgboost-distributed`` among them), then the kit's
    ClusterTrainingRuntime. The CRDs do not clash with v1's: v1 serves ``kubeflow.org/v1``
    from namespace ``kubeflow``, v2 ``trainer.kubeflow.org/v1alpha1`` from ``kubeflow-system``.
    Idempotent (server-side apply; nothing is patched afterwards), so it is simply re-run.

    Under ``KFLABS_NO_REGISTRY=1`` both overlays are rendered from the Go module cache instead
    (:mod:`helpers.backend.kind.sources`: JobSet from its own module) and applied as files,
    after the controller manager's and JobSet's images (built by ``make cluster-images``)
    are loaded into the nodes.
    """
    from helpers.backend.kind import trainer_v2

    print(f"installing Kubeflow Trainer {versions.pin('trainer')} "
          f"(JobSet {versions.pin('jobset')}) and its runtimes")
    remote_manager, remote_runtimes = trainer_v2_kustomizations()
    manager = installer_source("trainer-v2", remote_manager)
    if manager == remote_manager:
        require_tools("git")  # kubectl's kustomize clones the repository at the tag
    _apply_remote(manager, what="apply Kubeflow Trainer", timeout=timeout,
                  kustomize=manager == remote_manager)
    for deployment in TRAINER_V2_DEPLOYMENTS:
        rollout(TRAINER_V2_NAMESPACE, deployment, timeout)
    # upstream's runtimes skip the webhook (label webhook-validation: disabled); the kit's
    # runtime goes through it, so both applies retry a webhook that is still starting
    runtimes = installer_source("trainer-v2-runtimes", remote_runtimes)
    _apply_remote(runtimes, what="apply Trainer's runtimes", timeout=timeout,
                  kustomize=runtimes == remote_runtimes)
    retry_transient(["kubectl", "--context", CONTEXT, "apply", "--server-side", "--force-conflicts",
                     "-f", str(trainer_v2.runtime_file())],
                    what="apply the kit's ClusterTrainingRuntime", timeout=timeout)


def up(*, components: Iterable[str] = COMPONENTS, gpus: int = lifecycle.TOTAL_FAKE_GPUS,
       timeout: float = INSTALL_TIMEOUT, build_image: bool = True) -> dict[str, Any]:
    """``make cluster-up``: everything the labs' ``BACKEND="kind"`` needs, idempotently.

    Args:
        components: which installs to run, in the order of :data:`COMPONENTS`.
        gpus: fake GPUs in all, spread over the workers.
        timeout: bound of each wait, in seconds.
        build_image: build the training image and load it into the nodes.

    Returns:
        A summary: cluster name, context, fake GPU layout, installed components, image.
    """
    wanted = list(components)
    unknown = sorted(set(wanted) - set(COMPONENTS))
    if unknown:
        raise LabError(f"unknown component(s) {unknown}: choose from {', '.join(COMPONENTS)}")
    require_tools("docker", "kind", "kubectl")
    lifecycle.check_docker()
    lifecycle.check_kind_version()
    lifecycle.create_cluster()
    lifecycle.wait_nodes_ready()
    layout = lifecycle.patch_fake_gpus(gpus)
    load_kit_images()  # no registry: busybox, which the kit's own pods run
    steps = {"volcano": install_volcano, "cert-manager": install_cert_manager,
             "kserve": install_kserve, "training-operator": install_training_operator,
             "trainer-v2": install_trainer_v2}
    if "kserve" in wanted and "cert-manager" not in wanted:
        wanted.append("cert-manager")  # KServe's webhooks cannot get certificates without it
    done = []
    for name in COMPONENTS:
        if name in wanted:
            steps[name](timeout)
            done.append(name)
    image = images.ensure_training_image() if build_image else None
    print(f"cluster ready: context {CONTEXT}; run the labs with BACKEND=\"kind\"")
    return {"cluster": CLUSTER_NAME, "context": CONTEXT, "gpus": layout, "installed": done,
            "training_image": image}


def down() -> bool:
    """``make cluster-down``: delete the kind cluster. Safe to run twice."""
    return lifecycle.delete_cluster()


