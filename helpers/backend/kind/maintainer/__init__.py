"""Maintainer tools for running the kind path on machines with no container registry.

Not in a learner's path (learners pull kind's published node image and the add-ons' images):

* :mod:`.docker` - Docker on such a machine: Debian's ``docker.io``, the runc wrapper
  (:mod:`.runc_wrap`) that privileged containers need here, and ``dockerd`` started;
* :mod:`.base` - the Debian bookworm base image (``debootstrap`` + ``docker import``);
* :mod:`.kindbin` - the ``kind`` binary built from its module at the pin;
* :mod:`.nodeimage` - the kind node image for the pinned Kubernetes, from source;
* :mod:`.kindconfig` - the maintainer kind config derived from the learners' one.

Entry point: ``python -m helpers.backend.kind.maintainer`` (``make cluster-images``).
"""
