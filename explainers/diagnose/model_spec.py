"""Which model to diagnose, as plain data: what a worker needs to load the model itself."""

from __future__ import annotations

from dataclasses import dataclass

import models


@dataclass(frozen=True)
class ModelSpec:
    """A registered model (`name`) or a user's own (`arch` + `checkpoint` + `class_names`)."""

    name: str | None = models.DEFAULT_MODEL
    arch: str | None = None
    checkpoint: str | None = None
    class_names: str | None = None
    device: str | None = None

    def __post_init__(self) -> None:
        custom = (self.arch, self.checkpoint, self.class_names)
        if any(custom) and not all(custom):
            raise models.ModelError("A custom model needs an architecture, a checkpoint and a class-names file.")

    @property
    def is_custom(self) -> bool:
        """True for a user's checkpoint (models.load_custom), False for a registered name."""
        return self.arch is not None

    def load(self, device: str | None = None) -> models.Classifier:
        """The classifier, on `device` (default: the spec's, else CUDA when available)."""
        device = device or self.device
        if self.is_custom:
            # __post_init__ allows all three or none
            assert self.arch is not None and self.checkpoint is not None and self.class_names is not None
            return models.load_custom(self.arch, self.checkpoint, self.class_names, device=device)
        if self.name is None:
            raise models.ModelError("Give a model name, or an architecture, a checkpoint and a class-names file.")
        return models.load(self.name, device=device)
