"""The kind node image for the pinned Kubernetes, built here from source (no registry needed).

What kind's own ``kindest/node`` holds, made from what this machine can reach:

* the Debian base image (:mod:`.base`) with kind v0.33.0's ``images/base/files`` (entrypoint,
  containerd config, kubelet unit + kubeadm drop-in), Debian's systemd, containerd, runc and
  CNI plugins (``node.Dockerfile`` in ``cluster/kind/maintainer``);
* kubeadm, kubelet, kubectl (built from ``k8s.io/kubernetes`` at the pin) and crictl;
* pre-imported into its containerd, the images ``kubeadm config images list`` names
  (apiserver, controller-manager, scheduler, proxy, etcd, CoreDNS, pause), each built here
  and tagged exactly as kubeadm expects, plus the pod network and StorageClass stand-ins:
  ``kflabs-podnet`` for kindnetd (``podnet.yaml``) and local-path-provisioner as
  ``standard``, the default StorageClass (kind's own default-storage uses it too).

It is tagged as kind names node images, ``kindest/node:v<kubernetes>``, without a digest;
learners pull the digest-pinned image of ``kind_node_image`` instead.

Caching: every image carries :data:`HASH_LABEL`, a hash of all its inputs (Dockerfile text,
binaries, files). An image already present with the same hash is not rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from helpers import paths, versions
from helpers.backend.kind.maintainer import gobuild
from helpers.backend.kind.maintainer.base import BASE_IMAGE, ensure_base_image, image_label
from helpers.backend.kind.maintainer.docker import wrapper_text
from helpers.errors import BackendUnavailable

HASH_LABEL = "io.kflabs.inputs"
KIND_MODULE = "sigs.k8s.io/kind"
PODNET_REPO = "kflabs/podnet"
CONTAINERD_CONFIG = "etc/containerd/config.toml"


def recipe_dir() -> Path:
    """``cluster/kind/maintainer``: the Dockerfile, scripts and manifests of the node image."""
    return paths.ROOT / "cluster" / "kind" / "maintainer"


def node_image_tag(kubernetes: str | None = None) -> str:
    """``kindest/node:v1.35.4``: kind's name for a node image of that Kubernetes."""
    return f"kindest/node:v{(kubernetes or versions.pin('kubernetes')).lstrip('v')}"


@dataclass(frozen=True)
class ComponentImage:
    """One image to build: its tag, the binaries it copies in, and how it starts.

    Attributes:
        tag: Exactly as the manifests reference it (``registry.k8s.io/etcd:3.6.6-0``).
        binaries: File name in the build context -> path in the image.
        entrypoint: ``ENTRYPOINT`` (exec form); empty when the pod spec gives the command.
        packages: Debian packages to install on top of the base image.
        files: Extra context files (name -> path in the image, mode 755).
        static_from_scratch: Build ``FROM scratch`` (pause: one static binary).
    """

    tag: str
    binaries: dict[str, str]
    entrypoint: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    static_from_scratch: bool = False


def split_image(ref: str) -> tuple[str, str]:
    """``registry.k8s.io/coredns/coredns:v1.13.1`` -> (repository, tag)."""
    repo, _, tag = ref.rpartition(":")
    if not repo or "/" in tag:
        raise ValueError(f"image reference without a tag: {ref!r}")
    return repo, tag


def component_images(kubeadm_images: list[str]) -> list[ComponentImage]:
    """What to build for each image ``kubeadm config images list`` prints, in that order.

    Raises:
        ValueError: kubeadm names an image this build does not know how to make.
    """
    built: list[ComponentImage] = []
    for ref in kubeadm_images:
        repo, tag = split_image(ref)
        name = repo.rsplit("/", 1)[-1]
        if name in gobuild.CONTROL_PLANE_BINARIES:
            built.append(ComponentImage(ref, {name: f"/usr/local/bin/{name}"}))
        elif name == "kube-proxy":
            built.append(ComponentImage(
                ref, {name: "/usr/local/bin/kube-proxy"},
                packages=("iptables", "conntrack", "ipset", "kmod"),
                files={"iptables-wrapper": "/usr/sbin/iptables-wrapper"}))
        elif name == "etcd":
            built.append(ComponentImage(ref, {"etcd": "/usr/local/bin/etcd"}))
        elif name == "coredns":
            built.append(ComponentImage(ref, {"coredns": "/coredns"}, entrypoint=("/coredns",)))
        elif name == "pause":
            built.append(ComponentImage(ref, {}, entrypoint=("/pause",), static_from_scratch=True))
        else:
            raise ValueError(f"kubeadm lists {ref}, which the node-image build cannot make")
    return built


def addon_images(podnet_tag: str) -> list[ComponentImage]:
    """The pod network and StorageClass stand-ins' images."""
    lpp = versions.pin("local_path_provisioner")
    return [
        ComponentImage(podnet_tag, {"kubectl": "/usr/local/bin/kubectl"},
                       entrypoint=("/usr/local/bin/podnet.sh",),
                       packages=("iproute2", "iptables"),
                       files={"podnet.sh": "/usr/local/bin/podnet.sh",
                              "iptables-wrapper": "/usr/sbin/iptables-wrapper"}),
        ComponentImage(f"docker.io/rancher/local-path-provisioner:{lpp}",
                       {"local-path-provisioner": "/usr/bin/local-path-provisioner"}),
    ]


IPTABLES_COMMANDS = ("iptables", "iptables-save", "iptables-restore",
                     "ip6tables", "ip6tables-save", "ip6tables-restore")


def dockerfile(image: ComponentImage, base: str = BASE_IMAGE) -> str:
    """The Dockerfile text for one component image (context: its binaries and files)."""
    if image.static_from_scratch:  # pause: compile kubernetes' pause.c statically
        return (f"FROM {base} AS build\n"
                "RUN DEBIAN_FRONTEND=noninteractive apt-get update \\\n"
                "    && apt-get install -y --no-install-recommends gcc libc6-dev\n"
                "COPY pause.c /pause.c\n"
                "ARG VERSION\n"
                'RUN gcc -Os -Wall -Werror -static -DVERSION="$VERSION" -o /pause /pause.c '
                "&& strip /pause\n"
                "FROM scratch\nCOPY --from=build /pause /pause\nUSER 65535:65535\n"
                f"ENTRYPOINT {json.dumps(list(image.entrypoint))}\n")
    lines = [f"FROM {base}"]
    if image.packages:
        lines.append("RUN DEBIAN_FRONTEND=noninteractive apt-get update && apt-get install -y "
                     f"--no-install-recommends {' '.join(image.packages)} "
                     "&& rm -rf /var/lib/apt/lists/*")
    for src, dest in sorted({**image.binaries, **image.files}.items()):
        lines.append(f"COPY {src} {dest}")
    if "iptables-wrapper" in image.files:
        links = " && ".join(f"ln -sf iptables-wrapper /usr/sbin/{c}" for c in IPTABLES_COMMANDS)
        lines.append(f"RUN {links}")
    if image.entrypoint:
        lines.append(f"ENTRYPOINT {json.dumps(list(image.entrypoint))}")
    return "\n".join(lines) + "\n"


#: The runc wrapper inside the node (pods' privileged containers meet the same missing
#: CAP_SYS_RESOURCE as the node itself): :mod:`.runc_wrap`, run by the node's python3.
NODE_RUNC_WRAPPER = "/usr/local/sbin/kflabs-runc-wrap"


def containerd_config(text: str, sandbox_image: str, runc_binary: str = NODE_RUNC_WRAPPER) -> str:
    """kind's containerd config for Debian's containerd 1.6, kubeadm's pause and the wrapper.

    Sets ``sandbox_image`` (kind's file names its own pause tag), makes every runc runtime
    call ``runc_binary`` (``BinaryName``), restricts ``oom_score_adj`` to containerd's own
    (no CAP_SYS_RESOURCE to lower it) and drops the fuse-overlayfs proxy plugin (rootless
    only; its snapshotter is not built here).
    """
    text, count = re.subn(r'sandbox_image = "[^"]*"', f'sandbox_image = "{sandbox_image}"', text)
    if count != 1:
        raise ValueError("kind's containerd config has no single sandbox_image line")
    # Lowering a process's oom_score_adj (kubelet asks -998 for pod sandboxes) needs
    # CAP_SYS_RESOURCE, which the node lacks: runc's init then dies ("can't get final child's
    # PID from pipe: EOF"). Restricted, containerd clamps it to its own value instead.
    text = text.replace("restrict_oom_score_adj = false", "restrict_oom_score_adj = true")
    text = re.sub(r"^(\s*)SystemdCgroup = true$", rf'\g<0>\n\1BinaryName = "{runc_binary}"',
                  text, flags=re.MULTILINE)
    return re.sub(r'\[proxy_plugins\]\n(?:#.*\n)?\[proxy_plugins\."fuse-overlayfs"\]\n(?:  .*\n)*',
                  "", text)


def storage_manifest(upstream: str, helper_image: str = BASE_IMAGE) -> str:
    """local-path-provisioner's ``deploy/local-path-storage.yaml`` as kind's default storage.

    The StorageClass becomes ``standard`` and the default one (kind's name for it), and the
    helper pod runs ``helper_image`` (any image with a shell) instead of ``busybox``, which
    has no tag and would be pulled.
    """
    docs = [d for d in yaml.safe_load_all(upstream) if d]
    seen_class = False
    for doc in docs:
        if doc.get("kind") == "StorageClass":
            doc["metadata"]["name"] = "standard"
            doc["metadata"].setdefault("annotations", {})[
                "storageclass.kubernetes.io/is-default-class"] = "true"
            seen_class = True
        if doc.get("kind") == "ConfigMap" and "helperPod.yaml" in doc.get("data", {}):
            helper = yaml.safe_load(doc["data"]["helperPod.yaml"])
            for container in helper["spec"]["containers"]:
                container["image"] = helper_image
                container["imagePullPolicy"] = "IfNotPresent"
            doc["data"]["helperPod.yaml"] = yaml.safe_dump(helper, sort_keys=False)
    if not seen_class:
        raise ValueError("local-path-storage.yaml has no StorageClass")
    return yaml.safe_dump_all(docs, sort_keys=False)


def podnet_manifest(template: str, image: str) -> str:
    """``podnet.yaml`` with its image filled in (kind fills ``{{ .PodSubnet }}`` itself)."""
    if "PODNET_IMAGE" not in template:
        raise ValueError("podnet.yaml lacks the PODNET_IMAGE placeholder")
    return template.replace("PODNET_IMAGE", image)


# --------------------------------------------------------------------------- building


def _docker(argv: list[str], timeout: float = 3600, **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(["docker", *argv], capture_output=True, text=True, timeout=timeout, check=False,
                          **kwargs)
    if proc.returncode != 0:
        raise BackendUnavailable(f"`docker {' '.join(argv[:3])} ...` failed:\n"
                                 f"{(proc.stderr or proc.stdout).strip()[-3000:]}")
    return proc


def _hash_inputs(*parts: str | bytes | Path) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.read_bytes() if isinstance(part, Path) else (
            part.encode() if isinstance(part, str) else part)
        digest.update(hashlib.sha256(data).digest())
    return digest.hexdigest()[:20]


def module_dir(module: str, version: str) -> Path:
    """The module's folder in Go's module cache (``go mod download`` fetches it if needed)."""
    go = gobuild.go_binary()
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"],
                          capture_output=True, text=True, cwd=paths.ROOT, check=False,
                          env={**gobuild._go_env(go), "GOFLAGS": "-mod=mod"})
    info = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    if not info.get("Dir"):
        raise BackendUnavailable(f"could not download {module}@{version} from the Go module "
                                 f"proxy: {info.get('Error') or proc.stderr.strip()[-500:]}")
    return Path(info["Dir"])


def build_image(image: ComponentImage, sources: dict[str, Path], extra_hash: str = "",
                build_args: dict[str, str] | None = None) -> bool:
    """Build one image unless present with the same input hash; True when it was built."""
    text = dockerfile(image)
    names = sorted({*image.binaries, *image.files, *(["pause.c"] if image.static_from_scratch else [])})
    key = _hash_inputs(text, extra_hash, json.dumps(build_args or {}), *(sources[n] for n in names))
    if image_label(image.tag, HASH_LABEL) == key:
        return False
    with tempfile.TemporaryDirectory(dir=_work(), prefix="ctx-") as tmp:
        ctx = Path(tmp)
        for name in names:
            shutil.copy2(sources[name], ctx / name)
            (ctx / name).chmod(0o755)
        (ctx / "Dockerfile").write_text(text)
        args = [f"--build-arg={k}={v}" for k, v in (build_args or {}).items()]
        print(f"building {image.tag}")
        _docker(["build", "--network", "host", "--label", f"{HASH_LABEL}={key}", *args,
                 "-t", image.tag, str(ctx)])
    return True


def _work() -> Path:
    work = paths.build_dir() / "kind"
    work.mkdir(parents=True, exist_ok=True)
    return work


def kubeadm_image_list(kubeadm: Path, kubernetes: str) -> list[str]:
    """``kubeadm config images list`` for ``kubernetes``, as kubeadm itself prints it."""
    proc = subprocess.run([str(kubeadm), "config", "images", "list", "--kubernetes-version",
                           kubernetes], capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        raise BackendUnavailable(f"kubeadm config images list failed: {proc.stderr.strip()}")
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def ensure_node_image(force: bool = False) -> dict:
    """Build (or reuse) everything the node image needs, then the node image itself.

    Returns:
        A summary: the image tags, what was rebuilt, and seconds per step.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    base = ensure_base_image()
    timings["base_image"] = round(time.perf_counter() - start, 1)
    kubernetes = "v" + versions.pin("kubernetes").lstrip("v")
    step = time.perf_counter()
    gobuild.build_kubernetes(force=force)
    gobuild.build_etcd(force=force)
    k8s_bin = gobuild.bin_dir() / "k8s"
    images = kubeadm_image_list(k8s_bin / "kubeadm", kubernetes)
    coredns_version = split_image(next(i for i in images if "/coredns" in i))[1]
    for name in ("crictl", "local-path-provisioner"):
        gobuild.install_module_tool(gobuild.tool(name), force=force)
    gobuild.install_module_tool(gobuild.tool("coredns", coredns_version), force=force)
    timings["go_builds"] = round(time.perf_counter() - step, 1)

    k8s_dir = module_dir("k8s.io/kubernetes", kubernetes)
    kind_dir = module_dir(KIND_MODULE, versions.pin("kind"))
    lpp_dir = module_dir("github.com/rancher/local-path-provisioner",
                         versions.pin("local_path_provisioner"))
    bins = gobuild.bin_dir()
    sources: dict[str, Path] = {n: k8s_bin / n for n in (*gobuild.NODE_BINARIES,
                                                         *gobuild.CONTROL_PLANE_BINARIES)}
    sources.update({"etcd": bins / "etcd" / "etcd", "coredns": bins / "coredns",
                    "crictl": bins / "crictl", "local-path-provisioner": bins / "local-path-provisioner",
                    "pause.c": k8s_dir / "build" / "pause" / "linux" / "pause.c",
                    "podnet.sh": recipe_dir() / "podnet.sh",
                    "iptables-wrapper": recipe_dir() / "iptables-wrapper"})
    step = time.perf_counter()
    podnet_hash = _hash_inputs(sources["podnet.sh"], sources["iptables-wrapper"], sources["kubectl"])
    podnet_tag = f"{PODNET_REPO}:{podnet_hash[:12]}"
    components = component_images(images)
    everything = [*components, *addon_images(podnet_tag)]
    rebuilt = []
    for image in everything:
        pause_tag = split_image(image.tag)[1] if image.static_from_scratch else ""
        args = {"VERSION": f"{pause_tag}-kflabs"} if pause_tag else None
        if build_image(image, sources, build_args=args):
            rebuilt.append(image.tag)
    timings["component_images"] = round(time.perf_counter() - step, 1)

    pause = next(i.tag for i in components if i.static_from_scratch)
    step = time.perf_counter()
    node = _build_node(kind_dir, lpp_dir, sources, pause, podnet_tag,
                       [i.tag for i in everything] + [BASE_IMAGE], kubernetes, force)
    timings["node_image"] = round(time.perf_counter() - step, 1)
    if node["built"]:
        rebuilt.append(node["image"])
    return {"node_image": node["image"], "images": [i.tag for i in everything],
            "base_image": base["image"], "rebuilt": rebuilt, "seconds": timings,
            "total_seconds": round(time.perf_counter() - start, 1)}


def _stage_node_context(ctx: Path, kind_dir: Path, lpp_dir: Path, sources: dict[str, Path],
                        pause: str, podnet_tag: str, kubernetes: str) -> None:
    shutil.copytree(kind_dir / "images" / "base" / "files", ctx / "files")
    for p in [ctx, *ctx.rglob("*")]:  # copied from the read-only module cache
        p.chmod(p.stat().st_mode | 0o200)
    config = ctx / "files" / CONTAINERD_CONFIG
    config.write_text(containerd_config(config.read_text(), pause))
    (ctx / "bin").mkdir()
    for name in ("kubeadm", "kubelet", "kubectl", "crictl"):
        shutil.copy2(sources[name], ctx / "bin" / name)
    (ctx / "runc-wrap").write_text(wrapper_text("/usr/bin/python3"))
    (ctx / "runc-wrap").chmod(0o755)  # Docker 20.10's builder has no COPY --chmod
    (ctx / "kind-version").write_text(kubernetes)
    (ctx / "manifests").mkdir()
    (ctx / "manifests" / "default-cni.yaml").write_text(
        podnet_manifest((recipe_dir() / "podnet.yaml").read_text(), podnet_tag))
    (ctx / "manifests" / "default-storage.yaml").write_text(
        storage_manifest((lpp_dir / "deploy" / "local-path-storage.yaml").read_text()))
    shutil.copy2(recipe_dir() / "node.Dockerfile", ctx / "Dockerfile")


def _context_hash(ctx: Path, image_ids: list[str]) -> str:
    files = sorted(p for p in ctx.rglob("*") if p.is_file())
    return _hash_inputs(*(str(p.relative_to(ctx)) for p in files), *files, *image_ids)


def _build_node(kind_dir: Path, lpp_dir: Path, sources: dict[str, Path], pause: str,
                podnet_tag: str, images: list[str], kubernetes: str, force: bool) -> dict:
    tag = node_image_tag(kubernetes)
    ids = [_docker(["image", "inspect", "--format", "{{.Id}}", i]).stdout.strip() for i in images]
    with tempfile.TemporaryDirectory(dir=_work(), prefix="node-") as tmp:
        ctx = Path(tmp)
        _stage_node_context(ctx, kind_dir, lpp_dir, sources, pause, podnet_tag, kubernetes)
        key = _context_hash(ctx, ids)
        if not force and image_label(tag, HASH_LABEL) == key:
            return {"image": tag, "built": False}
        stage1 = f"{tag}-stage1"
        print(f"building {tag} (packages, then {len(images)} images imported)")
        _docker(["build", "--network", "host", "--build-arg", f"BASE_IMAGE={BASE_IMAGE}",
                 "-t", stage1, str(ctx)])
        archive = ctx / "images.tar"
        _docker(["save", "-o", str(archive), *images])
        _import_and_commit(stage1, archive, tag, key)
    _docker(["image", "rm", stage1])
    return {"image": tag, "built": True}


def _import_and_commit(stage1: str, archive: Path, tag: str, key: str) -> None:
    """kind's own recipe: containerd in a build container, ``ctr images import``, commit."""
    name = f"kflabs-node-build-{int(time.time())}"
    _docker(["run", "-d", "--privileged", "--name", name, "--entrypoint", "sleep", stage1,
             "infinity"])
    try:
        _docker(["cp", str(archive), f"{name}:/images.tar"])
        script = ("set -e; (containerd > /var/log/containerd-build.log 2>&1 &); "
                  "for i in $(seq 60); do ctr version >/dev/null 2>&1 && break; sleep 1; done; "
                  "ctr --namespace=k8s.io images import --all-platforms --no-unpack --digests "
                  "/images.tar; rm /images.tar; ctr --namespace=k8s.io images ls -q; "
                  "pkill containerd; for i in $(seq 30); do pgrep containerd >/dev/null || break; "
                  "sleep 1; done")
        _docker(["exec", name, "bash", "-c", script], timeout=1800)
        _docker(["commit", "--change", 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]',
                 "--change", 'CMD []', "--change", f"LABEL {HASH_LABEL}={key}", name, tag])
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", name], capture_output=True, check=False)
