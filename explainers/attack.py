"""Adversarial images: projected gradient descent in the image's own pixel space (Madry et al., 2018).

The Grad-CAM paper (section 6.2) shows that an image perturbed until the network is confident of a
wrong class still gets a Grad-CAM map that finds the true object for the true class. This module
makes such images for any classifier: the perturbation lives in the 8-bit pixels of the crop the
model sees (an L-infinity budget in 0-255 levels), the model's own normalisation is applied inside
the attack, and the result is rounded back to whole levels, so the adversarial image is a real
image that can be saved as a PNG and gives the reported predictions when loaded again.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from .engine import Explanation, explain
from .errors import ExplainerError

LEVELS = 255.0
Progress = Callable[[float, str], None]  # (fraction done, what is being done); may raise to stop


@dataclass
class AttackResult:
    """The adversarial images of one attack, with what the model now says about them."""

    pixels: torch.Tensor  # [B, 3, H, W] adversarial pixels in [0, 1], whole 8-bit levels
    clean_pixels: torch.Tensor  # [B, 3, H, W] the pixels it started from
    probabilities: torch.Tensor  # [B, classes] of the adversarial images
    clean_probabilities: torch.Tensor  # [B, classes] of the clean images
    target: list[int | None]  # the class aimed at per image (None: any class but the original)
    original: list[int]  # the clean image's top class per image
    epsilon: float  # the budget, in 0-255 levels

    @property
    def predicted(self) -> list[int]:
        """The adversarial images' top classes."""
        return self.probabilities.argmax(dim=1).tolist()

    @property
    def success(self) -> list[bool]:
        """Per image: the target class is now on top (targeted), or the top class changed."""
        return [
            p == t if t is not None else p != o
            for p, t, o in zip(self.predicted, self.target, self.original, strict=True)
        ]

    @property
    def linf_levels(self) -> list[float]:
        """Per image: the largest change of any pixel, in 0-255 levels (never above epsilon)."""
        change = (self.pixels - self.clean_pixels).abs().flatten(1).amax(dim=1) * LEVELS
        return [round(float(c), 3) for c in change]

    def difference_gain(self, index: int = 0) -> float:
        """How much difference_image amplifies image `index`'s change: its largest change becomes
        full black or white (the gain of a 2-level change is 64)."""
        return 0.5 / max(self.linf_levels[index] / LEVELS, 1.0 / LEVELS)

    def difference_image(self, index: int = 0, gain: float | None = None) -> Image.Image:
        """The perturbation as an RGB picture: mid-grey is no change, amplified (by
        difference_gain unless `gain` is given) to be visible."""
        delta = (self.pixels[index] - self.clean_pixels[index]).cpu().numpy().transpose(1, 2, 0)
        gain = gain if gain is not None else self.difference_gain(index)
        return Image.fromarray(np.clip((0.5 + gain * delta) * LEVELS, 0, 255).round().astype(np.uint8))

    def image(self, index: int = 0) -> Image.Image:
        """The adversarial image `index` as a PIL image (the crop the model sees)."""
        return to_image(self.pixels[index])

    def clean_image(self, index: int = 0) -> Image.Image:
        """The clean image `index` as the attack started from it (the crop the model sees)."""
        return to_image(self.clean_pixels[index])


def to_pixels(image: Image.Image) -> torch.Tensor:
    """A PIL RGB image as a float tensor [3, H, W] of 8-bit levels in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / LEVELS
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def to_image(pixels: torch.Tensor) -> Image.Image:
    """Pixels [3, H, W] in [0, 1] as an 8-bit PIL RGB image."""
    array = (pixels.detach().cpu().clamp(0, 1) * LEVELS).round().to(torch.uint8).numpy()
    return Image.fromarray(array.transpose(1, 2, 0))


def pgd(
    module: nn.Module,
    pixels: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    epsilon: float = 2.0,
    target: Sequence[int | None] | int | None = None,
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    seed: int = 0,
    progress: Progress | None = None,
) -> AttackResult:
    """Projected gradient descent within an L-infinity ball of `epsilon` levels (0-255) per pixel.

    module: returns logits for normalised input. pixels: [B, 3, H, W] (or [3, H, W]) in [0, 1].
    target: a class per image (or one for all) to reach, or None for "any class but the current top
    one" (untargeted: the top class's cross-entropy is increased). Each step moves by `step_size`
    levels (default 2.5 * epsilon / steps, Madry et al.) along the gradient's sign, then projects
    back into the budget and onto valid pixels. A targeted image stops moving once it is classified
    as its target with a margin, so it never walks out of the target again. The result is rounded to
    whole levels (the budget then counts whole levels: 2.5 allows 2) and the predictions are those of
    the rounded images. progress(fraction, message) is called after each step (it may raise to stop).
    """
    if epsilon < 0 or steps < 1:
        raise ExplainerError("The attack needs epsilon >= 0 levels and at least one step.")
    pixels = pixels[None] if pixels.dim() == 3 else pixels
    parameter = next(module.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    clean = pixels.detach().float().to(device)
    mean_t = torch.tensor(mean, device=device, dtype=clean.dtype).view(1, -1, 1, 1)
    std_t = torch.tensor(std, device=device, dtype=clean.dtype).view(1, -1, 1, 1)

    def logits_of(p: torch.Tensor) -> torch.Tensor:
        return module((p - mean_t) / std_t)

    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            clean_logits = logits_of(clean)
        original = clean_logits.argmax(dim=1)
        goals = _targets(target, len(clean), clean_logits.shape[1])
        result = _descend(
            logits_of,
            clean,
            original,
            goals,
            epsilon / LEVELS,
            (step_size if step_size is not None else 2.5 * epsilon / steps) / LEVELS,
            steps,
            random_start,
            seed,
            progress,
        )
        with torch.no_grad():
            probabilities = F.softmax(logits_of(result).float(), dim=1)
    finally:
        module.train(was_training)
    return AttackResult(
        result, clean, probabilities, F.softmax(clean_logits.float(), dim=1), goals, original.tolist(), float(epsilon)
    )


def _targets(target: Sequence[int | None] | int | None, batch: int, classes: int) -> list[int | None]:
    goals = list(target) if isinstance(target, Sequence) else [target] * batch
    if len(goals) != batch:
        raise ExplainerError(f"Give one target per image ({batch}), not {len(goals)}.")
    for goal in goals:
        if goal is not None and not 0 <= int(goal) < classes:
            raise ExplainerError(f"Target classes must be between 0 and {classes - 1}; got {goal}.")
    return [None if goal is None else int(goal) for goal in goals]


def _descend(
    logits_of,
    clean: torch.Tensor,
    original: torch.Tensor,
    goals: list[int | None],
    radius: float,
    step: float,
    steps: int,
    random_start: bool,
    seed: int,
    progress: Progress | None,
) -> torch.Tensor:
    """The PGD iterations; returns the adversarial pixels rounded to whole levels."""
    targeted = torch.tensor([g is not None for g in goals], device=clean.device)
    aim = torch.tensor([g if g is not None else 0 for g in goals], device=clean.device)
    aim = torch.where(targeted, aim, original)
    direction = torch.where(targeted, -1.0, 1.0).view(-1, 1, 1, 1)  # descend on targets, ascend else
    delta = torch.zeros_like(clean)
    if random_start and radius > 0:
        generator = torch.Generator(device="cpu").manual_seed(seed)
        delta = (torch.rand(clean.shape, generator=generator) * 2 - 1).to(clean.device) * radius
    adversarial = (clean + delta).clamp(0, 1)
    for number in range(steps):
        adversarial.requires_grad_(True)
        logits = logits_of(adversarial)
        loss = F.cross_entropy(logits, aim, reduction="sum")
        (grad,) = torch.autograd.grad(loss, adversarial)
        with torch.no_grad():
            done = targeted & _reached(logits.detach(), aim)
            moving = (~done).view(-1, 1, 1, 1).to(clean.dtype)
            adversarial = adversarial + moving * direction * step * grad.sign()
            adversarial = _project(adversarial, clean, radius)
        if progress is not None:
            progress((number + 1) / steps, f"Attack step {number + 1} of {steps}")
    whole_levels = math.floor(radius * LEVELS + 1e-6) / LEVELS  # rounding must not leave the budget
    return _project(_round_levels(adversarial.detach()), clean, whole_levels)


def _reached(logits: torch.Tensor, aim: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """The aimed class leads every other class's logit by `margin`."""
    aimed = logits.gather(1, aim[:, None])
    others = logits.scatter(1, aim[:, None], float("-inf"))
    return (aimed.squeeze(1) - others.amax(dim=1)) >= margin


def _project(adversarial: torch.Tensor, clean: torch.Tensor, radius: float) -> torch.Tensor:
    """Back into the L-infinity ball around `clean` and into [0, 1]."""
    return torch.min(torch.max(adversarial, clean - radius), clean + radius).clamp(0, 1)


def _round_levels(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels * LEVELS).round() / LEVELS


def attack_image(
    classifier,
    image: Image.Image,
    target: int | None = None,
    epsilon: float = 2.0,
    steps: int = 10,
    step_size: float | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> AttackResult:
    """PGD on the crop a models.Classifier sees of `image`, with the classifier's normalisation.

    The budget is in 0-255 levels of that crop; `result.image()` is the adversarial crop and
    `classifier.preprocess(result.image())` gives the model exactly the attacked input.
    """
    preprocessing = classifier.preprocessing
    pixels = to_pixels(classifier.crop(image))
    return pgd(
        classifier.module,
        pixels,
        preprocessing.mean,
        preprocessing.std,
        epsilon,
        target,
        steps,
        step_size,
        seed=seed,
        progress=progress,
    )


@dataclass
class ExplainedAttack:
    """An attack on one image and the maps of the same classes on the clean and the adversarial image."""

    attack: AttackResult
    clean: Explanation  # the clean image's maps (the same as explain() on the image)
    adversarial: Explanation  # the adversarial crop's maps
    classes: list[int]  # the classes explained: the clean top class, the adversarial one, the target

    @property
    def original(self) -> int:
        """The clean image's top class."""
        return self.attack.original[0]

    @property
    def predicted(self) -> int:
        """The adversarial image's top class."""
        return self.attack.predicted[0]


def explain_attack(
    classifier,
    image: Image.Image,
    methods: Sequence[str],
    target: int | None = None,
    epsilon: float = 2.0,
    steps: int = 10,
    layer: str | None = None,
    progress: Progress | None = None,
) -> ExplainedAttack:
    """Attack `image` (attack_image) and explain the clean image and the adversarial crop with
    `methods` for the clean top class, the adversarial top class and the target (each once).

    The clean maps are explain()'s on `classifier.preprocess(image)`; the adversarial maps are those
    of the adversarial crop exactly as attacked and as saved (`attack.image()`, taken as the model's
    input as it is: see crop_input). progress(fraction, message) may raise to stop.
    """
    share = (0.7, 0.15, 0.15)  # of the progress bar: the attack, then each image's maps

    def part(start: float, width: float) -> Progress | None:
        if progress is None:
            return None
        report = progress

        def scaled(fraction: float, message: str = "") -> None:
            report(start + width * fraction, message)

        return scaled

    attack = attack_image(classifier, image, target, epsilon, steps, progress=part(0.0, share[0]))
    classes = list(dict.fromkeys([attack.original[0], attack.predicted[0], *([target] if target is not None else [])]))
    adversarial_input = crop_input(classifier, attack.image())
    clean = explain(
        classifier,
        classifier.preprocess(image),
        methods,
        targets=classes,
        layer=layer,
        progress=part(share[0], share[1]),
    )
    adversarial = explain(
        classifier,
        adversarial_input,
        methods,
        targets=classes,
        layer=layer,
        progress=part(share[0] + share[1], share[2]),
    )
    return ExplainedAttack(attack, clean, adversarial, classes)


def crop_input(classifier, crop: Image.Image) -> torch.Tensor:
    """The normalised model input [1, 3, H, W] of a crop the model already sees (no resize, no crop)."""
    preprocessing = classifier.preprocessing
    mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float32).view(1, -1, 1, 1)
    return (to_pixels(crop)[None] - mean) / std
