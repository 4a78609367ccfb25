"""A time budget per request: estimated before the engine runs (refused when over, with the
estimate), and enforced while it runs (the engine's progress callbacks check a deadline)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from explainers import cost

from .errors import UserError


class PassTimes:
    """Seconds of one batched forward pass per loaded model, measured once per model and device."""

    def __init__(self) -> None:
        self._seconds: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def seconds(self, classifier) -> float:
        """The measured seconds per image pass of ``classifier`` (a models.Classifier)."""
        key = (classifier.name, str(classifier.device))
        with self._lock:
            if key not in self._seconds:
                self._seconds[key] = cost.seconds_per_pass(
                    classifier.module, classifier.input_size, device=classifier.device
                )
            return self._seconds[key]


def check_estimate(seconds: float, limit_s: float, what: str, advice: str) -> None:
    """UserError when ``seconds`` (an estimate) is over ``limit_s``, saying both and what to do."""
    if seconds > limit_s:
        raise UserError(
            f"{what} could take up to about {seconds:.0f} s on this server; a "
            f"request may take at most {limit_s:.0f} s. {advice}"
        )


class Deadline:
    """Raises UserError from :meth:`check` once ``limit_s`` seconds have passed since it was made."""

    def __init__(self, limit_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit_s, self._clock = limit_s, clock
        self._start = clock()

    def elapsed(self) -> float:
        """Seconds since the deadline was set."""
        return self._clock() - self._start

    def check(self) -> None:
        """UserError once past the limit (the run stops where it is; nothing is kept)."""
        if self.elapsed() > self.limit_s:
            raise UserError(
                f"Stopped after {self.elapsed():.0f} s: a request may take at most "
                f"{self.limit_s:.0f} s on this server. Pick fewer slow methods or "
                f"classes, or a smaller model."
            )


def layer_passes(classifier, layer: str | None, methods: list[str], n_classes: int) -> float:
    """cost.request_passes for ``classifier`` (a models.Classifier) and ``layer``: its channel
    count, and the share of the network after it (estimated from its position among the
    model's spatial layers), on its device (RISE draws more masks on a GPU)."""
    names = [info.name for info in classifier.layers]
    position = names.index(layer) + 1 if layer in names else 0
    channels = classifier.layers[position - 1].shape[0] if position else 0
    return cost.request_passes(
        methods, n_classes, channels, after_layer=1 - position / max(1, len(names)), device=classifier.device
    )
