"""``make bench`` section ``controlplane``: the kwok control plane's start-up, memory and throughput."""

from __future__ import annotations

from helpers.backend.kwok.build import build
from helpers.backend.kwok.supervisor import down, peak_memory_mib, up
from helpers.errors import BackendUnavailable


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
        from helpers.backend.kwok import throughput

        out.update(throughput.throughput_comparison())
        mem = peak_memory_mib()
        out["peak_rss_mib"] = mem
        out["peak_rss_total_mib"] = round(sum(mem.values()), 1)
    finally:
        down(quiet=True)
    return out


