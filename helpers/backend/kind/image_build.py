"""The add-on images the kind path runs, built here from source (for machines that reach no
container registry): Volcano, the Training Operator, Kubeflow Trainer v2 and JobSet, KServe's
controller and XGBoost runtime, busybox and the training base image, tagged exactly as the
upstream manifests name them.

Go binaries come from the Go module proxy at the pins in ``cluster/versions.yaml``: the ones
the kwok control plane already builds (vc-scheduler, vc-controller-manager,
training-operator, trainer-controller-manager, jobset-controller-manager) are reused from
:func:`helpers.backend.kwok.build.build`; the image-only ones are built here from the same
wrapper modules, or from the upstream module as published.
Python images are built from Debian's and PyPI's packages on the Debian base image.

Everything is cached: each image carries a label with the hash of its inputs (build context,
Dockerfile, base image ID), and an image whose tag already carries that hash is not rebuilt.
Outputs go to ``build/images/`` (git-ignored). Entry point: :func:`build_addon_images`
(``python -m helpers.cluster images``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from helpers import paths, versions
from helpers.backend.kwok import build as gobuild
from helpers.backend.kwok.layout import _tail, bin_dir, controlplane_dir
from helpers.errors import BackendUnavailable, LabError

#: The Debian bookworm base image (debootstrap, see the README's maintainer section).
BASE_IMAGE_ENV = "KFLABS_BASE_IMAGE"
DEFAULT_BASE_IMAGE = "kflabs/debian-base:bookworm"
#: Label holding the hash of an image's inputs.
INPUTS_LABEL = "io.kflabs.inputs"
#: Where the machine's extra CA certificates are (copied into images that run pip).
CA_DIRS = (Path("/usr/local/share/ca-certificates"),)
#: pip settings taken from the environment into the staged pip.conf (never committed).
PIP_ENV = {"PIP_INDEX_URL": "index-url", "PIP_EXTRA_INDEX_URL": "extra-index-url",
           "PIP_TRUSTED_HOST": "trusted-host"}
PIP_CONF_FILES = (Path("/etc/pip.conf"), Path.home() / ".config/pip/pip.conf",
                  Path.home() / ".pip/pip.conf")


def images_dir() -> Path:
    """``build/images``: binaries, staged contexts, logs and the last build's summary."""
    return paths.build_dir() / "images"


def definitions_dir() -> Path:
    """``cluster/images``: the committed Dockerfiles."""
    return paths.cluster_dir() / "images"


def base_image() -> str:
    """The Debian base image's tag (``KFLABS_BASE_IMAGE`` overrides the default)."""
    return os.environ.get(BASE_IMAGE_ENV) or DEFAULT_BASE_IMAGE


# --------------------------------------------------------------------------- upstream sources
@functools.cache
def module_dir(module: str, version: str) -> Path:
    """A module's folder in the Go module cache (downloaded from the proxy if missing)."""
    go = gobuild.go_binary()
    paths.build_dir().mkdir(parents=True, exist_ok=True)  # its cwd (a fresh checkout has none)
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"],
                          cwd=paths.build_dir(), capture_output=True, text=True,
                          env=gobuild._go_env(go), check=False)
    info = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    if proc.returncode != 0 or not info.get("Dir"):
        raise BackendUnavailable(f"could not download {module}@{version} from the Go module "
                                 f"proxy: {info.get('Error') or proc.stderr.strip()[-400:]}")
    return Path(info["Dir"])


def volcano_dir() -> Path:
    """volcano.sh/volcano at the ``volcano`` pin."""
    return module_dir("volcano.sh/volcano", versions.pin("volcano"))


def kserve_dir() -> Path:
    """github.com/kserve/kserve at the ``kserve`` pin."""
    return module_dir("github.com/kserve/kserve", versions.pin("kserve"))


def training_operator_dir() -> Path:
    """github.com/kubeflow/training-operator at the ``training_operator`` pin."""
    return module_dir("github.com/kubeflow/training-operator", versions.pin("training_operator"))


def training_operator_ref() -> str:
    """The operator's image as its standalone overlay names it (a commit tag, not the pin)."""
    kustomization = yaml.safe_load(
        (training_operator_dir() / "manifests/overlays/standalone/kustomization.yaml").read_text())
    (entry,) = kustomization["images"]
    return f"{entry['name']}:{entry['newTag']}"


def trainer_dir() -> Path:
    """github.com/kubeflow/trainer/v2 at the ``trainer`` pin (Kubeflow Trainer v2)."""
    return module_dir("github.com/kubeflow/trainer/v2", versions.pin("trainer"))


def jobset_dir() -> Path:
    """sigs.k8s.io/jobset at the ``jobset`` pin (the JobSet release Trainer v2 bundles)."""
    return module_dir("sigs.k8s.io/jobset", versions.pin("jobset"))


def trainer_ref() -> str:
    """Trainer v2's controller manager image as its manager overlay tags it."""
    kustomization = yaml.safe_load(
        (trainer_dir() / "manifests/overlays/manager/kustomization.yaml").read_text())
    (entry,) = (e for e in kustomization["images"] if e["name"].endswith("/trainer-controller-manager"))
    return f"{entry.get('newName', entry['name'])}:{entry['newTag']}"


def jobset_ref() -> str:
    """JobSet's controller image as Trainer v2's ``third-party/jobset`` names it, at the
    ``jobset`` pin."""
    kustomization = yaml.safe_load(
        (trainer_dir() / "manifests/third-party/jobset/kustomization.yaml").read_text())
    (entry,) = kustomization["images"]
    return f"{entry['newName']}:{versions.pin('jobset')}"


def kube_rbac_proxy_ref() -> str:
    """The auth-proxy sidecar KServe's controller Deployment names (KServe's choice)."""
    patch = kserve_dir() / "config/default/manager_auth_proxy_patch.yaml"
    found = re.findall(r"image:\s*(\S*kube-rbac-proxy:\S+)", patch.read_text())
    if len(found) != 1:
        raise LabError(f"{patch} no longer names one kube-rbac-proxy image: check the kserve pin")
    return found[0]


def busybox_ref() -> str:
    """The busybox tag the kit's manifests use (one tag everywhere; a test checks)."""
    tags = set()
    for path in paths.manifests_dir().rglob("*.yaml"):
        tags.update(re.findall(r"image:\s*(busybox:[\w.\-]+)", path.read_text()))
    if len(tags) != 1:
        raise LabError(f"the kit's manifests should use one busybox tag, found {sorted(tags)}")
    return tags.pop()


#: A git clone of cert-manager (its commands are not on the module proxy; see below).
CERT_MANAGER_GIT_ENV = "KFLABS_CERT_MANAGER_GIT"
#: The cert-manager commands its static install manifest starts (startupapicheck is off there).
CERT_MANAGER_COMMANDS = ("controller", "webhook", "cainjector")


def cert_manager_dir() -> Path:
    """github.com/cert-manager/cert-manager at the ``cert_manager`` pin (the main module)."""
    return module_dir("github.com/cert-manager/cert-manager", versions.pin("cert_manager"))


def cert_manager_cmd_dir(command: str) -> Path:
    """The Go module of one cert-manager command (``cmd/<command>``) at the pin.

    cert-manager's commands are Go modules of their own (``cmd/controller/go.mod``, ...) that
    replace the main module with ``../../`` and are not served by the module proxy, so their
    source comes from the tag in a git clone named by ``KFLABS_CERT_MANAGER_GIT``; it is
    extracted once into ``build/images/src`` and each go.mod is pointed at the main module in
    the Go module cache (the version the proxy serves at the same tag).
    """
    pin = versions.pin("cert_manager")
    root = images_dir() / "src" / f"cert-manager-{pin}"
    stamp = root / ".kflabs-stamp"
    if not stamp.is_file():
        repo = os.environ.get(CERT_MANAGER_GIT_ENV, "")
        if not repo or not Path(repo).exists():
            raise BackendUnavailable(
                f"cert-manager's commands (cmd/controller, ...) are Go modules the module proxy "
                f"does not serve: set {CERT_MANAGER_GIT_ENV} to a git clone of cert-manager that "
                f"has the tag {pin} (README, maintainer section), or build without cert-manager")
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", repo, "archive", "--format=tar", pin, "cmd"],
                                 capture_output=True, check=False, timeout=300)
        if archive.returncode != 0:
            raise BackendUnavailable(f"`git archive {pin} cmd` in {repo} failed: "
                                     f"{archive.stderr.decode(errors='replace').strip()[-400:]}")
        subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
        main = cert_manager_dir()
        for gomod in sorted((root / "cmd").glob("*/go.mod")):
            subprocess.run([gobuild.go_binary(), "mod", "edit",
                            f"-replace=github.com/cert-manager/cert-manager={main}"],
                           cwd=gomod.parent, check=True, env=gobuild._go_env(gobuild.go_binary()))
        stamp.write_text(pin)
    return root / "cmd" / command


def helm_version() -> str:
    """The Helm release cert-manager's own build uses to render its static manifest."""
    tools = (cert_manager_dir() / "make/_shared/tools/00_mod.mk").read_text()
    found = re.search(r"^tools \+= helm=(v[\d.]+)$", tools, re.M)
    if not found:
        raise LabError("cert-manager's make/_shared/tools/00_mod.mk names no helm version: "
                       "check the cert_manager pin")
    return found[1]


# --------------------------------------------------------------------------- Go binaries
@dataclass(frozen=True)
class GoBinary:
    """A binary that only an image needs (not the kwok control plane).

    Attributes:
        name: Output file name under ``build/images/bin``.
        package: Go package to build.
        module_dir: Callable giving the folder to build in (a wrapper module or an upstream
            module in the module cache, built as published).
        ldflags: ``-X`` version stamps besides ``-s -w``.
        scratch: Build in a copy of the wrapper's go.mod/go.sum under ``build/images/work``
            with ``-mod=mod``, for a package the wrapper does not list as a ``tool`` (the
            committed go.mod stays as the kwok build needs it).
    """

    name: str
    package: str
    module_dir: Callable[[], Path]
    ldflags: Callable[[], tuple[str, ...]] = lambda: ()
    scratch: bool = False
    mod_mode: str = "-mod=readonly"


def _module_ldflags(module: str) -> tuple[str, ...]:
    return next(spec.ldflags for spec in gobuild.go_builds() if spec.module == module)


def _kserve_rbac_dir() -> Path:
    return module_dir("github.com/brancz/kube-rbac-proxy", kube_rbac_proxy_ref().rpartition(":")[2])


GO_BINARIES = (
    GoBinary("vc-webhook-manager", "volcano.sh/volcano/cmd/webhook-manager",
             lambda: controlplane_dir() / "volcano", lambda: _module_ldflags("volcano")),
    # For vc-webhook-manager's init Job (gen-admission-secret.sh runs kubectl).
    GoBinary("kubectl", "k8s.io/kubernetes/cmd/kubectl",
             lambda: controlplane_dir() / "kube", lambda: _module_ldflags("kube"), scratch=True),
    GoBinary("kserve-manager", "./cmd/manager", kserve_dir),
    GoBinary("kube-rbac-proxy", "./cmd/kube-rbac-proxy", _kserve_rbac_dir),
    *(GoBinary(f"cert-manager-{cmd}", ".", lambda cmd=cmd: cert_manager_cmd_dir(cmd),
               lambda: (f"-X github.com/cert-manager/cert-manager/pkg/util.AppVersion="
                        f"{versions.pin('cert_manager')}",), mod_mode="-mod=mod")
      for cmd in CERT_MANAGER_COMMANDS),
    # Renders cert-manager's chart into its static manifest (helpers.backend.kind.sources).
    GoBinary("helm", "./cmd/helm", lambda: module_dir("helm.sh/helm/v3", helm_version()),
             lambda: (f"-X helm.sh/helm/v3/internal/version.version={helm_version()}",)),
)


def _go_key(go: str, spec: GoBinary, folder: Path) -> str:
    goversion = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True,
                               check=False).stdout.strip()
    digest = hashlib.sha256(f"{goversion}\0{folder}\0{spec.package}\0{spec.ldflags()}".encode())
    for name in ("go.mod", "go.sum"):
        digest.update((folder / name).read_bytes())
    return digest.hexdigest()


def build_go_binaries(names: Iterable[str], log: Callable[[str], None] = print) -> dict[str, float]:
    """Build (or reuse) the image-only Go binaries into ``build/images/bin``.

    A binary whose module files, package, flags and Go version are unchanged since its last
    build is reused; otherwise ``go build`` runs (warm from Go's shared build cache).

    Returns:
        Seconds spent per binary (0.0 for a reused one).
    """
    go = gobuild.go_binary()
    out_dir, logs = images_dir() / "bin", images_dir() / "logs"
    out_dir.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    spent: dict[str, float] = {}
    for spec in (s for s in GO_BINARIES if s.name in set(names)):
        if spec.module_dir().name == "volcano":
            gobuild.prepare_volcano_apis(go)
        folder = spec.module_dir()
        key, stamp, target = _go_key(go, spec, folder), out_dir / f".{spec.name}.stamp", out_dir / spec.name
        if stamp.is_file() and stamp.read_text() == key and target.is_file():
            spent[spec.name] = 0.0
            continue
        log(f"building {spec.name} ({spec.package}; cold: tens of minutes, warm: a minute or two)")
        start = time.perf_counter()
        logfile = logs / f"{spec.name}.log"
        env = gobuild._go_env(go) | {"GOFLAGS": "-mod=mod" if spec.scratch else spec.mod_mode}
        if spec.scratch:
            copy = images_dir() / "work" / spec.name
            copy.mkdir(parents=True, exist_ok=True)
            for name in ("go.mod", "go.sum"):
                shutil.copyfile(folder / name, copy / name)
            folder = copy
        with logfile.open("w") as out:
            proc = subprocess.run(
                [go, "build", "-trimpath", "-ldflags", " ".join(("-s", "-w", *spec.ldflags())),
                 "-o", str(target) + ".tmp", spec.package],
                cwd=folder, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
        spent[spec.name] = round(time.perf_counter() - start, 1)
        if proc.returncode != 0:
            raise BackendUnavailable(f"building {spec.name} failed (exit {proc.returncode}); "
                                     f"log {logfile}:\n{_tail(logfile)}")
        Path(str(target) + ".tmp").replace(target)
        stamp.write_text(key)
        log(f"built {spec.name} in {spent[spec.name]} s")
    return spent


def binary_path(name: str) -> Path:
    """Where a binary is: the kwok control plane's folder, or ``build/images/bin``."""
    if name in (*gobuild.BINARIES, *gobuild.OPTIONAL_BINARIES):
        return bin_dir() / name
    return images_dir() / "bin" / name


# --------------------------------------------------------------------------- image definitions
@dataclass(frozen=True)
class AddonImage:
    """One image of the kind path.

    Attributes:
        key: Short name (``--only`` on the command line).
        ref: The reference upstream manifests name, which the image is tagged with.
        files: Path in the image -> Go binary name (from :func:`binary_path`) or a file.
        entrypoint: ENTRYPOINT of a generated (Go) image.
        user: USER of a generated image ("" keeps root).
        apt: Debian packages a generated image installs on the base.
        dockerfile: A committed Dockerfile under ``cluster/images`` instead of a generated one.
        needs: Keys of images this one is built FROM (built first).
    """

    key: str
    ref: str
    files: dict[str, str | Path] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    user: str = ""
    apt: tuple[str, ...] = ()
    dockerfile: str = ""
    needs: tuple[str, ...] = ()

    @property
    def binaries(self) -> tuple[str, ...]:
        """The Go binaries the image holds."""
        return tuple(v for v in self.files.values() if isinstance(v, str))


def _volcano(name: str, **kw) -> AddonImage:
    return AddonImage(name, f"docker.io/volcanosh/{name}:{versions.pin('volcano')}",
                      entrypoint=(f"/{name}",), **kw)


def addon_images() -> list[AddonImage]:
    """Every add-on image, in build order (an image's ``needs`` come before it)."""
    webhook_script = volcano_dir() / "installer/dockerfile/webhook-manager/gen-admission-secret.sh"
    kserve = versions.pin("kserve")
    return [
        AddonImage("python", versions.pin("training_python_image"), dockerfile="python.Dockerfile"),
        AddonImage("busybox", busybox_ref(), dockerfile="busybox.Dockerfile"),
        _volcano("vc-scheduler", files={"/vc-scheduler": "vc-scheduler"}),
        _volcano("vc-controller-manager", files={"/vc-controller-manager": "vc-controller-manager"}),
        # Upstream's image is Alpine with openssl and kubectl: its init Job runs
        # gen-admission-secret.sh (written for Alpine's sh, so run here by bash).
        _volcano("vc-webhook-manager", apt=("openssl", "bash"),
                 files={"/vc-webhook-manager": "vc-webhook-manager",
                        "/usr/local/bin/kubectl": "kubectl",
                        "/gen-admission-secret.sh": webhook_script}),
        AddonImage("training-operator", training_operator_ref(),
                   files={"/manager": "training-operator"}, entrypoint=("/manager",)),
        # Trainer v2 and the JobSet it runs on: binaries of the kwok control plane, images as
        # upstream's Dockerfiles make them (distroless nonroot, ENTRYPOINT /manager).
        AddonImage("trainer-controller-manager", trainer_ref(),
                   files={"/manager": "trainer-controller-manager"}, entrypoint=("/manager",),
                   user="65532:65532"),
        AddonImage("jobset", jobset_ref(), files={"/manager": "jobset-controller-manager"},
                   entrypoint=("/manager",), user="65532:65532"),
        AddonImage("kserve-controller", f"kserve/kserve-controller:{kserve}",
                   files={"/manager": "kserve-manager"}, entrypoint=("/manager",), user="65532:65532"),
        AddonImage("kube-rbac-proxy", kube_rbac_proxy_ref(),
                   files={"/usr/local/bin/kube-rbac-proxy": "kube-rbac-proxy"},
                   entrypoint=("/usr/local/bin/kube-rbac-proxy",), user="65532:65532"),
        AddonImage("xgbserver", f"kserve/xgbserver:{kserve}", dockerfile="xgbserver.Dockerfile",
                   needs=("python",)),
        *(AddonImage(f"cert-manager-{cmd}",
                     f"quay.io/jetstack/cert-manager-{cmd}:{versions.pin('cert_manager')}",
                     files={f"/app/cmd/{cmd}/{cmd}": f"cert-manager-{cmd}"},
                     entrypoint=(f"/app/cmd/{cmd}/{cmd}",), user="1000")
          for cmd in CERT_MANAGER_COMMANDS),
    ]


def generated_dockerfile(image: AddonImage, base: str) -> str:
    """The Dockerfile of a Go image: its files copied onto the Debian base."""
    lines = [f"# Generated by helpers.backend.kind.image_build for {image.ref}", f"FROM {base}"]
    if image.apt:
        lines.append("RUN apt-get update && apt-get install -y --no-install-recommends "
                     f"{' '.join(image.apt)} && rm -rf /var/lib/apt/lists/*")
    lines.append("COPY rootfs/ /")
    if any(dest.endswith(".sh") for dest in image.files):
        scripts = " ".join(dest for dest in image.files if dest.endswith(".sh"))
        lines.append(f"RUN sed -i '1s|^#!/bin/sh$|#!/bin/bash|' {scripts} && chmod 0755 {scripts}")
    lines.append("WORKDIR /")
    if image.user:
        lines.append(f"USER {image.user}")
    lines.append(f"ENTRYPOINT {json.dumps(list(image.entrypoint))}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- staging
def machine_ca_files() -> list[Path]:
    """The machine's extra CA certificates (``*.crt`` in :data:`CA_DIRS`), if any."""
    return sorted(p for d in CA_DIRS if d.is_dir() for p in d.glob("*.crt") if p.is_file())


def pip_conf_text(environ: dict[str, str] | None = None) -> str:
    """The machine's pip settings for images that run pip: its pip.conf files, then the
    index settings of the environment (``PIP_INDEX_URL`` ...). Empty when there are none.
    Written into the git-ignored build context only, never into committed files.
    """
    environ = dict(os.environ if environ is None else environ)
    parts = [p.read_text() for p in PIP_CONF_FILES if p.is_file()]
    extra = [f"{key} = {environ[env]}" for env, key in PIP_ENV.items() if environ.get(env)]
    if extra:
        parts.append("[global]\n" + "\n".join(extra) + "\n")
    return "\n".join(parts)


def uv_lock_constraints(lock: Path, skip: Iterable[str] = ()) -> str:
    """``name==version`` lines for every registry package in a uv.lock (pip ``-c`` file).

    Local packages (directory/editable sources), names in ``skip`` and packages locked at
    more than one version (per-platform forks) are left out.
    """
    found: dict[str, set[str]] = {}
    # uv.lock is TOML; its [[package]] headers start with name, version, source (Python
    # 3.10, which the kit supports, has no tomllib).
    for block in lock.read_text().split("[[package]]")[1:]:
        head = dict(re.findall(r'^(name|version|source) = (.+)$', block, re.M))
        name, version = head.get("name", "").strip('"'), head.get("version", "").strip('"')
        if "registry" in head.get("source", "") and name and version and name not in set(skip):
            found.setdefault(name, set()).add(version)
    return "".join(f"{name}=={vers.pop()}\n" for name, vers in sorted(found.items()) if len(vers) == 1)


def stage_context(image: AddonImage, base: str, dest: Path) -> Path:
    """Lay out an image's build context in ``dest`` (replaced), with its Dockerfile."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if image.dockerfile:
        shutil.copyfile(definitions_dir() / image.dockerfile, dest / "Dockerfile")
    else:
        (dest / "Dockerfile").write_text(generated_dockerfile(image, base))
    for target, source in image.files.items():
        src = binary_path(source) if isinstance(source, str) else source
        if not src.is_file():
            raise LabError(f"{image.ref} needs {src}, which is missing: run "
                           "`python -m helpers.cluster images` (it builds the binaries first)")
        out = dest / "rootfs" / target.lstrip("/")
        out.parent.mkdir(parents=True, exist_ok=True)
        if not isinstance(source, str):  # a file of the module cache (read-only): a copy
            shutil.copyfile(src, out)
        else:  # a binary: linked, so its hash is found in the cache (context_hash)
            src.chmod(0o755)
            try:
                os.link(src, out)
            except OSError:
                shutil.copy2(src, out)
        out.chmod(0o755)
    if image.key == "python":
        (dest / "ca").mkdir()
        for ca in machine_ca_files():
            shutil.copyfile(ca, dest / "ca" / ca.name)
        (dest / "pip.conf").write_text(pip_conf_text())
    if image.key == "xgbserver":
        python = kserve_dir() / "python"
        for name in ("kserve", "storage", "xgbserver"):
            shutil.copytree(python / name, dest / name, ignore=shutil.ignore_patterns("test*", "docs"))
        for p in [dest, *dest.rglob("*")]:  # copies of the read-only module cache
            p.chmod(p.stat().st_mode | 0o200)
        (dest / "constraints.txt").write_text(uv_lock_constraints(
            python / "xgbserver/uv.lock", skip=("xgboost", "nvidia-nccl-cu12")))
    return dest


def _file_digest(path: Path, cache: dict[str, str]) -> str:
    """sha256 of a file; big files are remembered by inode, size and mtime in ``cache``."""
    st = path.stat()
    key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    if key in cache:
        return cache[key]
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if st.st_size > 1 << 20:
        cache[key] = digest.hexdigest()
    return digest.hexdigest()


def context_hash(context: Path, extra: Iterable[str] = (), cache: dict[str, str] | None = None) -> str:
    """sha256 over every file in a context (path, mode and content) and ``extra`` strings."""
    cache = {} if cache is None else cache
    digest = hashlib.sha256()
    for item in extra:
        digest.update(item.encode() + b"\0")
    for p in sorted(context.rglob("*")):
        if p.is_file():
            rel = p.relative_to(context).as_posix()
            digest.update(f"{rel}\0{p.stat().st_mode & 0o777}\0{_file_digest(p, cache)}\0".encode())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- docker
def _docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["docker", *args], capture_output=True, text=True,
                              timeout=timeout, check=False)
    except FileNotFoundError:
        raise BackendUnavailable("docker is not installed: the add-on images need a Docker "
                                 "daemon (see the README's maintainer section)") from None
    if check and proc.returncode != 0:
        raise LabError(f"docker {' '.join(args[:3])} failed: {proc.stderr.strip()[-800:]}")
    return proc


def image_label(ref: str) -> str | None:
    """The inputs label of a local image, or None when there is no such image."""
    proc = _docker("image", "inspect", ref, "--format",
                   f'{{{{index .Config.Labels "{INPUTS_LABEL}"}}}}', check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def image_id(ref: str) -> str:
    """A local image's ID (raises :class:`LabError` naming the fix when it is missing)."""
    proc = _docker("image", "inspect", ref, "--format", "{{.Id}}", check=False)
    if proc.returncode != 0:
        raise LabError(f"the image {ref} is not in this Docker: build the Debian base image "
                       f"first (README, maintainer section) or set {BASE_IMAGE_ENV}")
    return proc.stdout.strip()


def image_size(ref: str) -> int:
    """A local image's size in bytes."""
    return int(_docker("image", "inspect", ref, "--format", "{{.Size}}").stdout.strip())


def _docker_build(image: AddonImage, context: Path, inputs: str, base: str, logfile: Path) -> None:
    args = ["build", "--network", "host", "--label", f"{INPUTS_LABEL}={inputs}", "-t", image.ref,
            "--build-arg", f"BASE_IMAGE={base}",
            "--build-arg", f"PYTHON_IMAGE={versions.pin('training_python_image')}",
            "--build-arg", f"XGBOOST_VERSION={versions.pin('kserve_xgboost')}", str(context)]
    with logfile.open("w") as out:
        proc = subprocess.run(["nice", "-n", "10", "docker", *args], stdout=out,
                              stderr=subprocess.STDOUT, check=False, timeout=3600,
                              env=os.environ | {"DOCKER_BUILDKIT": "0"})
    if proc.returncode != 0:
        raise LabError(f"building {image.ref} failed (exit {proc.returncode}); "
                       f"log {logfile}:\n{_tail(logfile)}")


def build_addon_images(only: Iterable[str] | None = None, *, force: bool = False,
                       log: Callable[[str], None] = print) -> list[dict]:
    """Build (or reuse) the add-on images; the function behind ``make cluster-images``.

    First the Go binaries (the kwok control plane's, then the image-only ones), then each
    image in order. An image whose tag already carries the hash of its inputs is reused.

    Args:
        only: Keys of :func:`addon_images` to build (default: all; their ``needs`` too).
        force: Rebuild images even when their inputs are unchanged.
        log: Where progress lines go.

    Returns:
        One entry per image: ``key``, ``ref``, ``action`` ("built" or "reused"),
        ``seconds`` (binaries + docker build), ``bytes`` (image size). Also written to
        ``build/images/summary.json``.
    """
    base = base_image()
    base_id = image_id(base)
    wanted = addon_images()
    if only is not None:
        keys = set(only)
        unknown = keys - {i.key for i in wanted}
        if unknown:
            raise LabError(f"unknown image(s) {sorted(unknown)}: choose from "
                           f"{', '.join(i.key for i in wanted)}")
        keys |= {n for i in wanted if i.key in keys for n in i.needs}
        wanted = [i for i in wanted if i.key in keys]
    start = time.perf_counter()
    needed = {b for i in wanted for b in i.binaries}
    if any(i.key.startswith("cert-manager-") for i in wanted):
        needed.add("helm")  # renders cert-manager's installer (helpers.backend.kind.sources)
    go_spent: dict[str, float] = {}
    if needed & {*gobuild.BINARIES, *gobuild.OPTIONAL_BINARIES}:
        go_spent |= gobuild.build(log=log)
    go_spent |= build_go_binaries(needed, log=log)
    log(f"Go binaries ready in {time.perf_counter() - start:.1f} s")
    results, built_ids = [], {}
    cache_file = images_dir() / "hash-cache.json"
    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    for image in wanted:
        t0 = time.perf_counter()
        context = stage_context(image, base, images_dir() / "contexts" / image.key)
        parents = [base_id] + [built_ids[n] for n in image.needs]
        inputs = context_hash(context, parents, cache)
        cache_file.write_text(json.dumps(cache))
        action = "reused"
        if force or image_label(image.ref) != inputs:
            log(f"building {image.ref}")
            _docker_build(image, context, inputs, base, images_dir() / "logs" / f"{image.key}.docker.log")
            action = "built"
        built_ids[image.key] = image_id(image.ref)
        seconds = round(time.perf_counter() - t0 + sum(go_spent.get(b, 0.0) for b in image.binaries), 1)
        results.append({"key": image.key, "ref": image.ref, "action": action,
                        "seconds": seconds, "bytes": image_size(image.ref)})
        log(f"{action} {image.ref} ({seconds} s)")
    (images_dir() / "summary.json").write_text(json.dumps(
        {"total_seconds": round(time.perf_counter() - start, 1), "images": results}, indent=1))
    return results


def load_into_kind(refs: Iterable[str], cluster: str) -> None:
    """``kind load docker-image`` the images into every node of ``cluster`` (kind skips a
    node that already holds an image's ID, so a re-run is quick)."""
    refs = list(refs)
    proc = subprocess.run(["kind", "load", "docker-image", *refs, "--name", cluster],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0:
        raise LabError(f"kind load of {len(refs)} image(s) into {cluster} failed: "
                       f"{proc.stderr.strip()[-800:]}")


# --------------------------------------------------------------------------- smoke checks
def smoke_checks() -> dict[str, tuple[tuple[str, ...], str]]:
    """Image key -> (arguments of ``docker run --rm <ref> ...``, text its output must hold).

    Each must exit 0: a Go image prints its version or its flags, a Python image runs its
    interpreter. (tests/test_image_build.py also has the xgbserver image serve a model.)
    """
    volcano = ("--version",), versions.pin("volcano")
    return {
        "python": (("python", "-c", "import ssl, sys, venv; print(sys.version)"), "3.11"),
        "busybox": (("sh", "-c", "echo busybox-ok"), "busybox-ok"),
        "vc-scheduler": volcano, "vc-controller-manager": volcano, "vc-webhook-manager": volcano,
        "training-operator": (("--help",), "gang-scheduler-name"),
        "trainer-controller-manager": (("--help",), "feature-gates"),
        "jobset": (("--help",), "leader-elect"),
        "kserve-controller": (("--help",), "health-probe-addr"),
        "kube-rbac-proxy": (("--help",), "upstream"),
        "xgbserver": (("--help",), "--model_name"),
        **{f"cert-manager-{cmd}": (("--help",), "Usage") for cmd in CERT_MANAGER_COMMANDS},
    }


def smoke_check(image: AddonImage) -> dict:
    """Run the image's :func:`smoke_checks` entry; returns ``ok``, exit code and output tail."""
    args, expected = smoke_checks()[image.key]
    proc = _docker("run", "--rm", image.ref, *args, timeout=120, check=False)
    output = proc.stdout + proc.stderr
    return {"key": image.key, "ref": image.ref, "returncode": proc.returncode,
            "ok": proc.returncode == 0 and expected in output, "tail": output[-300:]}
