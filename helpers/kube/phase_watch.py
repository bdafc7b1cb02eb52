"""Every phase a Volcano object passes through, even the short ones a poll misses.

:mod:`helpers.backend.scheduling_run` polls the cluster a few times a second and stamps
what it sees with its own clock, so pods and PodGroups share one causal time line: a pod
first seen in a poll was created after the PodGroup phase that same poll (or an earlier
one) saw. A poll can miss a phase that lasts less than one poll, though: a PodGroup is
``Pending`` only until the next Volcano scheduling session (at most one second, often a few
milliseconds), so a loaded machine sees ``Inqueue`` first.

A watch misses nothing: the API server sends every change in order. So a
:class:`PhaseWatch` thread records each object's complete phase sequence, and a
:class:`PhaseTrail` per object merges it into the poll's record: when a poll sees a phase,
the phases the watch saw before it that the poll missed are recorded first, at the same
poll time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field


def podgroup_phase(obj: dict) -> str | None:
    """A PodGroup's phase; a PodGroup without a status yet is ``Pending``."""
    return (obj.get("status") or {}).get("phase") or "Pending"


def vcjob_phase(obj: dict) -> str | None:
    """A Volcano Job's phase, or None before vc-controller-manager has set one."""
    return ((obj.get("status") or {}).get("state") or {}).get("phase") or None


class PhaseWatch:
    """A background watch that records the phase sequence of every object of one kind.

    Args:
        api: An ``ApiClient``; the watch uses its own client on the same configuration, so
            its long-lived request never takes a connection from the caller's pool.
        group, version, plural: The custom resource to watch, cluster-wide.
        phase_of: Reads an object's phase (None: no phase yet).

    Use :meth:`start` and :meth:`stop` (or ``with``). If the watch cannot run (no such
    resource, no permission), :meth:`phases` returns empty lists and :attr:`error` says why:
    callers then rely on their poll alone.
    """

    def __init__(self, api, group: str, version: str, plural: str,
                 phase_of: Callable[[dict], str | None]):
        from kubernetes import client

        self._client = client.ApiClient(api.configuration)
        self._args = (group, version, plural)
        self._phase_of = phase_of
        self._lock = threading.Lock()
        self._phases: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def phases(self, uid: str) -> list[str]:
        """The phases object ``uid`` has had so far, in order (a copy)."""
        with self._lock:
            return list(self._phases.get(uid, ()))

    def _record(self, obj: dict) -> None:
        phase = self._phase_of(obj)
        uid = (obj.get("metadata") or {}).get("uid")
        if phase is None or uid is None:
            return
        with self._lock:
            seen = self._phases.setdefault(uid, [])
            if not seen or seen[-1] != phase:
                seen.append(phase)

    def _list(self, custom) -> str:
        listing = custom.list_cluster_custom_object(*self._args)
        for item in listing.get("items", []):
            self._record(item)
        return listing["metadata"]["resourceVersion"]

    def _loop(self) -> None:
        from kubernetes import client, watch
        from kubernetes.client.exceptions import ApiException

        custom = client.CustomObjectsApi(self._client)
        try:
            version = self._list(custom)
        except Exception as exc:  # noqa: BLE001 - reported through .error; the poll carries on
            self.error = f"{type(exc).__name__}: {exc}"
            return
        while not self._stop.is_set():
            stream = watch.Watch()
            try:
                for event in stream.stream(custom.list_cluster_custom_object, *self._args,
                                           resource_version=version, timeout_seconds=1):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(obj)
                    if self._stop.is_set():
                        stream.stop()
            except ApiException as exc:
                if exc.status == 410:  # our resourceVersion is too old: list again
                    version = self._list(custom)
                    continue
                self.error = f"watch failed: {exc.status} {exc.reason}"
                self._stop.wait(0.5)
            except Exception as exc:  # noqa: BLE001 - a dropped connection: watch again
                self.error = f"watch failed: {type(exc).__name__}: {exc}"
                self._stop.wait(0.5)

    def start(self) -> PhaseWatch:
        """Start the watch thread (daemon); returns self."""
        self._thread = threading.Thread(target=self._loop, daemon=True,
                                        name=f"phase-watch-{self._args[2]}")
        self._thread.start()
        return self

    def request_stop(self) -> None:
        """Ask the thread to stop without waiting for it (:meth:`stop` then waits)."""
        self._stop.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (it notices within about a second). Safe to call twice."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._client.close()

    def __enter__(self) -> PhaseWatch:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class PhaseTrail:
    """The phases recorded for one object, merging poll sightings with a watch's sequence.

    Attributes:
        recorded: Phases recorded so far, in order, without immediate repeats.
        consumed: How many of the watch's phases the record accounts for.
        ahead: Phases the poll recorded before the watch reported them.
    """

    recorded: list[str] = field(default_factory=list)
    consumed: int = 0
    ahead: list[str] = field(default_factory=list)

    def see(self, current: str, watched: list[str]) -> list[str]:
        """The poll sees ``current``; return the phases to record now, in order.

        Args:
            current: The phase the poll reads.
            watched: The watch's phase sequence for the object so far (may be empty, or
                behind or ahead of the poll).

        Returns:
            The phases the watch saw since the last call up to ``current`` that the poll
            missed, then ``current`` if it is new; empty when nothing changed.
        """
        while self.ahead:  # the watch catches up with what the poll recorded first
            try:
                self.consumed = watched.index(self.ahead[0], self.consumed) + 1
            except ValueError:
                break
            self.ahead.pop(0)
        new: list[str] = []
        if not self.ahead and current in watched[self.consumed:]:
            up_to_date = watched[-1] == current
            last = (len(watched) - 1 if up_to_date
                    else watched.index(current, self.consumed))
            for phase in watched[self.consumed:last + 1]:
                if phase != (new or self.recorded or [None])[-1]:
                    new.append(phase)
            self.consumed = last + 1
        elif current != (self.recorded or [None])[-1]:
            new.append(current)  # the watch lags (or is not running): the poll's word alone
            self.ahead.append(current)
        self.recorded.extend(new)
        return new

