"""What a scheduling run changes in the lab's manifests on kind, where the containers really run.

The lab pods (busybox) wait for their peers' DNS names, then sleep ``WORK_SECONDS`` and exit.
On kwok nothing runs and :mod:`helpers.backend.scheduling_run` completes the pods after
``WORK_SECONDS`` x ``time_scale``; on kind the same scale is given to the containers by
rewriting their ``WORK_SECONDS`` (:func:`scale_work_seconds`), so the chapter's 300 s of work
takes 6 s.
"""

from __future__ import annotations

import copy
import math
from typing import Any


def scale_work_seconds(doc: dict, time_scale: float) -> dict:
    """A copy of ``doc`` whose containers' ``WORK_SECONDS`` is scaled by ``time_scale``.

    Every ``containers`` list anywhere in the object (a Pod, a Job's or Deployment's template,
    each task of a Volcano Job) is changed; ``forever`` (a service) stays. The value becomes
    whole seconds, rounded up, at least 1, since busybox's ``sleep`` takes whole seconds.
    """
    out = copy.deepcopy(doc)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            containers = node.get("containers")
            for container in containers if isinstance(containers, list) else []:
                for var in container.get("env") or []:
                    value = var.get("value")
                    if var.get("name") == "WORK_SECONDS" and value not in (None, "forever"):
                        var["value"] = str(max(1, math.ceil(float(value) * time_scale)))
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(out)
    return out
