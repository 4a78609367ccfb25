"""Methods that run the model on perturbed copies of the input: Score-CAM, Ablation-CAM and RISE."""

from __future__ import annotations

import torch

from .. import cam_formulas as formulas
from ..perturbation import ablation_scores, score_cam_scores
from ..registry import Context, Method, MethodInfo, Needs, Progress, recorded
from ..rise import mask_count, rise_saliency
from ..taps import layer_tap

MIN_AFTER_LAYER_SHARE = 0.05  # Ablation-CAM's batches never cost less than this share of a pass


def _scorecam(context: Context, progress: Progress) -> torch.Tensor:
    activations = recorded(context.recording.activations, "layer")
    baseline = context.options.score_cam_baseline or context.sign < 0
    scores = score_cam_scores(
        context.module,
        context.x,
        activations,
        context.targets,
        context.options.perturbation_batch(activations.is_cuda),
        baseline,
        progress,
    )
    return formulas.score_weighted(activations, context.sign * scores).clamp(min=0)


def _ablationcam(context: Context, progress: Progress) -> torch.Tensor:
    activations = recorded(context.recording.activations, "layer")
    tap = layer_tap(context.module, recorded(context.layer, "layer"), "keep")
    with tap.attached():
        scores = ablation_scores(
            context.module,
            tap,
            context.x,
            activations,
            context.recording.logits.detach(),
            context.targets,
            8 * context.options.perturbation_batch(activations.is_cuda),
            progress,
        )
    return formulas.score_weighted(activations, context.sign * scores).clamp(min=0)


def _rise(context: Context, progress: Progress) -> torch.Tensor:
    options = context.options
    return rise_saliency(
        context.module,
        context.x,
        context.targets.image_probabilities,
        mask_count(options, context.x.device),
        options.rise_cells,
        options.rise_probability,
        options.seed,
        options.perturbation_batch(context.x.is_cuda),
        progress,
    )


UNITS = (
    Method(
        MethodInfo(
            "scorecam",
            "Score-CAM",
            "perturbation",
            "Wang et al., CVPR-W 2020",
            "Masks the image with each upsampled channel and weights the channel by the class "
            "probability on the masked image (the authors' code; Options.score_cam_baseline "
            'subtracts the black image\'s, as the paper writes). A "why not" Score-CAM uses '
            "that baseline form: the negated probability gained over a black image.",
            counterfactual=True,
            slow=True,
        ),
        _scorecam,
        passes=lambda q: float(q.channels),
    ),
    Method(
        MethodInfo(
            "ablationcam",
            "Ablation-CAM",
            "perturbation",
            "Desai & Ramaswamy, WACV 2020",
            "Weights each channel by how much the class score drops when the channel is "
            "zeroed, divided by |score| (the paper divides by the score, which flips every "
            "sign for a negative logit); no gradients.",
            counterfactual=True,
            slow=True,
        ),
        _ablationcam,
        passes=lambda q: q.channels * max(MIN_AFTER_LAYER_SHARE, q.after_layer),
    ),
    Method(
        MethodInfo(
            "rise",
            "RISE",
            "perturbation",
            "Petsiuk et al., BMVC 2018",
            "Random masks of a coarse grid, upsampled with random shifts; each pixel's weight is "
            "the class probability averaged over the masks that keep it. No layer, no gradients.",
            counterfactual=False,
            slow=True,
            needs=Needs(),
        ),
        _rise,
        passes=lambda q: float(mask_count(q.options, q.device)),
        settings=lambda options, device: {"masks": mask_count(options, device)},
        no_counterfactual="RISE weighs masks by a probability, which is never negative: no counterfactual form.",
    ),
)
