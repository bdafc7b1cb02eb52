"""The installers of ``make cluster-up`` taken from the same release's source, for machines that
reach no registry (the switch :data:`NO_REGISTRY_ENV`).

Learners' clusters apply the release URLs (:mod:`helpers.backend.kind.installs`). With
``KFLABS_NO_REGISTRY=1`` each installer is rendered instead from the upstream module at its
pin in the Go module cache, into ``build/kind/installers/`` (git-ignored):

* Volcano: ``installer/volcano-development.yaml`` at the ``volcano`` tag, as is;
* KServe: ``kubectl kustomize config/overlays/standalone/kserve`` (KServe alone: its
  release's ``overlays/all`` adds the LLM and local-model controllers the kit does not run)
  and ``config/clusterresources``, with ``:latest`` replaced by the tag, as KServe's
  ``hack/release/generate-install.sh`` does; the runtimes' ``LLMInferenceServiceConfig``
  objects are left out (their CRDs come with the LLM controller, which is not installed);
* the Training Operator: ``kubectl kustomize manifests/overlays/standalone`` at its tag;
* Kubeflow Trainer v2: ``kubectl kustomize manifests/overlays/manager`` at the ``trainer`` tag,
  rendered from a private copy (a temporary folder under ``build/kind/installers``) whose
  ``third-party/jobset`` points at JobSet rendered from its own module at the ``jobset`` pin
  (``config/default``, image ``registry.k8s.io/jobset/jobset:<pin>``) instead of the release
  URL; its Namespace removal patch and image mapping apply as upstream; then
  ``manifests/overlays/runtimes`` as is (its runtimes name images that are not built: they are
  templates; the kit's own ClusterTrainingRuntime is what its TrainJobs use);
* cert-manager: its chart (``deploy/charts/cert-manager``, with ``Chart.yaml`` and
  ``templates/crds.yaml`` made from the templates as its ``make/manifests.mk`` does) rendered
  by ``helm template`` with the flags of its static manifest (CRDs in, startupapicheck off),
  after ``deploy/manifests/namespace.yaml``. Helm is built from source by the image build.

One change is made to every rendered installer: ``imagePullPolicy: Always`` becomes
``IfNotPresent``, since the images were loaded into the nodes with ``kind load`` and there is
nothing to pull them from.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import yaml

from helpers import paths, versions
from helpers.backend.kind import image_build
from helpers.errors import LabError
from helpers.kube.names import KIND_CLUSTER_NAME

#: The one switch: set to 1 on machines that reach no container registry.
NO_REGISTRY_ENV = "KFLABS_NO_REGISTRY"
#: Installers rendered from source (component -> file name under build/kind/installers).
RENDERED = {"volcano": "volcano.yaml", "cert-manager": "cert-manager.yaml",
            "kserve": "kserve.yaml",
            "kserve-runtimes": "kserve-cluster-resources.yaml",
            "training-operator": "training-operator.yaml",
            "trainer-v2": "trainer-v2.yaml", "trainer-v2-runtimes": "trainer-v2-runtimes.yaml"}
WORKLOAD_KINDS = ("Deployment", "DaemonSet", "StatefulSet", "Job", "CronJob", "Pod")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # KServe's installer is 50,000 lines


def load_all(text: str) -> list[dict]:
    """The objects of a multi-document YAML text (libyaml's parser when present)."""
    return [o for o in yaml.load_all(text, Loader=_LOADER) if isinstance(o, dict)]


def no_registry() -> bool:
    """True when ``KFLABS_NO_REGISTRY`` is set to 1/true/yes (read on every call)."""
    return os.environ.get(NO_REGISTRY_ENV, "").strip().lower() in ("1", "true", "yes")


def installers_dir() -> Path:
    """``build/kind/installers``: where the rendered installers are written."""
    return paths.build_dir() / "kind" / "installers"


def _kustomize(folder: Path) -> str:
    proc = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True,
                          text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise LabError(f"`kubectl kustomize {folder}` failed: {proc.stderr.strip()[-600:]}")
    return proc.stdout


def _no_pull(text: str) -> str:
    return re.sub(r"(imagePullPolicy:[ \t]*)Always\b", r"\1IfNotPresent", text)


def render(component: str) -> str:
    """The installer of ``component`` (a key of :data:`RENDERED`) as YAML text."""
    if component == "volcano":
        text = (image_build.volcano_dir() / "installer/volcano-development.yaml").read_text()
    elif component in ("kserve", "kserve-runtimes"):
        sub = "overlays/standalone/kserve" if component == "kserve" else "clusterresources"
        text = _kustomize(image_build.kserve_dir() / "config" / sub)
        text = text.replace(":latest", f":{versions.pin('kserve')}")
        if component == "kserve-runtimes":  # the LLM controller's configs need its CRDs
            text = "\n---\n".join(doc for doc in re.split(r"^---\n", text, flags=re.M)
                                  if not re.search(r"^kind: LLMInferenceServiceConfig$", doc, re.M))
    elif component == "training-operator":
        text = _kustomize(image_build.training_operator_dir() / "manifests/overlays/standalone")
    elif component == "cert-manager":
        text = _render_cert_manager()
    elif component == "trainer-v2":
        text = _render_trainer_v2()
    elif component == "trainer-v2-runtimes":
        text = _kustomize(image_build.trainer_dir() / "manifests/overlays/runtimes")
    else:
        raise LabError(f"no installer from source for {component!r}: choose from "
                       f"{', '.join(RENDERED)}")
    return _no_pull(text)


def _render_cert_manager() -> str:
    source, pin = image_build.cert_manager_dir(), versions.pin("cert_manager")
    helm = image_build.binary_path("helm")
    if not helm.is_file():
        raise LabError(f"{helm} is missing: it renders cert-manager's chart; build it with "
                       "`python -m helpers.cluster images --only cert-manager-controller`")
    with _scratch("cert-manager-chart-") as scratch:
        chart = _writable_copy(source / "deploy/charts/cert-manager", scratch / "cert-manager")
        meta = yaml.safe_load((chart / "Chart.template.yaml").read_text())
        meta["version"] = meta["appVersion"] = pin
        meta.setdefault("annotations", {})["artifacthub.io/prerelease"] = "false"
        (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        crds = sorted((source / "deploy/crds").glob("*.yaml"))
        (chart / "templates/crds.yaml").write_text("\n---\n".join(p.read_text() for p in crds))
        proc = subprocess.run(
            [str(helm), "template", "--api-versions=", "--namespace=cert-manager",
             f"--kube-version=v{versions.pin('kubernetes').lstrip('v')}",
             "--set=crds.enabled=true", "--set=creator=static",
             "--set=startupapicheck.enabled=false", "cert-manager", str(chart)],
            capture_output=True, text=True, timeout=300, check=False)
    if proc.returncode != 0:
        raise LabError(f"`helm template` of cert-manager's chart failed: {proc.stderr.strip()[-600:]}")
    namespace = (source / "deploy/manifests/namespace.yaml").read_text()
    return namespace + "\n---\n" + proc.stdout


@contextlib.contextmanager
def _scratch(prefix: str) -> Iterator[Path]:
    """A private folder under :func:`installers_dir`, removed afterwards: two renders at once
    (two test workers, or a test beside ``make cluster-up``) never edit one copy."""
    installers_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=prefix, dir=installers_dir()) as folder:
        yield Path(folder)


def _writable_copy(source: Path, dest: Path) -> Path:
    """``dest`` replaced by a copy of ``source`` (a read-only folder of the module cache) that
    may be edited."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest)
    for p in [dest, *dest.rglob("*")]:
        p.chmod(p.stat().st_mode | 0o200)
    return dest


def render_jobset() -> str:
    """JobSet's release manifest made from its module at the ``jobset`` pin, as its Makefile's
    ``artifacts`` target does: ``config/default`` with the manager's image set (here to the
    reference Trainer v2 names, :func:`image_build.jobset_ref`), built by kustomize."""
    with _scratch("jobset-src-") as scratch:
        config = _writable_copy(image_build.jobset_dir() / "config", scratch / "config")
        manager = config / "components/manager/kustomization.yaml"
        kustomization = yaml.safe_load(manager.read_text())
        name, _, tag = image_build.jobset_ref().rpartition(":")
        kustomization["images"] = [{"name": "controller", "newName": name, "newTag": tag}]
        manager.write_text(yaml.safe_dump(kustomization, sort_keys=False))
        return _kustomize(config / "default")


def _render_trainer_v2() -> str:
    """Trainer v2's ``manifests/overlays/manager`` rendered from a copy of its module's
    ``manifests`` whose ``third-party/jobset`` takes JobSet from :func:`render_jobset` instead
    of the GitHub release URL (its image mapping and its Namespace removal patch stay)."""
    with _scratch("trainer-v2-src-") as scratch:
        manifests = _writable_copy(image_build.trainer_dir() / "manifests", scratch / "manifests")
        jobset = manifests / "third-party/jobset"
        kustomization = yaml.safe_load((jobset / "kustomization.yaml").read_text())
        urls = [r for r in kustomization.get("resources", []) if "://" in r]
        pin = versions.pin("jobset")
        if len(urls) != 1 or f"/{pin}/" not in urls[0]:
            raise LabError(f"Trainer {versions.pin('trainer')}'s third-party/jobset should name "
                           f"one JobSet {pin} release, found {urls}: check the trainer and "
                           "jobset pins")
        (jobset / "jobset.yaml").write_text(render_jobset())
        kustomization["resources"] = [r if r not in urls else "jobset.yaml"
                                      for r in kustomization["resources"]]
        (jobset / "kustomization.yaml").write_text(yaml.safe_dump(kustomization, sort_keys=False))
        return _kustomize(manifests / "overlays/manager")


def rendered_installer(component: str) -> Path:
    """Render ``component``'s installer into :func:`installers_dir` and return its path."""
    out = installers_dir() / RENDERED[component]
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render(component)
    with tempfile.NamedTemporaryFile("w", dir=out.parent, prefix=f".{out.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, out)  # whole or not at all, even with another render running
    return out


#: The ClusterServingRuntimes the kit's InferenceServices use: their images are loaded too.
KIT_RUNTIMES = ("kserve-xgbserver",)


def installer_source(component: str, remote: str, cluster: str = KIND_CLUSTER_NAME) -> str:
    """What ``make cluster-up`` applies for ``component``: ``remote`` (the release), or,
    under :data:`NO_REGISTRY_ENV`, the installer rendered from the module cache, after the
    images it starts (built by :mod:`helpers.backend.kind.image_build`) are loaded into the
    nodes with ``kind load``: there is no registry for the nodes to pull them from."""
    if not no_registry():
        return remote
    path = rendered_installer(component)
    refs = sorted(started_images(path.read_text(), KIT_RUNTIMES))
    if refs:
        print(f"loading the {len(refs)} image(s) {component} starts into the nodes: {', '.join(refs)}")
        image_build.load_into_kind(refs, cluster)
    return str(path)


def kit_images() -> list[str]:
    """Images the kit's own manifests start on the cluster (the scheduling labs' pods):
    busybox at the one tag they use. The training image is loaded by
    :func:`helpers.backend.kind.images.ensure_training_image`."""
    return [image_build.busybox_ref()]


def load_kit_images(cluster: str = KIND_CLUSTER_NAME) -> list[str]:
    """Under :data:`NO_REGISTRY_ENV`, ``kind load`` :func:`kit_images` into the nodes (they
    were built by ``make cluster-images``); without it, nothing: learners' nodes pull them.

    Returns:
        The references loaded (empty without the switch).
    """
    if not no_registry():
        return []
    refs = kit_images()
    print(f"loading the kit's own image(s) into the nodes: {', '.join(refs)}")
    image_build.load_into_kind(refs, cluster)
    return refs


# --------------------------------------------------------------------------- images named
def _containers(obj: dict) -> Iterator[dict]:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    if obj.get("kind") != "Pod":
        spec = spec.get("template", {}).get("spec", {})
    yield from spec.get("initContainers") or []
    yield from spec.get("containers") or []


def started_images(text: str, runtimes: tuple[str, ...] = ()) -> set[str]:
    """Images an installer starts: its workloads' containers, plus the containers of the
    ClusterServingRuntimes named in ``runtimes`` (those an InferenceService of the kit uses).
    """
    found: set[str] = set()
    for obj in load_all(text):
        if obj.get("kind") in WORKLOAD_KINDS:
            found.update(c["image"] for c in _containers(obj))
        if obj.get("kind") == "ClusterServingRuntime" and obj["metadata"]["name"] in runtimes:
            found.update(c["image"] for c in obj["spec"].get("containers", []))
    return found
