"""Methods that attribute to the input pixels: Guided Backprop and its fusion with Grad-CAM, the
gradient, SmoothGrad and Integrated Gradients."""

from __future__ import annotations

import torch

from ..input_gradients import gradient_magnitude, integrated_gradients, smoothgrad
from ..registry import BACKWARD, Context, Method, MethodInfo, Needs, Progress, guided_fusion, recorded
from .cams import UNITS as CAM_UNITS


def _guided_backprop(context: Context, progress: Progress) -> torch.Tensor:
    return gradient_magnitude(recorded(context.recording.guided_grads, "guided_gradient"))


def _gradient(context: Context, progress: Progress) -> torch.Tensor:
    return gradient_magnitude(recorded(context.recording.input_grads, "input_gradient"))


def _directions_of(context: Context):
    return lambda b, logits: context.targets.image_directions(b, logits, context.sign)


def _smoothgrad(context: Context, progress: Progress) -> torch.Tensor:
    options = context.options
    grads = smoothgrad(
        context.module,
        context.x,
        _directions_of(context),
        options.smoothgrad_samples,
        options.smoothgrad_noise,
        seed=options.seed,
        progress=progress,
    )
    return gradient_magnitude(grads)


def _integrated_gradients(context: Context, progress: Progress) -> torch.Tensor:
    attributions = integrated_gradients(
        context.module, context.x, _directions_of(context), context.options.ig_steps, progress=progress
    )
    return attributions.sum(dim=-3).clamp(min=0)


_GRADCAM = next(unit for unit in CAM_UNITS if unit.info.name == "gradcam")
_MAGNITUDE = "shows a magnitude, which has no sign to flip: no counterfactual form."

UNITS = (
    Method(
        MethodInfo(
            "guided_backprop",
            "Guided Backprop",
            "input-gradient",
            "Springenberg et al., ICLR-W 2015",
            "Input gradient where every ReLU also blocks negative gradients: sharp edges, weakly class-dependent.",
            counterfactual=True,
            needs=Needs(guided_gradient=True),
        ),
        _guided_backprop,
    ),
    guided_fusion(
        _GRADCAM,
        "guided_gradcam",
        "Guided Grad-CAM",
        "Selvaraju et al., ICCV 2017",
        "Guided Backprop x upsampled Grad-CAM: high resolution and class-discriminative.",
    ),
    Method(
        MethodInfo(
            "gradient",
            "Gradient",
            "input-gradient",
            "Simonyan et al., ICLR-W 2014",
            "Magnitude of the class score's gradient with respect to each pixel.",
            counterfactual=False,
            needs=Needs(input_gradient=True),
        ),
        _gradient,
        no_counterfactual=f"The gradient map {_MAGNITUDE}",
    ),
    Method(
        MethodInfo(
            "smoothgrad",
            "SmoothGrad",
            "input-gradient",
            "Smilkov et al., 2017",
            "Gradient magnitude averaged over noisy copies of the image: less noise.",
            counterfactual=False,
            slow=True,
            needs=Needs(),
        ),
        _smoothgrad,
        passes=lambda q: q.options.smoothgrad_samples * q.targets * (1 + BACKWARD),
        no_counterfactual=f"SmoothGrad {_MAGNITUDE}",
    ),
    Method(
        MethodInfo(
            "integrated_gradients",
            "Integrated Gradients",
            "input-gradient",
            "Sundararajan et al., ICML 2017",
            "Gradients integrated along a path from a baseline (zero) image; the attributions "
            "add up to the score difference.",
            counterfactual=True,
            slow=True,
            needs=Needs(),
        ),
        _integrated_gradients,
        passes=lambda q: q.options.ig_steps * q.targets * (1 + BACKWARD),
    ),
)
