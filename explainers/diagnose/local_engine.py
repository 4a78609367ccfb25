"""The default engine: every batch in this process, the model loaded once. Needs no Ray."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import models

from .dataset import Sample
from .work import ImageResult, Settings, explain_samples


class LocalEngine:
    """Explains batches of samples one after the other with `model`."""

    def __init__(self, model: models.Classifier, settings: Settings) -> None:
        self.model, self.settings = model, settings

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None

    def run(self, batches: Iterable[list[Sample]]) -> Iterator[list[ImageResult]]:
        """The results of each batch, in order, as they are done."""
        for batch in batches:
            yield explain_samples(self.model, batch, self.settings)
