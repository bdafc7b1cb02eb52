"""The kit's training image (``python -m helpers.train``), built from source and loaded into the
kind nodes (our machines reach no container registry).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from helpers import paths, versions
from helpers.kube.kubectl import require_tools, run
from helpers.kube.names import KIND_CLUSTER_NAME as CLUSTER_NAME

TRAINING_IMAGE_REPO = "kflabs-train"
# --------------------------------------------------------------------------- training image
def _image_sources() -> list[tuple[str, Path]]:
    root = paths.ROOT
    files = [(f"helpers/{p.relative_to(root / 'helpers').as_posix()}", p)
             for p in sorted((root / "helpers").rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".typed")]
    files += [(f"data/{p.name}", p) for p in sorted((root / "data").iterdir()) if p.is_file()]
    files += [("requirements.lock", root / "requirements.lock"),
              ("train.Dockerfile", root / "cluster" / "kind" / "train.Dockerfile")]
    return files


def training_image_tag() -> str:
    """``kflabs-train:<hash>``: a hash of everything that goes into the image.

    A change to the kit's code, data, lock or base image gives a new tag, so a node never
    runs a stale image that happens to share a tag (pods use ``imagePullPolicy: Never``).
    """
    digest = hashlib.sha256(versions.pin("training_python_image").encode())
    for rel, path in _image_sources():
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{TRAINING_IMAGE_REPO}:{digest.hexdigest()[:12]}"


def stage_training_context(dest: Path | None = None) -> Path:
    """Copy just the image's inputs into ``build/kind/train-context`` (not the whole repo).

    Sending the repository as the Docker build context would upload .venv and build/.
    """
    dest = dest or paths.build_dir() / "kind" / "train-context"
    if dest.exists():
        shutil.rmtree(dest)
    for rel, src in _image_sources():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    return dest


def ensure_training_image(cluster: str = CLUSTER_NAME) -> str:
    """Build the training image if this Docker lacks it, then load it into the kind nodes.

    Returns:
        The image reference, ``kflabs-train:<hash>``.
    """
    require_tools("docker", "kind")
    tag = training_image_tag()
    present = run(["docker", "image", "inspect", tag], timeout=60, check=False)
    if present.returncode != 0:
        context = stage_training_context()
        print(f"building the training image {tag} (first time: a few minutes)")
        run(["docker", "build", "-f", str(context / "train.Dockerfile"), "--build-arg",
             f"PYTHON_IMAGE={versions.pin('training_python_image')}", "-t", tag, str(context)],
            timeout=1800)
    # kind skips nodes that already hold this image ID, so a re-run is quick.
    run(["kind", "load", "docker-image", tag, "--name", cluster], timeout=900)
    return tag


