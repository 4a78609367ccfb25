"""Sanity check by cascading model-parameter randomisation (Adebayo et al., NeurIPS 2018), judged
against controls.

The parameters of a deep copy of the model (the caller's model is never touched) are re-initialised
from the top layer down, cumulatively: the modules that own parameters are taken in reverse order of
their first call in a forward pass, and each one is re-initialised with its own reset_parameters()
(Conv / Linear: their default random initialisation; BatchNorm: running statistics and affine
reset), or, lacking one, every parameter redrawn from N(0, its original standard deviation). The
re-initialisation of module i is seeded with seed + i, so that results are reproducible. After each
stage every method's map is computed again, and compared with the original map by the Spearman rank
correlation.

A Spearman figure alone does not say why a map survives randomisation. On EfficientNet-Lite0 the
fully randomised model's Grad-CAM++ maps keep a Spearman of ~0.74 with the trained maps, but they
match the trained maps of *other* images about as well, the randomised model's maps of pure noise
match even better, and the trained maps already correlate ~0.83 with a fixed centred Gaussian: what
survives is an image-independent, centred pattern, not the image. So every figure after full
randomisation is reported beside three controls, each replacing one of the two maps compared by a map
that knows nothing of the image (SanityControls):

- other images: the randomised map of image i against the same method's trained maps of the
  reference images (other images) for the same class, so that only the image differs;
- noise: the trained map of image i against the randomised model's map of Gaussian noise (the
  normalised input space's N(0, 1)) for the same class;
- centre: the trained map of image i against a fixed centred Gaussian (the Spearman figure of any
  centred isotropic Gaussian is the same: its ranks are the distances from the centre).

The verdict (SanityResult.verdict), in this order:

1. "image-independent" (flagged) when the method's trained maps of different images for the same
   class agree at a mean Spearman of IMAGE_INDEPENDENT (0.9) or more: such a map shows the same
   picture whatever the image, so it explains neither the image nor the model's decision about it,
   whatever its Spearman figure under randomisation (a weight-only map, such as the input gradient
   of a linear model, changes under randomisation and would pass Adebayo's test).
2. "fails" (flagged) when the Spearman figure after full randomisation exceeds the largest control by
   more than SURVIVAL_MARGIN (0.1): the randomised model still reproduces what is specific to this
   image's trained map, so the map reflects the image, not the model (Adebayo's failure).
3. "passes" otherwise: the randomised map is no more like its own trained map than a map that knows
   nothing of the image is; whatever similarity remains is shared by every image.

Without reference images (one image and none passed) the first rule and the first control cannot be
evaluated; the verdict then rests on the noise and centre controls. The fixed threshold of the first
version (SANITY_THRESHOLD, Spearman > 0.5 fails) is kept only for results without controls.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

import explainers

from .metrics import module_of
from .taps import eval_mode

SANITY_THRESHOLD = 0.5
IMAGE_INDEPENDENT = 0.9
SURVIVAL_MARGIN = 0.1
CENTRE_SIGMA = 0.25  # of the side; any value gives the same ranks


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n of a flat tensor, ties given the mean of their ranks (as scipy's rankdata)."""
    ordered, order = torch.sort(values.flatten().double(), stable=True)
    _, group, counts = torch.unique_consecutive(ordered, return_inverse=True, return_counts=True)
    ends = counts.cumsum(0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(ordered)
    ranks[order] = mean_rank[group]
    return ranks


def centred_ranks(saliency) -> torch.Tensor:
    """The tie-averaged ranks of a map minus their mean, flat: what spearman() correlates."""
    ranks = average_ranks(torch.as_tensor(np.asarray(saliency, dtype=np.float64)))
    return ranks - ranks.mean()


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Spearman correlation of two maps given by their centred_ranks()."""
    norms = [float(a.norm()), float(b.norm())]
    if min(norms) == 0:
        return 1.0 if max(norms) == 0 else 0.0
    return float((a * b).sum()) / (norms[0] * norms[1])


def spearman(a, b) -> float:
    """Spearman rank correlation of two maps: Pearson correlation of their tie-averaged ranks.

    Ties are averaged because saliency maps have large tied regions (zeros after the CAM's ReLU):
    ranking ties by position would correlate any two maps that are zero in the same place by their
    raster order. A constant map has no ranking: 1.0 against another constant map (nothing
    changed), 0.0 against a varying one.
    """
    return rank_correlation(centred_ranks(a), centred_ranks(b))


def centre_gaussian(size: tuple[int, int], sigma: float = CENTRE_SIGMA) -> np.ndarray:
    """A Gaussian [H, W] centred on the image, sigma a share of each side (the centre-bias control)."""
    rows, columns = ((np.arange(n) - (n - 1) / 2) / (n * sigma) for n in size)  # exactly symmetric
    return np.exp(-(rows[:, None] ** 2 + columns[None, :] ** 2) / 2)


def modules_in_forward_order(module: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the modules that own parameters, in the order of their first call on `x`."""
    order: list[str] = []
    owners = {m: n for n, m in module.named_modules() if next(m.parameters(recurse=False), None) is not None}

    def record(called: nn.Module, inputs: tuple, output: object) -> None:
        if owners[called] not in order:
            order.append(owners[called])

    handles = [m.register_forward_hook(record) for m in owners]
    parameter = next(module.parameters(), None)
    first = x[:1] if parameter is None else x[:1].to(parameter.device)
    try:
        with torch.no_grad(), eval_mode(module):
            module(first)
    finally:
        for handle in handles:
            handle.remove()
    return order


def reinitialise(module: nn.Module, seed: int) -> None:
    """Re-initialises the parameters `module` owns (not its children's), seeded."""
    device = next(module.parameters()).device
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        reset_parameters = getattr(module, "reset_parameters", None)
        if callable(reset_parameters):
            reset_parameters()
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
class SanityControls:
    """One method's controls after full randomisation, one Spearman figure per image [N] (NaN where
    there is no reference image)."""

    other_images: np.ndarray  # randomised map of image i vs the trained maps of the references (mean)
    noise: np.ndarray  # trained map of image i vs the randomised model's map of Gaussian noise
    centre: np.ndarray  # trained map of image i vs a fixed centred Gaussian
    between_images: np.ndarray  # trained map of image i vs the trained maps of the references (mean)
    randomised_centre: np.ndarray  # randomised map of image i vs the centred Gaussian

    def means(self) -> dict[str, float]:
        """Mean of each figure over the images (NaN when unavailable)."""
        return {
            name: _nanmean(getattr(self, name))
            for name in ("other_images", "noise", "centre", "between_images", "randomised_centre")
        }


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


@dataclass(frozen=True)
class SanityVerdict:
    """The verdict on one method: its Spearman figure against the largest of its controls."""

    spearman: float  # mean Spearman with the trained map after full randomisation
    control: float  # the largest mean control figure (other images, noise, centre)
    between_images: float  # mean Spearman between trained maps of different images; NaN: unknown
    outcome: str  # "passes", "fails" or "image-independent"

    @property
    def excess(self) -> float:
        """How much more the randomised map resembles its own trained map than the controls do."""
        return self.spearman - self.control

    @property
    def flagged(self) -> bool:
        """True when the method fails: its map survives randomisation or ignores the image."""
        return self.outcome != "passes"

    def explanation(self) -> str:
        """One sentence for a reader: the verdict and the figures behind it."""
        figures = f"Spearman {self.spearman:.2f} after full randomisation, controls up to {self.control:.2f}"
        if self.outcome == "image-independent":
            return (
                f"its trained maps of different images agree at {self.between_images:.2f}: the map "
                f"hardly depends on the image ({figures})"
            )
        if self.outcome == "fails":
            return (
                f"{figures}: the randomised model still draws what is specific to this image's map, "
                "so the map shows the image, not the model"
            )
        unknown = "" if np.isfinite(self.between_images) else "; image dependence not checked (no reference images)"
        return (
            f"{figures}: the randomised map is no more like the trained one than maps that know "
            f"nothing of the image{unknown}"
        )


@dataclass
class SanityResult:
    """Spearman correlations between the original maps and the maps after each stage, and the
    controls after full randomisation."""

    stages: list[str]  # the last module randomised at each stage (cumulative, top down)
    randomised: list[int]  # how many modules are randomised after each stage
    spearman: dict[str, np.ndarray] = field(default_factory=dict)  # method -> [stages, N maps]
    threshold: float = SANITY_THRESHOLD
    controls: dict[str, SanityControls] = field(default_factory=dict)  # method -> controls

    def mean(self, method: str) -> np.ndarray:
        """Mean Spearman correlation over the maps at each stage [stages]."""
        return self.spearman[method].mean(axis=1)

    def final(self, method: str) -> float:
        """Mean Spearman correlation after full randomisation."""
        return float(self.mean(method)[-1])

    def verdict(self, method: str) -> SanityVerdict:
        """The verdict against the controls (rules in the module's docstring)."""
        means = self.controls[method].means()
        control = max(
            (v for k, v in means.items() if k in ("other_images", "noise", "centre") and np.isfinite(v)),
            default=float("nan"),
        )
        between = means["between_images"]
        if np.isfinite(between) and between >= IMAGE_INDEPENDENT:
            outcome = "image-independent"
        elif self.final(method) - control > SURVIVAL_MARGIN:
            outcome = "fails"
        else:
            outcome = "passes"
        return SanityVerdict(self.final(method), control, between, outcome)

    def fails(self, method: str) -> bool:
        """True when the method is flagged: by verdict() when there are controls, else when its
        maps survive full randomisation (mean Spearman > threshold)."""
        if method in self.controls:
            return self.verdict(method).flagged
        return self.final(method) > self.threshold


def _map_lists(
    net: nn.Module,
    x: torch.Tensor,
    methods: list[str],
    targets: Sequence[int],
    layer: str | None,
    options: explainers.Options | None,
) -> dict[str, list[np.ndarray]]:
    """method -> the maps of each image of x for targets[i] (one explain per image)."""
    found: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for b, target in enumerate(targets):
        result = explainers.explain(net, x[b : b + 1], methods, targets=[target], layer=layer, options=options)
        for item in result.maps:
            found[item.method].append(item.map)
    return found


def _maps_for_class(
    net: nn.Module,
    x: torch.Tensor,
    methods: list[str],
    target: int,
    layer: str | None,
    options: explainers.Options | None,
) -> dict[str, list[np.ndarray]]:
    """method -> the maps of every image of x for the one class `target` (one batched explain)."""
    result = explainers.explain(net, x, methods, targets=[target], layer=layer, options=options)
    return {m: [result.get(m, target, b).map for b in range(len(x))] for m in methods}


def noise_image(like: torch.Tensor, seed: int) -> torch.Tensor:
    """Gaussian noise N(0, 1) [1, 3, H, W] in the normalised input space, seeded."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(1, *like.shape[1:], generator=generator).to(like.device, like.dtype)


def _controls(
    trained: list[np.ndarray], randomised: list[np.ndarray], noise: list[np.ndarray], references: list[list[np.ndarray]]
) -> SanityControls:
    """The controls of one method (see SanityControls); references[i]: the trained maps of the
    reference images for image i's class (empty when there is none)."""
    own = [centred_ranks(m) for m in trained]
    after = [centred_ranks(m) for m in randomised]
    centre = centred_ranks(centre_gaussian(np.asarray(trained[0]).shape))
    refs = [[centred_ranks(m) for m in maps] for maps in references]

    def mean_against(ranks: torch.Tensor, i: int) -> float:
        return float(np.mean([rank_correlation(ranks, r) for r in refs[i]])) if refs[i] else float("nan")

    return SanityControls(
        other_images=np.array([mean_against(after[i], i) for i in range(len(own))]),
        noise=np.array([rank_correlation(own[i], centred_ranks(noise[i])) for i in range(len(own))]),
        centre=np.array([rank_correlation(r, centre) for r in own]),
        between_images=np.array([mean_against(own[i], i) for i in range(len(own))]),
        randomised_centre=np.array([rank_correlation(r, centre) for r in after]),
    )


def cascading_randomisation(
    model,
    x: torch.Tensor,
    methods: Sequence[str],
    targets: Sequence[int],
    layer: str | None = None,
    stages: int | None = None,
    seed: int = 0,
    threshold: float = SANITY_THRESHOLD,
    options: explainers.Options | None = None,
    progress: Callable[[float], None] | None = None,
    references: torch.Tensor | None = None,
) -> SanityResult:
    """Cascading randomisation of a deep copy of `model` (a models.Classifier or nn.Module), with
    the controls of its verdict.

    x: [B, 3, H, W] preprocessed images; targets: one class per image (kept through the
    randomisation: the class explained on the trained model). stages: None for one stage per
    module that owns parameters, else that many cumulative stages of about equal size. Layer names
    stay valid on the copy (copy.deepcopy keeps the module tree). references: [R, 3, H, W] other
    preprocessed images for the "other images" control, explained on the trained model for the
    class of each image of x; None: the other images of x serve (none when x holds one image).
    """
    module = module_of(model)
    layer = layer or getattr(model, "default_layer", None)
    targets = [int(t) for t in np.asarray(targets).reshape(-1)]
    if len(targets) != len(x):
        raise ValueError(f"one target per image: {len(x)} images, {len(targets)} targets")
    methods = list(methods)

    original = _map_lists(module, x, methods, targets, layer, options)
    pool = x if references is None else references
    by_class = {t: _maps_for_class(module, pool, methods, t, layer, options) for t in dict.fromkeys(targets)}
    reference_maps = {
        m: [
            [found for j, found in enumerate(by_class[t][m]) if references is not None or j != i]
            for i, t in enumerate(targets)
        ]
        for m in methods
    }
    twin = copy.deepcopy(module)
    order = modules_in_forward_order(twin, x)[::-1]
    modules = dict(twin.named_modules())
    cuts = stage_cuts(len(order), stages)
    result = SanityResult([order[c - 1] for c in cuts], cuts, threshold=threshold)
    scores: dict[str, list[list[float]]] = {m: [] for m in methods}
    done = 0
    for number, cut in enumerate(cuts):
        for index in range(done, cut):
            reinitialise(modules[order[index]], seed + index)
        done = cut
        randomised = _map_lists(twin, x, methods, targets, layer, options)
        for method, maps in randomised.items():
            scores[method].append([spearman(a, b) for a, b in zip(original[method], maps)])
        if progress:
            progress((number + 1) / (len(cuts) + 1))
    noise = noise_image(x, seed)
    noise_maps = _map_lists(twin, noise.expand(len(x), -1, -1, -1), methods, targets, layer, options)
    result.spearman = {m: np.asarray(v, dtype=np.float64) for m, v in scores.items()}
    result.controls = {m: _controls(original[m], randomised[m], noise_maps[m], reference_maps[m]) for m in methods}
    if progress:
        progress(1.0)
    return result
