"""Dataset jobs per visitor: at most one waiting or running per browser session and per client
address, each with its Stop flag, and the latest results' zip of each session (the one before it
is deleted when a new one is made, so a visitor's disk is one job's worth).

The page claims a job when its button is pressed (before the job joins the queue, so a second one
is refused at once), the run adopts that claim when its turn comes and releases it when it ends. A
claim whose run never started (the page was closed while waiting) lapses after ``lapse_s``.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import queue_policy
from .errors import UserError

BUSY = (
    "You already have a dataset job waiting or running (one at a time per visitor). Wait for its report, or press Stop."
)


def visitor_keys(request: Any) -> tuple[str, ...]:
    """Who asks: ("session:<hash>", "address:<client>") of a Gradio request; () without one
    (a Python caller, who is not limited)."""
    if request is None:
        return ()
    session = getattr(request, "session_hash", None)
    keys = [f"session:{session}"] if session else []
    return (*keys, f"address:{queue_policy.client_key(request)}")


@dataclass
class Job:
    """One visitor's dataset job: its keys, its Stop flag, when it was claimed, whether it runs."""

    keys: tuple[str, ...]
    since: float
    stop: threading.Event = field(default_factory=threading.Event)
    started: bool = False


class VisitorJobs:
    """The jobs of all visitors, by key (a job appears under each of its keys)."""

    def __init__(self, lapse_s: float, kept_archives: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.lapse_s, self.kept_archives, self._clock = lapse_s, kept_archives, clock
        self._jobs: dict[str, Job] = {}
        self._archives: OrderedDict[str, Path] = OrderedDict()
        self._lock = threading.Lock()

    def claim(self, keys: Sequence[str]) -> Job:
        """A new job for these keys; UserError (BUSY) while one of them has a job."""
        with self._lock:
            return self._claim(tuple(keys))

    def _claim(self, keys: tuple[str, ...]) -> Job:
        now = self._clock()
        for key, job in list(self._jobs.items()):
            if not job.started and now - job.since > self.lapse_s:
                del self._jobs[key]
        if any(key in self._jobs for key in keys):
            raise UserError(BUSY)
        job = Job(keys, now)
        self._jobs.update((key, job) for key in keys)
        return job

    def start(self, keys: Sequence[str]) -> Job:
        """The job the page claimed for these keys, now running; a new claim when there is none
        (the API, or a claim that lapsed)."""
        keys = tuple(keys)
        with self._lock:
            job = self._jobs.get(keys[0]) if keys else None
            if job is None or job.started or job.keys != keys:
                job = self._claim(keys)
            job.started = True
            return job

    def stop(self, keys: Sequence[str]) -> bool:
        """Ask these keys' job to stop (it stops between images); False when there is none."""
        with self._lock:
            job = next((self._jobs[key] for key in keys if key in self._jobs), None)
        if job is None:
            return False
        job.stop.set()
        return True

    def release(self, job: Job) -> None:
        """The job has ended: its keys are free."""
        with self._lock:
            for key in job.keys:
                if self._jobs.get(key) is job:
                    del self._jobs[key]

    def replace_archive(self, keys: Sequence[str], archive: Path) -> None:
        """Remember ``archive`` as the session's latest results (the first key's) and delete the
        one before it; at most ``kept_archives`` sessions are remembered."""
        if not keys:
            return
        with self._lock:
            previous = self._archives.pop(keys[0], None)
            self._archives[keys[0]] = archive
            while len(self._archives) > self.kept_archives:
                self._archives.popitem(last=False)
        if previous is not None and previous != archive:
            previous.unlink(missing_ok=True)
