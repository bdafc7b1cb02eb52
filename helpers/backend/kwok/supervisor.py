"""The process supervisor: start etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
Volcano and kwok as ordinary processes bound to 127.0.0.1, await each, stop them all.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from helpers.backend.kwok import build as kwok_build
from helpers.backend.kwok import nodes as kwok_nodes
from helpers.backend.kwok import pki as kwok_pki
from helpers.backend.kwok.layout import (
    DEFAULT_PORT_BASE,
    PORT_BASE_ENV,
    PORT_OFFSETS,
    _tail,
    bin_dir,
    controlplane_dir,
    kubeconfig_path,
    state_dir,
)
from helpers.errors import BackendUnavailable, LabError
from helpers.kube import client as k8s

# --------------------------------------------------------------------------- processes


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
    """Each component's pid, port, whether it runs and how often :func:`revive` restarted it,
    from ``build/controlplane/pids.json``."""
    return {name: {"pid": e["pid"], "port": e["port"], "running": _alive(e),
                   "restarts": e.get("restarts", 0)}
            for name, e in _load_pids().items()}


def problems(patience: float = 0.0) -> list[str]:
    """Why the control plane is not (wholly) up: one entry per reason, empty when it is.

    Args:
        patience: Seconds to keep asking a running kube-apiserver's ``/readyz`` (a busy
            machine can miss one 2 s probe); a process that has exited is reported at once.

    A component recorded as started but no longer running is named with its pid and the
    last lines of its log (``build/controlplane/logs/<name>.log``): a scheduler that crashed
    part-way through a run shows why, instead of a pod that waits for nobody.
    """
    table = _load_pids()
    if not table:
        return ["the control plane is not running"]
    found = []
    missing = sorted(set(kwok_build.BINARIES) - set(table))
    if missing:
        found.append(f"never started: {', '.join(missing)}")
    for name, entry in table.items():
        if not _alive(entry):
            log = state_dir() / "logs" / f"{name}.log"
            found.append(f"{name} (pid {entry['pid']}) is no longer running; last lines of "
                         f"{log}:\n{_tail(log, 15)}")
    if found:
        return found
    pki = state_dir() / "pki" / "ca.crt"
    tokens = state_dir() / "tokens.csv"
    if not (pki.is_file() and tokens.is_file()):
        return [f"its credentials are missing ({pki}, {tokens})"]
    port = table["kube-apiserver"]["port"]
    context = ssl.create_default_context(cafile=str(pki))
    token = tokens.read_text().split(",", 1)[0]
    deadline = time.monotonic() + patience
    while not _http_ok(f"https://127.0.0.1:{port}/readyz", context, token=token):
        if time.monotonic() >= deadline:
            return [f"kube-apiserver on 127.0.0.1:{port} does not answer /readyz"
                    + (f" (tried for {patience:g} s)" if patience else "")]
        time.sleep(1)
    return []


def is_up() -> bool:
    """True when every component runs and the API server answers ``/readyz``."""
    return not problems()


def require_up() -> None:
    """Raise, saying what is down and how to start again, unless the control plane is up.

    A component that has exited is first restarted (:func:`revive`); a kube-apiserver slow
    to answer gets 20 s before it counts as down.

    Raises:
        BackendUnavailable: names each component that is not running, with its log tail.
    """
    revive()
    found = problems(patience=20)
    if found:
        raise BackendUnavailable("the control plane is not up: " + "\n".join(found)
                                 + "\nFix: `make controlplane-down`, then `make controlplane-up`.")


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


def _start(comp: Component, st: Path, table: dict[str, dict], append: bool = False) -> None:
    """Start one component, record it in ``table`` (and pids.json), wait until it is ready.

    Raises:
        BackendUnavailable: it exited or was not ready in time (with its log tail and port).
    """
    logfile = st / "logs" / f"{comp.name}.log"
    with logfile.open("a" if append else "w") as out:
        proc = subprocess.Popen(comp.argv, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=st, start_new_session=True)
    table[comp.name] = {"pid": proc.pid, "port": comp.port, "argv": comp.argv,
                        "restarts": table.get(comp.name, {}).get("restarts", 0) + append}
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


def revive(log: Callable[[str], None] = print) -> list[str]:
    """Restart each component that was started and has since exited, as a kubelet restarts a
    crashed static pod; the others are left alone.

    The restarted process gets the same command line and port, and appends to the same log,
    so the crash stays readable above the new start. Nothing happens when the control plane
    was never started (``make controlplane-up`` starts it) or when everything runs.

    Args:
        log: Gets one line per restart, naming the component and its log.

    Returns:
        The names of the components restarted (their ``restarts`` count in pids.json grows).

    Raises:
        BackendUnavailable: a component would not start again (with its log tail).
    """
    table = _load_pids()
    dead = [name for name, entry in table.items() if not _alive(entry)]
    tokens = state_dir() / "tokens.csv"
    if not dead or set(table) != set(kwok_build.BINARIES) or not tokens.is_file():
        return []
    p = ports()
    if any(p[name] != entry["port"] for name, entry in table.items()):
        return []  # started on another port base: not this process's control plane to touch
    st = state_dir()
    token = tokens.read_text().split(",", 1)[0]
    by_name = {c.name: c for c in _components(st, p, token)}
    for name in dead:  # in start order: etcd before kube-apiserver before the rest
        log(f"control plane: {name} had exited; restarting it (its log: "
            f"{st / 'logs' / (name + '.log')})")
        _start(by_name[name], st, table, append=True)
    return dead


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
        kwok_build.build(log=log)
    elif not kwok_build.binaries_present():
        raise BackendUnavailable(f"control-plane binaries missing in {bin_dir()}: run "
                                 "`make controlplane-up` (it builds them with Go)")
    st = state_dir()
    (st / "logs").mkdir(parents=True, exist_ok=True)
    pki = kwok_pki.write_pki(st / "pki")
    token = secrets.token_hex(24)
    (st / "tokens.csv").write_text(f'{token},kflabs-admin,kflabs-admin,"system:masters"\n')
    (st / "tokens.csv").chmod(0o600)
    kwok_pki.write_kubeconfig(kubeconfig_path(), f"https://127.0.0.1:{p['kube-apiserver']}",
                      pki["ca.crt"], token)
    table: dict[str, dict] = {}
    try:
        for comp in _components(st, p, token):
            if comp.name == "kube-controller-manager":
                kwok_nodes.install_volcano_crds(log)  # before any controller watches Volcano's kinds
            _start(comp, st, table)
            log(f"  {comp.name} ready on 127.0.0.1:{comp.port}")
    except BaseException:
        down(quiet=True)
        raise
    api = k8s.connect(str(kubeconfig_path()))
    k8s.wait_for_default_service_account(api, "default", timeout=60)
    if nodes:
        kwok_nodes.create_fake_nodes(api, nodes, node_gpus)
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


