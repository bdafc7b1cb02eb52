"""The Docker-less control plane behind ``BACKEND="kwok"``: build it, start it, stop it.

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

No container ever runs, so only scheduling can be taught here; that is all the kit needs.
The Kubeflow Training Operator v1 is built too and started only on request
(:class:`training_operator`, used by the tests).

Command line (the Makefile's ``controlplane-up`` / ``controlplane-down`` call it)::

    python -m helpers.controlplane build|up|down|status [--nodes N --node-gpus G]

Files: binaries in ``cluster/controlplane/.bin/`` (ignored, reused while the go.mod, go.sum,
Go version and flags are unchanged); state, logs and the kubeconfig in
``build/controlplane/`` (:func:`helpers.backend.kwok_kubeconfig` reads it from there).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from helpers import paths, versions
from helpers.errors import BackendUnavailable, LabError, cli_errors
from helpers.processes import stop_group

#: Oldest Go that builds every pinned component (etcd 3.6.16 and kwok v0.8.0 say go 1.26).
MIN_GO = (1, 26)
#: Environment variable that moves every port of the control plane (default 26300).
PORT_BASE_ENV = "KFLABS_CONTROLPLANE_PORT_BASE"
DEFAULT_PORT_BASE = 26300
#: Offsets from the port base; each component binds only 127.0.0.1.
PORT_OFFSETS = {
    "etcd": 79,  # 26379, echoing etcd's own 2379
    "etcd-peer": 80,
    "kube-apiserver": 43,  # 26343
    "kube-controller-manager": 57,
    "kube-scheduler": 59,
    "vc-scheduler": 81,
    "vc-scheduler-metrics": 82,
    "vc-controller-manager": 83,
    "vc-controller-manager-metrics": 84,
    "kwok": 85,
}
#: Annotation that hands a Node to kwok.
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
#: Extended resource the labs make scarce.
GPU_RESOURCE = "example.com/gpu"
#: Pod annotation the kwok stages read: complete the pod this long after it runs.
RUN_FOR_ANNOTATION = "kflabs.example.com/run-for"


def controlplane_dir() -> Path:
    """``cluster/controlplane``: the Go wrapper modules and the components' configuration."""
    return paths.cluster_dir() / "controlplane"


def bin_dir() -> Path:
    """Where the built binaries are cached (ignored by git)."""
    return controlplane_dir() / ".bin"


def work_dir() -> Path:
    """Build-time scratch (ignored by git): the patched copy of volcano.sh/apis."""
    return controlplane_dir() / ".work"


def state_dir() -> Path:
    """Runtime state of a running control plane: certificates, logs, etcd data, kubeconfig."""
    return paths.build_dir() / "controlplane"


def kubeconfig_path() -> Path:
    """The kubeconfig ``up`` writes (the one ``helpers.backend`` uses for ``kwok``)."""
    return state_dir() / "kubeconfig"


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
    """The four wrapper modules, with version ldflags taken from cluster/versions.yaml."""
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
        GoBuild("kwok", {"kwok": "sigs.k8s.io/kwok/cmd/kwok"},
                (f"-X sigs.k8s.io/kwok/pkg/consts.Version={versions.pin('kwok').lstrip('v')}",),
                {"sigs.k8s.io/kwok": "kwok"}),
    ]


#: Kubernetes 1.35's Workload API (KEP-4671, alpha, off by default): the feature gates each
#: component needs for kube-scheduler's gang scheduling, and the API group to serve. The kind
#: config (cluster/kind/kind-config.yaml) switches on the same; a test checks they agree.
WORKLOAD_API_GATES = {"kube-apiserver": ("GenericWorkload",),
                      "kube-scheduler": ("GenericWorkload", "GangScheduling")}
WORKLOAD_API_GROUP = "scheduling.k8s.io/v1alpha1"


def workload_api_flags(component: str) -> list[str]:
    """Command-line flags that switch the Workload API on for ``component`` (may be [])."""
    gates = WORKLOAD_API_GATES.get(component, ())
    flags = [f"--feature-gates={','.join(f'{g}=true' for g in gates)}"] if gates else []
    if component == "kube-apiserver":
        flags.append(f"--runtime-config={WORKLOAD_API_GROUP}=true")
    return flags

BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler",
            "vc-scheduler", "vc-controller-manager", "kwok")
#: Built too, but started only on request (:func:`training_operator`).
OPTIONAL_BINARIES = ("training-operator",)


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


# --------------------------------------------------------------------------- certificates


def _write_pki(pki: Path) -> dict[str, Path]:
    """Create a CA, a serving certificate for 127.0.0.1 and a service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    pki.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc) - dt.timedelta(minutes=5)
    until = now + dt.timedelta(days=365)

    def key() -> rsa.RSAPrivateKey:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem_key(k: rsa.RSAPrivateKey) -> bytes:
        return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kflabs-local-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now).not_valid_after(until)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    import ipaddress

    srv_key = key()
    sans = [x509.DNSName(n) for n in ("localhost", "kubernetes", "kubernetes.default",
                                      "kubernetes.default.svc")]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    srv = (x509.CertificateBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
           .issuer_name(ca_name).public_key(srv_key.public_key())
           .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(until)
           .add_extension(x509.SubjectAlternativeName(sans), critical=False)
           .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                          critical=False)
           .sign(ca_key, hashes.SHA256()))
    sa_key = key()
    files = {
        "ca.crt": ca.public_bytes(serialization.Encoding.PEM),
        "apiserver.crt": srv.public_bytes(serialization.Encoding.PEM),
        "apiserver.key": pem_key(srv_key),
        "sa.key": pem_key(sa_key),
        "sa.pub": sa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo),
    }
    out = {}
    for name, data in files.items():
        (pki / name).write_bytes(data)
        (pki / name).chmod(0o600)
        out[name] = pki / name
    return out


def _write_kubeconfig(path: Path, server: str, ca: Path, token: str) -> None:
    cfg = {
        "apiVersion": "v1", "kind": "Config", "current-context": "kflabs-kwok",
        "clusters": [{"name": "kflabs-kwok", "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca.read_bytes()).decode()}}],
        "users": [{"name": "kflabs-admin", "user": {"token": token}}],
        "contexts": [{"name": "kflabs-kwok",
                      "context": {"cluster": "kflabs-kwok", "user": "kflabs-admin"}}],
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    path.chmod(0o600)


# --------------------------------------------------------------------------- processes


def ports() -> dict[str, int]:
    """Every loopback port the control plane uses (``$KFLABS_CONTROLPLANE_PORT_BASE`` moves them)."""
    raw = os.environ.get(PORT_BASE_ENV, str(DEFAULT_PORT_BASE))
    if not raw.isdigit() or not 1024 <= int(raw) <= 65000:
        raise LabError(f"{PORT_BASE_ENV}={raw!r} must be a number between 1024 and 65000")
    return {name: int(raw) + off for name, off in PORT_OFFSETS.items()}


def port_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _tail(path: Path, lines: int = 25) -> str:
    if not path.is_file():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(log is empty)"


@dataclass
class Component:
    """One process of the control plane and how to tell that it is ready."""

    name: str
    argv: list[str]
    port: int
    ready: Callable[[], bool]
    timeout: float = 60.0


def _http_ok(url: str, context: ssl.SSLContext | None = None, expect: str = "ok",
             token: str | None = None) -> bool:
    request = urllib.request.Request(url)  # noqa: S310 - http(s) on loopback, built here
    if token:
        # AlwaysAllow makes kube-apiserver turn anonymous access off: probes authenticate.
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=2, context=context) as resp:  # noqa: S310 - loopback
            return resp.status == 200 and expect in resp.read().decode(errors="replace")
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _insecure() -> ssl.SSLContext:
    # Schedulers and controller managers serve /healthz with a certificate they generate in
    # memory at start; nothing can verify it, and the probe carries no secret.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _components(st: Path, p: dict[str, int], token: str) -> list[Component]:
    b = bin_dir()
    pki = st / "pki"
    kc = str(st / "kubeconfig")
    conf = controlplane_dir() / "config"
    verified = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    api = f"https://127.0.0.1:{p['kube-apiserver']}"
    common_auth = [f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
                   f"--authorization-kubeconfig={kc}", "--leader-elect=false",
                   "--bind-address=127.0.0.1"]
    return [
        Component("etcd", [
            str(b / "etcd"), "--name=kflabs", f"--data-dir={st / 'etcd-data'}",
            f"--listen-client-urls=http://127.0.0.1:{p['etcd']}",
            f"--advertise-client-urls=http://127.0.0.1:{p['etcd']}",
            f"--listen-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{p['etcd-peer']}",
            f"--initial-cluster=kflabs=http://127.0.0.1:{p['etcd-peer']}",
            "--log-level=warn", "--quota-backend-bytes=1073741824",
            # The data is thrown away at `down`; syncing every write to disk buys nothing.
            "--unsafe-no-fsync",
        ], p["etcd"], lambda: _http_ok(f"http://127.0.0.1:{p['etcd']}/health", expect="true")),
        Component("kube-apiserver", [
            str(b / "kube-apiserver"), f"--etcd-servers=http://127.0.0.1:{p['etcd']}",
            *workload_api_flags("kube-apiserver"),
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
            f"--secure-port={p['kube-apiserver']}",
            # No kubelets and no real Service network: the `kubernetes` Service's endpoint
            # would be a loopback address, which validation rejects, so don't reconcile it.
            "--endpoint-reconciler-type=none",
            f"--tls-cert-file={pki / 'apiserver.crt'}", f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-cluster-ip-range=10.96.0.0/16",
            "--authorization-mode=AlwaysAllow", f"--token-auth-file={st / 'tokens.csv'}",
            "--enable-priority-and-fairness=false", "--profiling=false",
            "--allow-privileged=true",
        ], p["kube-apiserver"], lambda: _http_ok(f"{api}/readyz", verified, token=token),
            timeout=90),
        Component("kube-controller-manager", [
            str(b / "kube-controller-manager"), *common_auth,
            f"--secure-port={p['kube-controller-manager']}",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}", "--use-service-account-credentials=false",
            # The node lifecycle controller must run: it lifts the not-ready taint a new
            # Node is created with. A generous grace period keeps a late kwok heartbeat on
            # a busy machine from tainting (and evicting) a fake node.
            "--node-monitor-grace-period=2m",
            "--controllers=*,-service-lb-controller,-node-route-controller,"
            "-cloud-node-lifecycle-controller",
        ], p["kube-controller-manager"],
            lambda: _http_ok(f"https://127.0.0.1:{p['kube-controller-manager']}/healthz", _insecure())),
        Component("kube-scheduler", [
            str(b / "kube-scheduler"), *common_auth, f"--secure-port={p['kube-scheduler']}",
            *workload_api_flags("kube-scheduler"),
        ], p["kube-scheduler"],
            lambda: _http_ok(f"https://127.0.0.1:{p['kube-scheduler']}/healthz", _insecure())),
        Component("vc-scheduler", [
            str(b / "vc-scheduler"), f"--kubeconfig={kc}", "--leader-elect=false",
            f"--scheduler-conf={conf / 'volcano-scheduler.conf'}",
            "--enable-healthz", f"--healthz-address=127.0.0.1:{p['vc-scheduler']}",
            f"--listen-address=127.0.0.1:{p['vc-scheduler-metrics']}",
            f"--cache-dump-dir={st}", "--logtostderr=true", "-v=2",
        ], p["vc-scheduler"], lambda: _http_ok(f"http://127.0.0.1:{p['vc-scheduler']}/healthz")),
        Component("vc-controller-manager", [
            str(b / "vc-controller-manager"), f"--kubeconfig={kc}", "--leader-elect=false",
            "--enable-healthz", f"--healthz-address=127.0.0.1:{p['vc-controller-manager']}",
            f"--listen-address=127.0.0.1:{p['vc-controller-manager-metrics']}",
            "--logtostderr=true", "-v=2",
        ], p["vc-controller-manager"],
            lambda: _http_ok(f"http://127.0.0.1:{p['vc-controller-manager']}/healthz")),
        Component("kwok", [
            str(b / "kwok"), f"--kubeconfig={kc}", f"--config={conf / 'kwok-stages.yaml'}",
            f"--server-address=127.0.0.1:{p['kwok']}",
        ], p["kwok"], lambda: _http_ok(f"http://127.0.0.1:{p['kwok']}/healthz")),
    ]


def _load_pids() -> dict[str, dict]:
    f = state_dir() / "pids.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def _save_pids(table: dict[str, dict]) -> None:
    (state_dir() / "pids.json").write_text(json.dumps(table, indent=1))


def _alive(entry: dict) -> bool:
    """True when the recorded pid still runs the binary we started (not a recycled pid)."""
    try:
        exe = os.readlink(f"/proc/{entry['pid']}/exe")
    except OSError:
        return False
    return Path(exe.removesuffix(" (deleted)")).name == Path(entry["argv"][0]).name


def status() -> dict[str, dict]:
    """Each component's pid, port and whether it runs, from ``build/controlplane/pids.json``."""
    return {name: {"pid": e["pid"], "port": e["port"], "running": _alive(e)}
            for name, e in _load_pids().items()}


def is_up() -> bool:
    """True when every component runs and the API server answers ``/readyz``."""
    table = _load_pids()
    if set(table) != {c for c in BINARIES} or not all(_alive(e) for e in table.values()):
        return False
    pki = state_dir() / "pki" / "ca.crt"
    tokens = state_dir() / "tokens.csv"
    if not (pki.is_file() and tokens.is_file()):
        return False
    return _http_ok(f"https://127.0.0.1:{table['kube-apiserver']['port']}/readyz",
                    ssl.create_default_context(cafile=str(pki)),
                    token=tokens.read_text().split(",", 1)[0])


def down(quiet: bool = False) -> list[str]:
    """Stop every component this kit started and delete the etcd data. Safe to run twice.

    Args:
        quiet: Print nothing.

    Returns:
        Names of the components that were stopped.
    """
    table = _load_pids()
    stopped = []
    for name in reversed(list(table)):
        entry = table[name]
        if not _alive(entry):
            continue
        try:
            os.killpg(entry["pid"], signal.SIGTERM)
        except ProcessLookupError:
            continue
        stopped.append(name)
    deadline = time.monotonic() + 15
    for name in stopped:
        entry = table[name]
        while _alive(entry) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(entry):
            os.killpg(entry["pid"], signal.SIGKILL)
    for name in stopped:  # reap the ones this very process started (in tests)
        try:
            os.waitpid(table[name]["pid"], os.WNOHANG)
        except ChildProcessError:
            pass
    (state_dir() / "pids.json").unlink(missing_ok=True)
    shutil.rmtree(state_dir() / "etcd-data", ignore_errors=True)
    if not quiet:
        print(f"control plane stopped ({', '.join(stopped) or 'nothing was running'})")
    return stopped


def up(nodes: int = 4, node_gpus: int = 2, *, build_first: bool = True,
       log: Callable[[str], None] = print) -> dict:
    """Start the control plane (building it first if needed) and create fake nodes.

    Idempotent: when everything already runs, it only checks and returns.

    Args:
        nodes: Fake nodes to create (0 for none; scheduling runs create their own).
        node_gpus: ``example.com/gpu`` capacity of each fake node.
        build_first: Build or reuse the binaries first.
        log: Where progress lines go.

    Returns:
        ``{"kubeconfig", "seconds", "already_running", "components": {name: port}}``.

    Raises:
        BackendUnavailable: Go missing, a build failed, a port is taken by another program,
            or a component did not become ready (with its log tail and the port it wanted).
    """
    start = time.perf_counter()
    if is_up():
        return {"kubeconfig": str(kubeconfig_path()), "seconds": 0.0, "already_running": True,
                "components": {n: e["port"] for n, e in _load_pids().items()}}
    down(quiet=True)  # a half-started earlier attempt must not hold ports or data
    p = ports()
    taken = [f"{name} 127.0.0.1:{port}" for name, port in p.items() if not port_free(port)]
    if taken:
        raise BackendUnavailable(
            "ports needed by the control plane are in use by another program: "
            + ", ".join(taken) + f". Stop that program, or move every port with "
            f"{PORT_BASE_ENV}=<base> (now {p['kube-apiserver'] - PORT_OFFSETS['kube-apiserver']}).")
    if build_first:
        build(log=log)
    elif not binaries_present():
        raise BackendUnavailable(f"control-plane binaries missing in {bin_dir()}: run "
                                 "`make controlplane-up` (it builds them with Go)")
    st = state_dir()
    (st / "logs").mkdir(parents=True, exist_ok=True)
    pki = _write_pki(st / "pki")
    token = secrets.token_hex(24)
    (st / "tokens.csv").write_text(f'{token},kflabs-admin,kflabs-admin,"system:masters"\n')
    (st / "tokens.csv").chmod(0o600)
    _write_kubeconfig(kubeconfig_path(), f"https://127.0.0.1:{p['kube-apiserver']}",
                      pki["ca.crt"], token)
    table: dict[str, dict] = {}
    try:
        for comp in _components(st, p, token):
            if comp.name == "kube-controller-manager":
                _install_volcano_crds(log)  # before any controller watches Volcano's kinds
            logfile = st / "logs" / f"{comp.name}.log"
            with logfile.open("w") as out:
                proc = subprocess.Popen(comp.argv, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, cwd=st,
                                        start_new_session=True)
            table[comp.name] = {"pid": proc.pid, "port": comp.port, "argv": comp.argv}
            _save_pids(table)
            deadline = time.monotonic() + comp.timeout
            while not comp.ready():
                if proc.poll() is not None or time.monotonic() > deadline:
                    why = (f"exited with status {proc.returncode}" if proc.poll() is not None
                           else f"was not ready after {comp.timeout:.0f} s")
                    raise BackendUnavailable(
                        f"{comp.name} {why} (it wanted 127.0.0.1:{comp.port}); "
                        f"last lines of {logfile}:\n{_tail(logfile)}")
                time.sleep(0.2)
            log(f"  {comp.name} ready on 127.0.0.1:{comp.port}")
    except BaseException:
        down(quiet=True)
        raise
    from helpers import k8s

    api = k8s.connect(str(kubeconfig_path()))
    k8s.wait_for_default_service_account(api, "default", timeout=60)
    if nodes:
        create_fake_nodes(api, nodes, node_gpus)
    seconds = round(time.perf_counter() - start, 2)
    log(f"control plane up in {seconds} s; kubeconfig {kubeconfig_path()}")
    return {"kubeconfig": str(kubeconfig_path()), "seconds": seconds, "already_running": False,
            "components": {n: e["port"] for n, e in table.items()}}


def pause(name: str) -> None:
    """Freeze one running component (SIGSTOP), e.g. a scheduler while a bench creates pods."""
    os.kill(_running(name)["pid"], signal.SIGSTOP)


def resume(name: str) -> None:
    """Let a component paused by :func:`pause` continue (SIGCONT)."""
    os.kill(_running(name)["pid"], signal.SIGCONT)


def _running(name: str) -> dict:
    entry = _load_pids().get(name)
    if entry is None or not _alive(entry):
        raise BackendUnavailable(f"{name} is not running: start the control plane with "
                                 "`make controlplane-up`")
    return entry


def peak_memory_mib() -> dict[str, float]:
    """Peak resident memory (VmHWM) of each running component, in MiB (Linux only)."""
    out = {}
    for name, entry in _load_pids().items():
        try:
            text = Path(f"/proc/{entry['pid']}/status").read_text()
        except OSError:
            continue
        match = re.search(r"VmHWM:\s+(\d+) kB", text)
        if match:
            out[name] = round(int(match[1]) / 1024, 1)
    return out


# --------------------------------------------------------------------------- cluster content


def volcano_crd_files() -> list[Path]:
    """Volcano's CRDs in the Go module cache, at the pin.

    Both ``config/crd/volcano/bases`` and ``config/crd/jobflow/bases``: vc-controller-manager
    watches JobFlows and JobTemplates too, and waits for those informers before its queue
    controller opens any Queue (without them no PodGroup is ever enqueued).

    Raises:
        BackendUnavailable: Go is missing or the module cannot be downloaded.
    """
    root = module_dir("volcano.sh/volcano", versions.pin("volcano")) / "config/crd"
    return sorted([*(root / "volcano/bases").glob("*.yaml"), *(root / "jobflow/bases").glob("*.yaml")])


def module_dir(module: str, version: str) -> Path:
    """Download ``module@version`` into the Go module cache (if needed); return its folder.

    Used to take upstream CRDs at test time rather than committing them.

    Raises:
        BackendUnavailable: Go is missing, or the proxy does not serve that version.
    """
    go = go_binary()
    proc = subprocess.run([go, "mod", "download", "-json", f"{module}@{version}"],
                          cwd=paths.build_dir() if paths.build_dir().is_dir() else paths.ROOT,
                          capture_output=True, text=True, env=_go_env(go), check=False)
    info = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    if proc.returncode != 0 or not info.get("Dir"):
        raise BackendUnavailable(f"could not download Go module {module}@{version}: "
                                 f"{info.get('Error') or proc.stderr.strip()[-300:]}")
    return Path(info["Dir"])


def _install_volcano_crds(log: Callable[[str], None]) -> None:
    from helpers import k8s

    api = k8s.connect(str(kubeconfig_path()))
    names = k8s.apply_crds(api, volcano_crd_files())
    log(f"  Volcano CRDs established: {len(names)}")


def fake_node(name: str, gpus: int, cpu: str = "32", memory: str = "256Gi",
              pods: int = 110) -> dict:
    """A Node object kwok will manage, with ``example.com/gpu`` capacity.

    Args:
        name: Node name.
        gpus: Whole ``example.com/gpu`` units (an extended resource: integers, no overcommit).
        cpu: CPU capacity (plenty by default: GPUs are the scarce resource in the labs).
        memory: Memory capacity.
        pods: Pod capacity.
    """
    res = {"cpu": cpu, "memory": memory, "pods": str(pods), GPU_RESOURCE: str(gpus)}
    key, value = FAKE_NODE_ANNOTATION
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "annotations": {key: value},
                     "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                                "type": "kwok"}},
        "status": {"capacity": res, "allocatable": dict(res)},
    }


def create_fake_nodes(api, count: int, gpus: int, *, prefix: str = "kwok-node",
                      cpu: str = "32", memory: str = "256Gi", wait: float = 60) -> list[str]:
    """Replace every fake node with ``count`` fresh ones and wait until they are Ready.

    Args:
        api: A kubernetes ``ApiClient`` (see :func:`helpers.k8s.connect`).
        count: Number of nodes.
        gpus: ``example.com/gpu`` per node.
        prefix: Node names are ``<prefix>-<i>``.
        cpu: CPU capacity per node.
        memory: Memory capacity per node.
        wait: Seconds to wait for kwok to report them Ready.

    Returns:
        The node names.
    """
    from helpers import k8s

    delete_fake_nodes(api)
    names = [f"{prefix}-{i}" for i in range(count)]
    for name in names:
        add_fake_node(api, fake_node(name, gpus, cpu=cpu, memory=memory))
    k8s.wait_nodes_ready(api, names, timeout=wait)
    return names


def add_fake_node(api, node: dict) -> None:
    """Create one Node from :func:`fake_node` and set its capacity on the status subresource.

    The capacity is written twice on purpose: a create keeps it today, but status belongs to
    the status subresource, which is where kind nodes get their GPUs patched too.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    try:
        core.create_node(node)
    except ApiException as exc:
        if exc.status != 409:
            raise
    core.patch_node_status(node["metadata"]["name"], {"status": node["status"]})


def delete_fake_nodes(api) -> None:
    """Delete every Node carrying kwok's annotation (others are left alone)."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    key, value = FAKE_NODE_ANNOTATION
    for node in core.list_node().items:
        if (node.metadata.annotations or {}).get(key) == value:
            core.delete_node(node.metadata.name, grace_period_seconds=0)


# --------------------------------------------------------------------------- Training Operator

#: Network namespace the Training Operator runs in, and its webhook configuration's name.
TRAINING_OPERATOR_NETNS = "kflabs-training-operator"
TRAINING_OPERATOR_WEBHOOK = "validator.training-operator.kubeflow.org"


def _libc_setns(fd: int) -> None:
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _listen_in_netns(netns: str, port: int) -> socket.socket:
    """A listening socket on 127.0.0.1:``port`` *inside* network namespace ``netns``.

    Only the short-lived helper thread enters the namespace; a socket keeps the namespace it
    was created in, so the caller can accept on it from the host namespace.
    """
    import threading

    box: dict[str, object] = {}

    def enter_and_listen() -> None:
        try:
            with open(f"/var/run/netns/{netns}") as ns:  # noqa: PTH123 - a namespace handle
                _libc_setns(ns.fileno())
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", port))
            sock.listen(16)
            box["sock"] = sock
        except OSError as exc:
            box["error"] = exc

    worker = threading.Thread(target=enter_and_listen)
    worker.start()
    worker.join()
    if "error" in box:
        raise BackendUnavailable(f"could not listen inside network namespace {netns}: {box['error']}")
    return box["sock"]  # type: ignore[return-value]


def _forward(listener: socket.socket, port: int, stop) -> None:
    """Relay every connection accepted on ``listener`` to the host's 127.0.0.1:``port``."""
    import threading

    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass  # the other direction closed the pair; nothing left to relay
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # already closed

    listener.settimeout(0.5)
    while not stop.is_set():
        try:
            inner, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError:
            return
        try:
            outer = socket.create_connection(("127.0.0.1", port), timeout=10)
            outer.settimeout(None)
        except OSError:
            inner.close()  # the client sees a reset and retries; keep accepting the next one
            continue
        for a, b in ((inner, outer), (outer, inner)):
            threading.Thread(target=pump, args=(a, b), daemon=True).start()


def _run_ip(*args: str) -> subprocess.CompletedProcess:
    ip = shutil.which("ip")
    if ip is None:
        raise BackendUnavailable("the Training Operator check needs `ip` (iproute2) to make a "
                                 "network namespace: apt-get install iproute2")
    return subprocess.run([ip, *args], capture_output=True, text=True, check=False)


class training_operator:  # noqa: N801 - used as a context manager, like open()
    """Run the Kubeflow Training Operator v1 against the control plane, as a context manager.

    Started with ``--gang-scheduler-name=volcano --enable-scheme=xgboostjob`` (the setting the
    chapter's Kubeflow install needs). Its webhook server listens on every interface and has
    no flag to change that, so it runs in a network namespace of its own whose only
    interface is loopback; a relay in this process carries its API calls to the host's
    kube-apiserver. Its validating webhook is registered with ``failurePolicy: Ignore``
    (the API server cannot reach into the namespace; the operator still injects its CA).
    Needs root (``ip netns``).

    Example::

        with controlplane.training_operator(api):
            k8s.apply(api, xgboostjob)   # -> PodGroup + gang-scheduled pods
    """

    def __init__(self, api, timeout: float = 90):
        """Args: api: an ``ApiClient`` for the running control plane; timeout: start bound."""
        self.api = api
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.listener: socket.socket | None = None
        self.stop = None
        self.log = state_dir() / "logs" / "training-operator.log"

    def __enter__(self):
        """Create the namespace, relay, webhook configuration; start and await the operator."""
        import threading

        from helpers import k8s

        binary = bin_dir() / "training-operator"
        if not binary.is_file():
            raise BackendUnavailable(f"{binary} is missing: run `python -m helpers.controlplane build`")
        if not is_up():
            raise BackendUnavailable("the control plane is not running: `make controlplane-up`")
        port = _load_pids()["kube-apiserver"]["port"]
        _run_ip("netns", "delete", TRAINING_OPERATOR_NETNS)  # a leftover from a killed run
        made = _run_ip("netns", "add", TRAINING_OPERATOR_NETNS)
        if made.returncode != 0:
            raise BackendUnavailable(f"could not create network namespace "
                                     f"{TRAINING_OPERATOR_NETNS}: {made.stderr.strip()}")
        try:
            _run_ip("netns", "exec", TRAINING_OPERATOR_NETNS, "ip", "link", "set", "lo", "up")
            self.listener = _listen_in_netns(TRAINING_OPERATOR_NETNS, port)
            self.stop = threading.Event()
            threading.Thread(target=_forward, args=(self.listener, port, self.stop),
                             daemon=True).start()
            k8s.apply(self.api, {"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "kubeflow"}})
            k8s.apply(self.api, _operator_webhook_configuration())
            # The operator's install ships this Secret empty; its cert rotator fills it.
            k8s.apply(self.api, {"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": "training-operator-webhook-cert",
                                              "namespace": "kubeflow"}})
            env = {**os.environ, "MY_POD_NAMESPACE": "kubeflow"}
            with self.log.open("w") as out:
                self.proc = subprocess.Popen(
                    [shutil.which("ip") or "ip", "netns", "exec", TRAINING_OPERATOR_NETNS,
                     str(binary), f"--kubeconfig={kubeconfig_path()}",
                     "--gang-scheduler-name=volcano", "--enable-scheme=xgboostjob",
                     "--leader-elect=false", "--metrics-bind-address=0",
                     "--health-probe-bind-address=127.0.0.1:18081"],
                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                    start_new_session=True)
            deadline = time.monotonic() + self.timeout
            while not self.workers_started():
                _mount_operator_certs(self.api)
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BackendUnavailable(
                        f"the Training Operator did not start (inside network namespace "
                        f"{TRAINING_OPERATOR_NETNS}); last lines of {self.log}:\n{_tail(self.log)}")
                time.sleep(0.5)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def workers_started(self) -> bool:
        """True once the XGBoostJob controller (not just the manager) has started its workers.

        The operator registers its job controllers only after its certificates are in place,
        so this line is the first moment a new XGBoostJob is reconciled.
        """
        if not self.log.is_file():
            return False
        return any("Starting workers" in line and "xgboostjob-controller" in line
                   for line in self.log.read_text(errors="replace").splitlines())

    def diagnose(self, lines: int = 30) -> str:
        """Whether the operator still runs, and the last ``lines`` of its log (for a failed wait)."""
        state = ("running" if self.proc is not None and self.proc.poll() is None
                 else f"exited with code {self.proc.returncode}" if self.proc is not None
                 else "never started")
        return f"-- Training Operator: {state}; last lines of {self.log}:\n{_tail(self.log, lines)}"

    def __exit__(self, *exc) -> None:
        """Stop the operator and the relay; remove the namespace and the webhook configuration."""
        from helpers import k8s

        if self.proc is not None:
            stop_group(self.proc, grace=15)
        if self.stop is not None:
            self.stop.set()
        if self.listener is not None:
            self.listener.close()
        _run_ip("netns", "delete", TRAINING_OPERATOR_NETNS)
        k8s.delete(self.api, _operator_webhook_configuration())
        # the operator's cert rotator writes its serving certificate here; leave nothing behind
        shutil.rmtree(OPERATOR_CERT_DIR, ignore_errors=True)
        with contextlib.suppress(OSError):  # its parent too, unless something else uses it
            OPERATOR_CERT_DIR.parent.rmdir()


OPERATOR_CERT_DIR = Path("/tmp/k8s-webhook-server/serving-certs")  # noqa: S108 - its fixed path


def _mount_operator_certs(api) -> None:
    """Play the kubelet's part: put the operator's cert Secret where it waits for it.

    In a cluster the Secret is mounted at the operator's fixed certificate folder; its cert
    rotator fills the Secret and then waits (forever) for the files to appear there.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        secret = client.CoreV1Api(api).read_namespaced_secret(
            "training-operator-webhook-cert", "kubeflow")
    except ApiException as exc:
        if exc.status == 404:
            return
        raise
    data = secret.data or {}
    if not {"tls.crt", "tls.key"} <= set(data):
        return
    OPERATOR_CERT_DIR.mkdir(parents=True, exist_ok=True)
    for name, value in data.items():
        target = OPERATOR_CERT_DIR / name
        target.write_bytes(base64.b64decode(value))
        target.chmod(0o600)


def _operator_webhook_configuration() -> dict:
    """The webhook configuration the operator's cert rotator injects its CA into."""
    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": TRAINING_OPERATOR_WEBHOOK},
        "webhooks": [{
            "name": "validate-xgboostjob.kubeflow.org", "failurePolicy": "Ignore",
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "timeoutSeconds": 2,
            "clientConfig": {"service": {"name": "training-operator", "namespace": "kubeflow",
                                         "path": "/validate-kubeflow-org-v1-xgboostjob"}},
            "rules": [{"apiGroups": ["kubeflow.org"], "apiVersions": ["v1"],
                       "operations": ["CREATE", "UPDATE"], "resources": ["xgboostjobs"]}],
        }],
    }


# --------------------------------------------------------------------------- bench


def bench() -> dict:
    """``make bench`` section: start-to-ready time, peak memory, pods/s real vs model.

    Skips (returns the reason) where Go is missing. Builds first (not timed), stops any
    running control plane, then times a cold start; then runs the 1,000-node scenario on
    both real schedulers and on the model and reports scheduling throughput as a ratio.
    """
    try:
        build(log=lambda _m: None)
    except BackendUnavailable as exc:
        return {"skipped": str(exc)}
    down(quiet=True)
    try:
        info = up(nodes=0, build_first=False, log=lambda _m: None)
        out: dict = {"start_to_ready_seconds": info["seconds"],
                     "rss_after_start_mib": round(sum(peak_memory_mib().values()), 1)}
        from helpers.scheduling import cluster_run

        out.update(cluster_run.throughput_comparison())
        mem = peak_memory_mib()
        out["peak_rss_mib"] = mem
        out["peak_rss_total_mib"] = round(sum(mem.values()), 1)
    finally:
        down(quiet=True)
    return out


# --------------------------------------------------------------------------- CLI


@cli_errors
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helpers.controlplane build|up|down|status``."""
    parser = argparse.ArgumentParser(prog="python -m helpers.controlplane",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["build", "up", "down", "status"])
    parser.add_argument("--nodes", type=int, default=4, help="fake nodes to create (up)")
    parser.add_argument("--node-gpus", type=int, default=2, help="example.com/gpu per node")
    parser.add_argument("--force", action="store_true", help="rebuild even if cached (build)")
    parser.add_argument("--if-go", action="store_true",
                        help="build: without Go (or on a failed build) say why and exit 0, so "
                             "`make test` goes on and the kwok tests skip or report it")
    args = parser.parse_args(argv)
    if args.nodes < 0 or args.node_gpus < 0:
        raise LabError("--nodes and --node-gpus must be >= 0")
    if args.command == "build":
        try:
            spent = build(force=args.force)
        except BackendUnavailable as exc:
            if not args.if_go:
                raise
            print(f"control plane not built: {exc}\n(tests marked kwok will skip or report "
                  "this)", file=sys.stderr)
            return 0
        print(f"binaries in {bin_dir()}: " + ", ".join(
            f"{m} {'reused' if s == 0 else f'{s} s'}" for m, s in spent.items()))
    elif args.command == "up":
        info = up(args.nodes, args.node_gpus)
        if info["already_running"]:
            print(f"control plane already running; kubeconfig {info['kubeconfig']}")
        print(f'use it with BACKEND="kwok" (or KUBECONFIG={info["kubeconfig"]} kubectl ...)')
    elif args.command == "down":
        down()
    else:
        table = status()
        if not table:
            print("control plane not running")
        for name, entry in table.items():
            state = "running" if entry["running"] else "stopped"
            print(f"{name:24} {state:8} pid {entry['pid']:>7}  127.0.0.1:{entry['port']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
