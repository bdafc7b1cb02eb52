"""Names and constants every backend and model agrees on, each written once.

Imports nothing but the standard library and :mod:`helpers.paths`, so the pure model
packages (``helpers.scheduling``, ``helpers.serving``) may use it without pulling in a client.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import paths

#: The extended resource standing in for GPUs (integers, no overcommit, requests = limits).
GPU_RESOURCE = "example.com/gpu"
#: kind cluster name (``kind create cluster --name``) and so its kubeconfig context.
KIND_CLUSTER_NAME = "kflabs"
KIND_CONTEXT = f"kind-{KIND_CLUSTER_NAME}"
#: The model volume, training job and InferenceService share one namespace (a PVC is only
#: mountable from its own namespace).
MODEL_NAMESPACE = "kflabs-serving"
#: The model volume's PersistentVolumeClaim (cluster/manifests/training/10-model-pvc.yaml).
MODEL_PVC = "model-store"
#: The least a cluster gets to make an InferenceService Ready: the first run pulls the
#: kserve-xgbserver image (about 1 GB) onto a laptop, which takes minutes, not seconds.
ISVC_READY_TIMEOUT = 300.0
#: A DNS-1123 label (namespaces, PVCs, most object names) and a DNS-1035 label (Services,
#: so InferenceService names): lower-case alphanumerics and '-', at most 63 characters.
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
#: A DNS-1123 subdomain (most other object names): labels joined by dots.
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
#: Field manager of every server-side apply the kit does.
FIELD_MANAGER = "kflabs"


def kwok_kubeconfig() -> Path:
    """Kubeconfig written by ``make controlplane-up`` (the kwok backend reads it from here)."""
    return paths.build_dir() / "controlplane" / "kubeconfig"


def is_dns1123_label(name: object) -> bool:
    """True for a valid DNS-1123 label (at most 63 characters)."""
    return isinstance(name, str) and len(name) <= 63 and bool(DNS1123_LABEL.match(name))
