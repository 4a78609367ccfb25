"""What a map explains: a class index, a contrast "a rather than b", or a set of classes.

Every target gives a *logit* (the score the gradient methods and Ablation-CAM differentiate or
perturb) and a *probability* (what Score-CAM and RISE weigh masks by), both functions of the
model's logits [N, K]:

- a class c: logit y_c, probability softmax(y)_c (the fast path: plain indices, unchanged);
- `Contrast(a, b)`: logit y_a - y_b (the Grad-CAM paper's counterfactual generalised), probability
  sigmoid(y_a - y_b) = p_a / (p_a + p_b), the probability of a in a choice between a and b;
- `ClassSet(classes)`: the classes merged into one: probability sum_S p_c, logit
  log sum_S exp(y_c), which is the merged class's logit (softmax over the merged classes gives
  exactly sum_S p_c) and equals y_c for a set of one class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ExplainerError


@dataclass(frozen=True)
class Contrast:
    """ "Class a rather than class b": the score y_a - y_b."""

    a: int
    b: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", int(self.a))
        object.__setattr__(self, "b", int(self.b))
        if self.a == self.b:
            raise ExplainerError("A contrast needs two different classes.")

    @property
    def classes(self) -> tuple[int, ...]:
        """The classes the target reads."""
        return (self.a, self.b)

    def logit(self, logits: torch.Tensor) -> torch.Tensor:
        """y_a - y_b per row of logits [N, K]."""
        return logits[:, self.a] - logits[:, self.b]

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """p_a / (p_a + p_b) = sigmoid(y_a - y_b)."""
        return torch.sigmoid(self.logit(logits.float()))

    def direction(self, logits: torch.Tensor) -> torch.Tensor:
        """d logit / d logits: e_a - e_b, [N, K]."""
        direction = torch.zeros_like(logits, dtype=torch.float32)
        direction[:, self.a], direction[:, self.b] = 1.0, -1.0
        return direction

    def label(self, labels: Sequence[str] | None) -> str:
        """ "<a> rather than <b>"."""
        return f"{_name(self.a, labels)} rather than {_name(self.b, labels)}"


@dataclass(frozen=True)
class ClassSet:
    """Several classes explained as one: the sum of their probabilities (see the module docstring)."""

    classes: tuple[int, ...]
    name: str = ""

    def __post_init__(self) -> None:
        classes = tuple(sorted({int(c) for c in self.classes}))
        if not classes:
            raise ExplainerError("A class set needs at least one class.")
        object.__setattr__(self, "classes", classes)

    def logit(self, logits: torch.Tensor) -> torch.Tensor:
        """log sum_S exp(y_c) per row of logits [N, K]."""
        return torch.logsumexp(logits[:, list(self.classes)].float(), dim=1)

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        """sum_S p_c."""
        return F.softmax(logits.float(), dim=1)[:, list(self.classes)].sum(dim=1)

    def direction(self, logits: torch.Tensor) -> torch.Tensor:
        """d logit / d logits: the softmax over the set, zero elsewhere, [N, K]."""
        direction = torch.zeros_like(logits, dtype=torch.float32)
        direction[:, list(self.classes)] = F.softmax(logits[:, list(self.classes)].float(), dim=1)
        return direction

    def label(self, labels: Sequence[str] | None) -> str:
        """The set's name, else its classes joined by "+"."""
        return self.name or " + ".join(_name(c, labels) for c in self.classes)


@dataclass(frozen=True)
class _Single:
    """A plain class index, in the shape of the other targets."""

    c: int

    @property
    def classes(self) -> tuple[int, ...]:
        return (self.c,)

    def logit(self, logits: torch.Tensor) -> torch.Tensor:
        return logits[:, self.c]

    def probability(self, logits: torch.Tensor) -> torch.Tensor:
        return F.softmax(logits.float(), dim=1)[:, self.c]

    def direction(self, logits: torch.Tensor) -> torch.Tensor:
        direction = torch.zeros_like(logits, dtype=torch.float32)
        direction[:, self.c] = 1.0
        return direction

    def label(self, labels: Sequence[str] | None) -> str | None:
        return labels[self.c] if labels and self.c < len(labels) else None


Target = int | Contrast | ClassSet


def _name(c: int, labels: Sequence[str] | None) -> str:
    return labels[c] if labels and c < len(labels) else str(c)


def _as_object(target: Target):
    return target if isinstance(target, (Contrast, ClassSet)) else _Single(int(target))


def check_targets(targets: Sequence[Target] | Target | None, classes: int) -> list[Target]:
    """The distinct explicit targets (ints stay ints), after checking every class index."""
    if targets is None:
        return []
    if isinstance(targets, (int, np.integer, Contrast, ClassSet)):
        targets = [targets]
    items = [t if isinstance(t, (Contrast, ClassSet)) else int(t) for t in targets]
    items = list(dict.fromkeys(items))
    bad = [c for t in items for c in _as_object(t).classes if not 0 <= c < classes]
    if bad or not items:
        raise ExplainerError(f"Target classes must be between 0 and {classes - 1}; got {bad or 'none'}.")
    return items


class TargetSet:
    """The targets of a request, per image (each image's top-k, then the explicit ones), padded to
    the same count T by repeating an image's last target; the scores every method reads."""

    def __init__(self, per_image: list[list[Target]]) -> None:
        self.per_image = per_image
        width = max(len(chosen) for chosen in per_image)
        self.padded = [[_as_object(t) for t in chosen + chosen[-1:] * (width - len(chosen))] for chosen in per_image]
        self.count = width
        self.plain = all(isinstance(t, _Single) for row in self.padded for t in row)

    def indices(self, device: torch.device) -> torch.Tensor:
        """[B, T] class indices (plain class targets only)."""
        return torch.tensor([[t.c for t in row] for row in self.padded], device=device)

    def directions(self, logits: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
        """d(target score)/d(logits) of every target at these logits [B, K]: [T, B, K], times sign."""
        rows = [torch.stack([t.direction(logits[b : b + 1])[0] for t in row]) for b, row in enumerate(self.padded)]
        return sign * torch.stack(rows, dim=1)

    def image_directions(self, b: int, logits: torch.Tensor, sign: float = 1.0) -> torch.Tensor:
        """The directions of image b's targets at logits [N, K] of N variants of it: [T, N, K]."""
        return sign * torch.stack([t.direction(logits) for t in self.padded[b]])

    def image_logits(self, b: int, logits: torch.Tensor) -> torch.Tensor:
        """Image b's target logits from logits [N, K] of N variants of it: [T, N]."""
        if self.plain:
            return logits[:, [t.c for t in self.padded[b]]].float().T
        return torch.stack([t.logit(logits).float() for t in self.padded[b]])

    def image_probabilities(self, b: int, logits: torch.Tensor) -> torch.Tensor:
        """Image b's target probabilities from logits [N, K] of N variants of it: [T, N]."""
        if self.plain:
            return F.softmax(logits.float(), dim=1)[:, [t.c for t in self.padded[b]]].T
        return torch.stack([t.probability(logits) for t in self.padded[b]])

    def probability(self, b: int, t: int, logits: torch.Tensor) -> float:
        """The probability of image b's t-th distinct target, from the batch's logits [B, K]."""
        return float(_as_object(self.per_image[b][t]).probability(logits[b : b + 1])[0])

    def label(self, b: int, t: int, labels: Sequence[str] | None) -> str | None:
        """A person's name for image b's t-th distinct target (None for a class without labels)."""
        return _as_object(self.per_image[b][t]).label(labels)


def _span(first: int, last: int) -> tuple[int, ...]:
    return tuple(range(first, last + 1))


class Category(NamedTuple):
    """An ImageNet-1k category: its plural (for "all dogs") and its classes, in index order."""

    plural: str
    classes: tuple[int, ...]


IMAGENET_CLASS_SETS: dict[str, Category] = {
    # Curated from ImageNet-1k's WordNet ids (models/imagenet_wnids.txt, in class order): each set is
    # the classes under one WordNet synset, which ImageNet's ordering keeps in contiguous runs.
    "dog": Category("dogs", _span(151, 268)),  # n02084071 dog, domestic dog: the 118 breeds
    "domestic cat": Category("domestic cats", _span(281, 285)),  # n02121808
    "big cat": Category("big cats", _span(286, 293)),  # n02127808
    "cat": Category("cats", _span(281, 293)),  # n02120997 feline
    "bird": Category("birds", _span(7, 24) + _span(80, 100) + _span(127, 146)),  # n01503061
    "snake": Category("snakes", _span(52, 68)),  # n01726692
    "fish": Category("fish", _span(0, 6) + _span(389, 397)),  # n02512053
    "insect": Category("insects", _span(300, 326)),  # n02159955 (beetles to butterflies)
    "butterfly": Category("butterflies", _span(321, 326)),  # n02274259
    "primate": Category("primates", _span(365, 384)),  # n02469914
}


def imagenet_class_set(word: str) -> ClassSet:
    """The ImageNet-1k classes under a WordNet category ("dog" or "dogs", "cat", "bird"...), as a
    ClassSet named by the category ("dog").

    From a small curated table (IMAGENET_CLASS_SETS): WordNet itself is not available offline.
    """
    key = " ".join(word.lower().split())
    found = next((name for name, category in IMAGENET_CLASS_SETS.items() if key in (name, category.plural)), None)
    if found is None:
        raise ExplainerError(f"No ImageNet class set named {word!r}; known: {', '.join(IMAGENET_CLASS_SETS)}.")
    return ClassSet(IMAGENET_CLASS_SETS[found].classes, found)
