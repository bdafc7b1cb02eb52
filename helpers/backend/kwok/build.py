"""Build the control plane's upstream binaries with Go from the wrapper modules under
``cluster/controlplane/`` (reused while unchanged).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from helpers import paths, versions
from helpers.backend.kwok.layout import MIN_GO, _tail, bin_dir, controlplane_dir, state_dir, work_dir
from helpers.errors import BackendUnavailable, LabError

# --------------------------------------------------------------------------- building


@dataclass(frozen=True)
class GoBuild:
    """One wrapper module and the binaries it builds.

    Attributes:
        module: Folder under ``cluster/controlplane`` holding the go.mod.
        binaries: Output name -> Go package path.
        ldflags: ``-X`` version stamps (besides ``-s -w``).
        pins: Module path -> versions.yaml key; the go.mod must require (or replace to)
            exactly that version.
    """

    module: str
    binaries: dict[str, str]
    ldflags: tuple[str, ...]
    pins: dict[str, str] = field(default_factory=dict)


def go_builds() -> list[GoBuild]:
    """The wrapper modules, with version ldflags taken from cluster/versions.yaml."""
    k8s = "v" + versions.pin("kubernetes").lstrip("v")
    major, minor = k8s.lstrip("v").split(".")[:2]
    ver = "k8s.io/component-base/version"
    epoch = "1970-01-01T00:00:00Z"  # reproducible: the build date is not an input
    volcano = versions.pin("volcano")
    return [
        GoBuild("etcd", {"etcd": "go.etcd.io/etcd/server/v3"},
                (f"-X go.etcd.io/etcd/api/v3/version.GitSHA={versions.pin('etcd')}",),
                {"go.etcd.io/etcd/server/v3": "etcd"}),
        GoBuild("kube", {
            "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
            "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
            "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
        }, (f"-X {ver}.gitVersion={k8s}", f"-X {ver}.gitMajor={major}",
            f"-X {ver}.gitMinor={minor}", f"-X {ver}.gitTreeState=clean",
            f"-X {ver}.buildDate={epoch}"),
            {"k8s.io/kubernetes": "kubernetes"}),
        GoBuild("volcano", {
            "vc-scheduler": "volcano.sh/volcano/cmd/scheduler",
            "vc-controller-manager": "volcano.sh/volcano/cmd/controller-manager",
        }, (f"-X volcano.sh/volcano/pkg/version.Version={volcano}",
            f"-X volcano.sh/volcano/pkg/version.GitSHA={volcano}",
            f"-X volcano.sh/volcano/pkg/version.Built={epoch}"),
            {"volcano.sh/volcano": "volcano", "k8s.io/kubernetes": "kubernetes"}),
        GoBuild("training-operator", {
            "training-operator": "github.com/kubeflow/training-operator/cmd/training-operator.v1",
        }, (), {"github.com/kubeflow/training-operator": "training_operator"}),
        GoBuild("trainer", {
            "trainer-controller-manager": "github.com/kubeflow/trainer/v2/cmd/trainer-controller-manager",
        }, (), {"github.com/kubeflow/trainer/v2": "trainer", "sigs.k8s.io/jobset": "jobset"}),
        GoBuild("jobset", {"jobset-controller-manager": "sigs.k8s.io/jobset"},
                (f"-X sigs.k8s.io/jobset/pkg/version.GitVersion={versions.pin('jobset')}",),
                {"sigs.k8s.io/jobset": "jobset"}),
        GoBuild("kwok", {"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
                (f"-X sigs.k8s.io/kwok/pkg/consts.Version={versions.pin('kwok').lstrip('v')}",),
                {"sigs.k8s.io/kwok": "kwok"}),
    ]


BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
            "vc-scheduler", "vc-controller-manager", "kwok")
#: Built too, but started only on request (:mod:`helpers.backend.kwok.training_operator`,
#: :mod:`helpers.backend.kwok.trainer_v2`).
OPTIONAL_BINARIES = ("training-operator", "trainer-controller-manager", "jobset-controller-manager")


def go_binary() -> str:
    """Path of a usable ``go`` (>= :data:`MIN_GO`).

    Raises:
        BackendUnavailable: Go is missing or too old (the message is the skip reason).
    """
    go = shutil.which("go")
    if go is None:
        raise BackendUnavailable(
            "Go is not installed, so the local control plane cannot be built: install Go "
            f">= {MIN_GO[0]}.{MIN_GO[1]} (https://go.dev/doc/install), or use BACKEND=\"sim\"")
    out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=False)
    match = re.match(r"go(\d+)\.(\d+)", out.stdout.strip())
    if not match or (int(match[1]), int(match[2])) < MIN_GO:
        raise BackendUnavailable(
            f"{go} reports {out.stdout.strip() or out.stderr.strip()!r}; the control plane needs "
            f"Go >= {MIN_GO[0]}.{MIN_GO[1]}: upgrade Go, or use BACKEND=\"sim\"")
    return go


def _gomod_versions(gomod: Path) -> dict[str, str]:
    """Module -> effective version in a go.mod (a ``replace`` to a version wins)."""
    text = gomod.read_text()
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.split("//")[0].strip().removeprefix("require ").strip()
        if "=>" in line:
            left, right = (s.split() for s in line.split("=>"))
            if len(right) == 2 and left:
                found[left[0]] = right[1]
        elif re.match(r"^[\w.\-/]+ v\S+$", line):
            mod, ver = line.split()
            found.setdefault(mod, ver)
    return found


def check_pins() -> None:
    """Check every wrapper go.mod against cluster/versions.yaml.

    Raises:
        LabError: A go.mod requires a version other than the pin; names both and the fix.
    """
    problems = []
    for spec in go_builds():
        gomod = controlplane_dir() / spec.module / "go.mod"
        have = _gomod_versions(gomod)
        for module, key in spec.pins.items():
            want = "v" + versions.pin(key).lstrip("v")
            if have.get(module) != want:
                problems.append(f"{gomod.relative_to(paths.ROOT)} has {module} "
                                f"{have.get(module, 'missing')}, versions.yaml pins {key}: {want}")
    volcano_mod = controlplane_dir() / "volcano" / "go.mod"
    if "volcano.sh/apis => ../.work/volcano-apis" not in volcano_mod.read_text():
        problems.append(f"{volcano_mod.relative_to(paths.ROOT)} must replace volcano.sh/apis "
                        "with ../.work/volcano-apis (see prepare_volcano_apis)")
    if problems:
        raise LabError("the control-plane wrapper modules disagree with cluster/versions.yaml: "
                       + "; ".join(problems)
                       + ". Edit the go.mod (then `go mod tidy` in that folder) or the pin.")


def _go_env(go: str) -> dict[str, str]:
    env = dict(os.environ)
    # Never let `go` fetch a different toolchain: the one on PATH builds, or we say why not.
    env["GOTOOLCHAIN"] = "local"
    env.setdefault("GOFLAGS", "-mod=readonly")
    return env


def prepare_volcano_apis(go: str) -> Path:
    """Lay out the volcano.sh/apis copy that ``volcano/go.mod`` replaces the module with.

    Volcano >= 1.14 builds against an in-tree staging copy of volcano.sh/apis that its
    module zip omits, and volcano.sh/apis is not published at v1.15.x. The newest published
    release (pin ``volcano_apis``) lacks exactly one constant that Volcano v1.15 uses, so
    the build copies that release out of the Go module cache into ``.work/`` and adds
    ``volcano/overlay/queue_allocation_gate.go.in`` beside its sibling files. Nothing
    fetched is committed; the copy is rebuilt whenever the pin or the overlay changes.

    Returns:
        The prepared directory.
    """
    pin = versions.pin("volcano_apis")
    overlay = controlplane_dir() / "volcano" / "overlay" / "queue_allocation_gate.go.in"
    target = work_dir() / "volcano-apis"
    stamp = target / ".kflabs-stamp"
    want = f"{pin} {hashlib.sha256(overlay.read_bytes()).hexdigest()}"
    if stamp.is_file() and stamp.read_text() == want:
        return target
    proc = subprocess.run([go, "mod", "download", "-json", f"volcano.sh/apis@{pin}"],
                          cwd=work_dir().parent, capture_output=True, text=True,
                          env=_go_env(go), check=False)
    info = json.loads(proc.stdout or "{}") if proc.stdout.strip().startswith("{") else {}
    if proc.returncode != 0 or not info.get("Dir"):
        raise BackendUnavailable(
            f"could not download volcano.sh/apis@{pin} from the Go module proxy: "
            f"{info.get('Error') or proc.stderr.strip()[-400:]}")
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(info["Dir"], target)
    for p in [target, *target.rglob("*")]:  # the module cache is read-only; the copy must not be
        p.chmod(p.stat().st_mode | 0o200)
    shutil.copyfile(overlay, target / "pkg/apis/scheduling/v1beta1/zz_kflabs_queue_allocation_gate.go")
    stamp.write_text(want)
    return target


def _build_key(go: str, spec: GoBuild) -> str:
    folder = controlplane_dir() / spec.module
    goversion = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True,
                               check=False).stdout.strip()
    digest = hashlib.sha256(goversion.encode())
    for name in ("go.mod", "go.sum", "overlay/queue_allocation_gate.go.in"):
        if (folder / name).is_file():
            digest.update((folder / name).read_bytes())
    digest.update(json.dumps([spec.binaries, spec.ldflags]).encode())
    return digest.hexdigest()


def build(force: bool = False, log: Callable[[str], None] = print) -> dict[str, float]:
    """Build (or reuse) every control-plane binary into ``cluster/controlplane/.bin``.

    A module whose go.mod, go.sum, Go version and flags are unchanged since its last
    build is skipped outright; otherwise ``go build`` runs, warm from Go's build cache.

    Args:
        force: Rebuild even when the stamp says the binaries are current.
        log: Where progress lines go.

    Returns:
        Seconds spent per module (0.0 for a reused one).

    Raises:
        BackendUnavailable: Go is missing/too old, or a module failed to download or build
            (the message names the module and ends with the build log's tail).
    """
    go = go_binary()
    check_pins()
    bin_dir().mkdir(parents=True, exist_ok=True)
    logs = state_dir() / "build"
    logs.mkdir(parents=True, exist_ok=True)
    spent: dict[str, float] = {}
    for spec in go_builds():
        stamp = bin_dir() / f".{spec.module}.stamp"
        key = _build_key(go, spec)
        outputs = [bin_dir() / name for name in spec.binaries]
        if not force and stamp.is_file() and stamp.read_text() == key \
                and all(p.is_file() for p in outputs):
            spent[spec.module] = 0.0
            continue
        if spec.module == "volcano":
            prepare_volcano_apis(go)
        log(f"building {', '.join(spec.binaries)} (Go module {spec.module}; a cold build "
            "takes tens of minutes, a warm one a minute or two)")
        staging = bin_dir() / f".tmp-{spec.module}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        cmd = [go, "build", "-trimpath", "-ldflags", " ".join(("-s", "-w", *spec.ldflags)),
               "-o", str(staging) + os.sep, *spec.binaries.values()]
        start = time.perf_counter()
        logfile = logs / f"{spec.module}.log"
        with logfile.open("w") as out:
            proc = subprocess.run(cmd, cwd=controlplane_dir() / spec.module, stdout=out,
                                  stderr=subprocess.STDOUT, env=_go_env(go), check=False)
        spent[spec.module] = round(time.perf_counter() - start, 1)
        if proc.returncode != 0:
            raise BackendUnavailable(
                f"building Go module cluster/controlplane/{spec.module} failed "
                f"(exit {proc.returncode}); log {logfile}:\n{_tail(logfile)}")
        for name, package in spec.binaries.items():
            built = staging / _default_binary_name(package)
            built.replace(bin_dir() / name)
        shutil.rmtree(staging)
        stamp.write_text(key)
        log(f"built {', '.join(spec.binaries)} in {spent[spec.module]} s")
    return spent


def _default_binary_name(package: str) -> str:
    """The file name ``go build -o dir/`` gives a main package (drops a /vN suffix)."""
    parts = package.split("/")
    if re.fullmatch(r"v\d+", parts[-1]) and len(parts) > 1:
        return parts[-2]
    return parts[-1]


def binaries_present() -> bool:
    """True when every control-plane binary is in the cache folder."""
    return all((bin_dir() / name).is_file() for name in (*BINARIES, *OPTIONAL_BINARIES))


