"""The CAM family read from the shared passes: CAM, the gradient-weighted CAMs, Eigen-CAM."""

from __future__ import annotations

import torch

from .. import cam_formulas as formulas
from ..errors import ExplainerError
from ..registry import Context, Method, MethodInfo, Needs, Progress, recorded
from ..validation import linear_head_weights

LAYER_GRADIENT = Needs(layer=True, layer_gradient=True)


def _cam(context: Context, progress: Progress) -> torch.Tensor:
    """CAM: the classifier's weights of each target (a target's direction over the logits applied
    to the weight matrix: W[c] for a class, W[a] - W[b] for a contrast)."""
    record = context.recording
    activations = recorded(record.activations, "layer")
    logits = record.logits.detach()
    weights = linear_head_weights(context.module, activations, logits)  # [K, C]
    class_weights = context.targets.directions(logits, context.sign) @ weights  # [T, B, C]
    return formulas.cam(activations, class_weights).clamp(min=0)


def _cam_check(module, activations: torch.Tensor, logits: torch.Tensor) -> str | None:
    try:
        linear_head_weights(module, activations, logits)
    except ExplainerError as error:
        return str(error)
    return None


def _gradient_cam(name: str):
    def compute(context: Context, progress: Progress) -> torch.Tensor:
        record = context.recording
        return formulas.GRADIENT_CAMS[name](
            recorded(record.activations, "layer"), recorded(record.layer_grads, "layer_gradient")
        ).clamp(min=0)

    return compute


def _eigencam(context: Context, progress: Progress) -> torch.Tensor:
    activations = recorded(context.recording.activations, "layer")
    return formulas.eigencam(activations, context.options.eigen_component).clamp(min=0)


def _eigengradcam(context: Context, progress: Progress) -> torch.Tensor:
    record = context.recording
    return formulas.eigengradcam(
        recorded(record.activations, "layer"),
        recorded(record.layer_grads, "layer_gradient"),
        context.options.eigen_component,
    ).clamp(min=0)


def _gradient_unit(name: str, title: str, paper: str, summary: str) -> Method:
    return Method(
        MethodInfo(name, title, "cam", paper, summary, counterfactual=True, needs=LAYER_GRADIENT), _gradient_cam(name)
    )


UNITS = (
    Method(
        MethodInfo(
            "cam",
            "CAM",
            "cam",
            "Zhou et al., CVPR 2016",
            "Weights each channel by the classifier's own weight; only for global-average-pooling "
            "+ one linear layer heads.",
            counterfactual=True,
        ),
        _cam,
        check_layer=_cam_check,
    ),
    _gradient_unit(
        "gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017", "Weights each channel by its spatially averaged gradient."
    ),
    _gradient_unit(
        "gradcam++",
        "Grad-CAM++",
        "Chattopadhay et al., WACV 2018",
        "Grad-CAM with pixel-wise weights from higher-order gradients; better for several instances of a class.",
    ),
    _gradient_unit(
        "xgradcam",
        "XGrad-CAM",
        "Fu et al., BMVC 2020",
        "Channel weights that satisfy the sensitivity and conservation axioms (activation-weighted gradients).",
    ),
    _gradient_unit(
        "hirescam",
        "HiResCAM",
        "Draelos & Carin, 2020",
        "Element-wise gradient x activation, summed over channels: faithful to the model where Grad-CAM averages.",
    ),
    _gradient_unit(
        "layercam",
        "LayerCAM",
        "Jiang et al., IEEE TIP 2021",
        "Positive gradients weight each location separately: finer maps, works on shallow layers.",
    ),
    Method(
        MethodInfo(
            "eigencam",
            "Eigen-CAM",
            "cam",
            "Muhammad & Yeasin, IJCNN 2020",
            "First principal component of the layer's activations; class-agnostic.",
            counterfactual=False,
        ),
        _eigencam,
        no_counterfactual="Eigen-CAM does not depend on the class, so it has no counterfactual form.",
    ),
    Method(
        MethodInfo(
            "eigengradcam",
            "EigenGrad-CAM",
            "cam",
            "pytorch-grad-cam (Gildenblat), after Eigen-CAM",
            "First principal component of gradient x activation: class-discriminative Eigen-CAM.",
            counterfactual=True,
            needs=LAYER_GRADIENT,
        ),
        _eigengradcam,
    ),
)
