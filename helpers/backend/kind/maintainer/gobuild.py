"""Go builds for the node image: ``kind`` itself and the Kubernetes binaries, at the pins.

* ``kind`` from the module ``sigs.k8s.io/kind`` at pin ``kind`` (``go install mod@version``);
* kubeadm, kubelet, kubectl, kube-proxy and the three control-plane binaries from
  ``cluster/controlplane/kube`` (the control plane's wrapper module, whose ``tool`` block
  lists them all), with the same version ldflags as :func:`helpers.backend.kwok.build.go_builds`.
  ``make controlplane-build`` builds only its three; these are built here, behind
  ``make cluster-images``;
* the add-ons of the node image from their modules: crictl (``sigs.k8s.io/cri-tools``),
  CoreDNS, local-path-provisioner.

Everything lands in the git-ignored :func:`bin_dir` (``cluster/kind/.bin``), reused while a
stamp of its inputs is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from helpers import paths, versions
from helpers.backend.kwok.build import _default_binary_name, _go_env, go_binary, go_builds
from helpers.backend.kwok.layout import _tail, controlplane_dir
from helpers.errors import BackendUnavailable

#: The Kubernetes binaries the node image needs (all built from the ``kube`` wrapper module).
NODE_BINARIES = ("kubeadm", "kubelet", "kubectl", "kube-proxy")
CONTROL_PLANE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")


@dataclass(frozen=True)
class ModuleTool:
    """A binary installed with ``go install <package>@<version>`` (outside any wrapper)."""

    name: str
    package: str
    version: str
    ldflags: tuple[str, ...] = ()


def bin_dir() -> Path:
    """``cluster/kind/.bin``: git-ignored home of every binary built here."""
    return paths.ROOT / "cluster" / "kind" / ".bin"


def kind_path() -> Path:
    """Where :func:`ensure_kind` puts ``kind``."""
    return bin_dir() / "kind"


def module_tools(coredns_version: str | None = None) -> list[ModuleTool]:
    """kind (the pin) plus what the node image runs beside Kubernetes.

    Args:
        coredns_version: CoreDNS's tag as kubeadm lists it (``v1.13.1``); without it, CoreDNS
            is left out (kubeadm, which knows it, may not be built yet).
    """
    crictl = versions.pin("crictl")
    lpp = versions.pin("local_path_provisioner")
    tools = [ModuleTool("kind", "sigs.k8s.io/kind", versions.pin("kind")),
             ModuleTool("crictl", "sigs.k8s.io/cri-tools/cmd/crictl", crictl,
                        (f"-X sigs.k8s.io/cri-tools/pkg/version.Version={crictl}",)),
             ModuleTool("local-path-provisioner", "github.com/rancher/local-path-provisioner",
                        lpp, (f"-X main.VERSION={lpp}",))]
    if coredns_version:
        tools.append(ModuleTool("coredns", "github.com/coredns/coredns", coredns_version))
    return tools


def tool(name: str, coredns_version: str | None = None) -> ModuleTool:
    """One of :func:`module_tools` by name."""
    return next(t for t in module_tools(coredns_version) if t.name == name)


def _stamp_ok(stamp: Path, key: str, outputs: list[Path]) -> bool:
    return stamp.is_file() and stamp.read_text() == key and all(p.is_file() for p in outputs)


def _run_logged(cmd: list[str], cwd: Path, env: dict, logfile: Path, what: str) -> float:
    start = time.perf_counter()
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with logfile.open("w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env,
                              check=False)
    if proc.returncode != 0:
        raise BackendUnavailable(f"building {what} failed (exit {proc.returncode}); log "
                                 f"{logfile}:\n{_tail(logfile)}")
    return round(time.perf_counter() - start, 1)


def install_module_tool(tool: ModuleTool, force: bool = False) -> float:
    """``go install`` one tool at its version into :func:`bin_dir`; seconds spent (0 if reused)."""
    go = go_binary()
    out = bin_dir() / tool.name
    stamp = bin_dir() / f".{tool.name}.stamp"
    key = json.dumps([tool.package, tool.version, tool.ldflags])
    if not force and _stamp_ok(stamp, key, [out]):
        return 0.0
    bin_dir().mkdir(parents=True, exist_ok=True)
    env = {**_go_env(go), "GOBIN": str(bin_dir()), "GOFLAGS": "-mod=mod"}
    cmd = [go, "install", "-trimpath", "-ldflags", " ".join(("-s", "-w", *tool.ldflags)),
           f"{tool.package}@{tool.version}"]
    print(f"go install {tool.package}@{tool.version}")
    spent = _run_logged(cmd, bin_dir(), env, bin_dir() / f".{tool.name}.log", tool.name)
    built = bin_dir() / _default_binary_name(tool.package)
    if built != out:
        built.replace(out)
    stamp.write_text(key)
    return spent


def ensure_kind(force: bool = False) -> Path:
    """Build ``kind`` at the pin (once) and return its path."""
    install_module_tool(tool("kind"), force=force)
    return kind_path()


def path_with_kind(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default ``os.environ``) with :func:`bin_dir` first on PATH when kind is there."""
    env = dict(os.environ if env is None else env)
    if kind_path().is_file():
        env["PATH"] = os.pathsep.join([str(bin_dir()), env.get("PATH", "")])
    return env


def kube_ldflags() -> tuple[str, ...]:
    """The Kubernetes version ldflags, exactly those of the control plane's ``kube`` build."""
    return next(spec.ldflags for spec in go_builds() if spec.module == "kube")


def build_kubernetes(force: bool = False) -> float:
    """Build the seven Kubernetes binaries into ``bin_dir()/k8s``; seconds (0 if reused)."""
    names = (*NODE_BINARIES, *CONTROL_PLANE_BINARIES)
    return build_in_wrapper("kube", {n: f"k8s.io/kubernetes/cmd/{n}" for n in names},
                            kube_ldflags(), "k8s", force)


def build_etcd(force: bool = False) -> float:
    """Build etcd from the control plane's ``etcd`` wrapper module (pin ``etcd``) into ``bin_dir()/etcd``."""
    spec = next(spec for spec in go_builds() if spec.module == "etcd")
    return build_in_wrapper("etcd", spec.binaries, spec.ldflags, "etcd", force)


def build_in_wrapper(module_name: str, binaries: dict[str, str], ldflags: tuple[str, ...],
                     out_name: str, force: bool = False) -> float:
    """``go build`` ``binaries`` (name -> package) inside ``cluster/controlplane/<module_name>``.

    Output in ``bin_dir()/<out_name>``; reused while Go's version, the go.mod/go.sum and the
    flags are unchanged. Returns seconds spent (0.0 when reused).
    """
    go = go_binary()
    module = controlplane_dir() / module_name
    out = bin_dir() / out_name
    names = tuple(binaries)
    digest = hashlib.sha256(subprocess.run([go, "env", "GOVERSION"], capture_output=True,
                                           text=True, check=False).stdout.encode())
    for name in ("go.mod", "go.sum"):
        digest.update((module / name).read_bytes())
    digest.update(json.dumps([binaries, ldflags]).encode())
    stamp = out / ".stamp"
    if not force and _stamp_ok(stamp, digest.hexdigest(), [out / n for n in names]):
        return 0.0
    out.mkdir(parents=True, exist_ok=True)
    print(f"building {', '.join(names)} (cold: tens of minutes; warm: a few)")
    env = {**_go_env(go), "CGO_ENABLED": "0"}
    cmd = [go, "build", "-trimpath", "-ldflags", " ".join(("-s", "-w", *ldflags)),
           "-o", str(out) + os.sep, *binaries.values()]
    spent = _run_logged(cmd, module, env, out / ".build.log", ", ".join(names))
    for name, package in binaries.items():
        built = out / _default_binary_name(package)
        if built != out / name:
            built.replace(out / name)
    stamp.write_text(digest.hexdigest())
    return spent
