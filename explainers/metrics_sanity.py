"""Sanity check by cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018).

The parameters of a deep copy of the model (the caller's model is never touched) are re-initialised
from the top layer down, cumulatively: the modules that own parameters are taken in reverse order of
their first call in a forward pass, and each one is re-initialised with its own reset_parameters()
(Conv / Linear: their default random initialisation; BatchNorm: running statistics and affine
reset), or, lacking one, every parameter redrawn from N(0, its original standard deviation). The
re-initialisation of module i is seeded with seed + i, so that results are reproducible. After each
stage every method's map is computed again, and compared with the original map by the Spearman rank
correlation. A method whose maps survive full randomisation (mean Spearman > 0.5, SANITY_THRESHOLD)
explains the image, not the model: it fails the sanity check.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .engine import Options, explain
from .metrics import module_of
from .taps import eval_mode

SANITY_THRESHOLD = 0.5


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a flat tensor, ties given the mean of their ranks (as scipy's rankdata)."""
    ordered, order = torch.sort(values.flatten().double(), stable=True)
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(ordered)
    ranks[order] = mean_rank[group]
    return ranks


def spearman(a, b) -> float:
    """Spearman rank correlation of two maps: Pearson correlation of their tie-averaged ranks.

    Ties are averaged because saliency maps have large tied regions (zeros after the CAM's ReLU):
    ranking ties by position would correlate any two maps that are zero in the same place by their
    raster order. A constant map has no ranking: 1.0 against another constant map (nothing
    changed), 0.0 against a varying one.
    """
    ranks = [average_ranks(torch.as_tensor(np.asarray(m, dtype=np.float64))) for m in (a, b)]
    centred = [r - r.mean() for r in ranks]
    norms = [float(c.norm()) for c in centred]
    if min(norms) == 0:
        return 1.0 if max(norms) == 0 else 0.0
    return float((centred[0] * centred[1]).sum()) / (norms[0] * norms[1])


def modules_in_forward_order(module: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order of their first call on `x`."""
    order: list[str] = []
    owners = {m: n for n, m in module.named_modules() if next(m.parameters(recurse=False), None) is not None}

    def record(called: nn.Module, inputs: tuple, output: object) -> None:
        if owners[called] not in order:
            order.append(owners[called])

    handles = [m.register_forward_hook(record) for m in owners]
    try:
        with torch.no_grad(), eval_mode(module):
            module(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    return order


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-initialises the parameters `module` owns (not its children's), seeded."""
    device = next(module.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
            return
        with torch.no_grad():
            for parameter in module.parameters(recurse=False):
                parameter.normal_(0.0, float(parameter.std()) if parameter.numel() > 1 else 1.0)


def stage_cuts(count: int, stages: int | None) -> list[int]:
    """How many modules (from the top) are randomised after each stage; the last stage is all."""
    if stages is None or stages >= count:
        return list(range(1, count + 1))
    return sorted(set(np.round(np.linspace(0, count, stages + 1)[1:]).astype(int).tolist()))


@dataclass
class SanityResult:
    """Spearman correlations between the original maps and the maps after each stage."""

    stages: list[str]  # the last module randomised at each stage (cumulative, top down)
    randomised: list[int]  # how many modules are randomised after each stage
    spearman: dict[str, np.ndarray] = field(default_factory=dict)  # method -> [stages, N maps]
    threshold: float = SANITY_THRESHOLD

    def mean(self, method: str) -> np.ndarray:
        """Mean Spearman correlation over the maps at each stage [stages]."""
        return self.spearman[method].mean(axis=1)

    def final(self, method: str) -> float:
        """Mean Spearman correlation after full randomisation."""
        return float(self.mean(method)[-1])

    def fails(self, method: str) -> bool:
        """True when the maps survive full randomisation (mean Spearman > threshold)."""
        return self.final(method) > self.threshold


def cascading_randomisation(model, x: torch.Tensor, methods: Sequence[str], targets: Sequence[int],
                            layer: str | None = None, stages: int | None = None, seed: int = 0,
                            threshold: float = SANITY_THRESHOLD, options: Options | None = None,
                            progress: Callable[[float], None] | None = None) -> SanityResult:
    """Cascading randomisation of a deep copy of `model` (a models.Classifier or nn.Module).

    x: [B, 3, H, W] preprocessed images; targets: one class per image (kept through the
    randomisation: the class explained on the trained model). stages: None for one stage per
    module that owns parameters, else that many cumulative stages of about equal size. Layer names
    stay valid on the copy (copy.deepcopy keeps the module tree).
    """
    module = module_of(model)
    layer = layer or getattr(model, "default_layer", None)
    targets = [int(t) for t in np.asarray(targets).reshape(-1)]
    if len(targets) != len(x):
        raise ValueError(f"one target per image: {len(x)} images, {len(targets)} targets")
    methods = list(methods)

    def maps_of(net: nn.Module) -> dict[str, list[np.ndarray]]:
        found: dict[str, list[np.ndarray]] = {m: [] for m in methods}
        for b, target in enumerate(targets):
            result = explain(net, x[b:b + 1], methods, targets=[target], layer=layer, options=options)
            for item in result.maps:
                found[item.method].append(item.map)
        return found

    original = maps_of(module)
    twin = copy.deepcopy(module)
    order = modules_in_forward_order(twin, x)[::-1]
    modules = dict(twin.named_modules())
    cuts = stage_cuts(len(order), stages)
    result = SanityResult([order[c - 1] for c in cuts], cuts, threshold=threshold)
    scores = {m: [] for m in methods}
    done = 0
    for number, cut in enumerate(cuts):
        for index in range(done, cut):
            reinitialise(modules[order[index]], seed + index)
        done = cut
        for method, maps in maps_of(twin).items():
            scores[method].append([spearman(a, b) for a, b in zip(original[method], maps)])
        if progress:
            progress((number + 1) / len(cuts))
    result.spearman = {m: np.asarray(v, dtype=np.float64) for m, v in scores.items()}
    return result
