"""The maintainer's kind config: the learners' ``cluster/kind/kind-config.yaml`` plus what a
machine with a cgroup v1 host and locally built node images needs.

Derived at run time, never copied, so the feature gates, runtimeConfig, nodes and labels stay
those of the learners' file. Two changes:

* every node runs the locally built node image (:func:`.nodeimage.node_image_tag`, no digest);
* kubelet's ``failCgroupV1: false`` (KEP-5573: kubelet 1.35 refuses a cgroup v1 host
  otherwise; ours is cgroup v1 and cannot switch) as a cluster-wide ``kubeadmConfigPatches``
  entry. It is harmless on a cgroup v2 host. It never goes into the learners' file.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import yaml

from helpers import paths

#: The patch kind merges into every node's KubeletConfiguration.
KUBELET_PATCH = "kind: KubeletConfiguration\nfailCgroupV1: false\n"


def learner_config_path() -> Path:
    """``cluster/kind/kind-config.yaml``: the learners' config."""
    return paths.cluster_dir() / "kind" / "kind-config.yaml"


def derive_config(learner: dict, node_image: str) -> dict:
    """The maintainer config from the learners' (parsed) one; ``learner`` is not modified."""
    config = copy.deepcopy(learner)
    nodes = config.get("nodes") or []
    if not nodes:
        raise ValueError("the learners' kind config lists no nodes")
    for node in nodes:
        node["image"] = node_image
    patches = list(config.get("kubeadmConfigPatches") or [])
    if KUBELET_PATCH not in patches:
        patches.append(KUBELET_PATCH)
    config["kubeadmConfigPatches"] = patches
    return config


def write_config(node_image: str, dest: Path | None = None) -> Path:
    """Write the derived config to ``build/kind/maintainer-kind-config.yaml``; returns its path."""
    learner = yaml.safe_load(learner_config_path().read_text())
    dest = dest or paths.build_dir() / "kind" / "maintainer-kind-config.yaml"
    dest.parent.mkdir(parents=True, exist_ok=True)
    header = ("# Derived by helpers.backend.kind.maintainer.kindconfig from "
              "cluster/kind/kind-config.yaml: do not edit.\n")
    dest.write_text(header + yaml.safe_dump(derive_config(learner, node_image), sort_keys=False))
    return dest


def local_cluster() -> tuple[Path, str] | None:
    """(maintainer config, node image) when this Docker holds the node image built here.

    ``make cluster-images`` builds ``kindest/node:v<kubernetes>`` with a label of its inputs;
    a learner's machine has no such image, so its ``make cluster-up`` is unchanged (the
    digest-pinned image from versions.yaml and the learners' config).
    """
    from helpers.backend.kind.maintainer.base import image_label
    from helpers.backend.kind.maintainer.nodeimage import HASH_LABEL, node_image_tag

    image = node_image_tag()
    try:
        built_here = bool(image_label(image, HASH_LABEL))
    except (OSError, subprocess.SubprocessError):
        return None
    return (write_config(image), image) if built_here else None


def expected_kubernetes() -> str:
    """The kubelet version the kit's cluster runs here: ``v1.35.4`` on the node image built
    here (:func:`local_cluster`), else that of the learners' ``kind_node_image`` pin."""
    from helpers import versions
    from helpers.backend.kind.maintainer.base import image_label
    from helpers.backend.kind.maintainer.nodeimage import HASH_LABEL, node_image_tag

    try:
        built_here = bool(image_label(node_image_tag(), HASH_LABEL))
    except (OSError, subprocess.SubprocessError):
        built_here = False
    if built_here:
        return "v" + versions.pin("kubernetes").lstrip("v")
    return "v" + versions.pin("kind_node_image").split(":v")[1].split("@")[0]
