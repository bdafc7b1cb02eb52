"""Where the Docker-less control plane keeps its files and which ports it binds.

Binaries in ``cluster/controlplane/.bin/`` (ignored, reused while the go.mod, go.sum, Go version and
flags are unchanged); state, logs and the kubeconfig in ``build/controlplane/``.
"""

from __future__ import annotations

from pathlib import Path

from helpers import paths
from helpers.kube.names import GPU_RESOURCE, kwok_kubeconfig  # noqa: F401 - re-exported

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
    # started only on request (helpers.backend.kwok.trainer_v2)
    "jobset-webhook": 86,
    "jobset-health": 87,
    "trainer-webhook": 88,
    "trainer-health": 89,
}
#: Annotation that hands a Node to kwok.
FAKE_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
#: Pod annotation the kwok stages read: complete the running pod at this RFC 3339 time.
RUN_UNTIL_ANNOTATION = "kflabs.example.com/run-until"


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
    return kwok_kubeconfig()

def _tail(path: Path, lines: int = 25) -> str:
    if not path.is_file():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:]) or "(log is empty)"
