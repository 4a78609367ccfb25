"""The catalogue of explanation methods: names, papers and what each one needs."""
from __future__ import annotations

from dataclasses import dataclass

from .errors import ExplainerError


@dataclass(frozen=True)
class MethodInfo:
    """What a person (and the engine) needs to know about one method."""

    name: str
    title: str
    kind: str  # "cam" | "perturbation" | "input-gradient" | "fusion"
    paper: str
    summary: str
    counterfactual: bool  # has a "why not this class" form
    slow: bool = False  # worth a progress bar
    needs_layer: bool = True  # reads a layer's activations
    needs_layer_gradient: bool = False  # needs d(score)/d(layer)
    needs_input_gradient: bool = False  # needs d(score)/d(input) from the shared forward pass


_CAM_GRADIENT = dict(kind="cam", needs_layer_gradient=True)

METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("cam", "CAM", "cam", "Zhou et al., CVPR 2016",
                   "Weights each channel by the classifier's own weight; only for global-average-pooling "
                   "+ one linear layer heads.", counterfactual=True),
        MethodInfo("gradcam", "Grad-CAM", paper="Selvaraju et al., ICCV 2017",
                   summary="Weights each channel by its spatially averaged gradient.",
                   counterfactual=True, **_CAM_GRADIENT),
        MethodInfo("gradcam++", "Grad-CAM++", paper="Chattopadhay et al., WACV 2018",
                   summary="Grad-CAM with pixel-wise weights from higher-order gradients; better for "
                   "several instances of a class.", counterfactual=True, **_CAM_GRADIENT),
        MethodInfo("xgradcam", "XGrad-CAM", paper="Fu et al., BMVC 2020",
                   summary="Channel weights that satisfy the sensitivity and conservation axioms "
                   "(activation-weighted gradients).", counterfactual=True, **_CAM_GRADIENT),
        MethodInfo("hirescam", "HiResCAM", paper="Draelos & Carin, 2020",
                   summary="Element-wise gradient x activation, summed over channels: faithful to the "
                   "model where Grad-CAM averages.", counterfactual=True, **_CAM_GRADIENT),
        MethodInfo("layercam", "LayerCAM", paper="Jiang et al., IEEE TIP 2021",
                   summary="Positive gradients weight each location separately: finer maps, works on "
                   "shallow layers.", counterfactual=True, **_CAM_GRADIENT),
        MethodInfo("scorecam", "Score-CAM", "perturbation", "Wang et al., CVPR-W 2020",
                   "Masks the image with each upsampled channel and weights the channel by the class "
                   "probability it keeps; no gradients.", counterfactual=True, slow=True),
        MethodInfo("ablationcam", "Ablation-CAM", "perturbation", "Desai & Ramaswamy, WACV 2020",
                   "Weights each channel by how much the class score drops when the channel is "
                   "zeroed; no gradients.", counterfactual=True, slow=True),
        MethodInfo("eigencam", "Eigen-CAM", "cam", "Muhammad & Yeasin, IJCNN 2020",
                   "First principal component of the layer's activations; class-agnostic.",
                   counterfactual=False),
        MethodInfo("eigengradcam", "EigenGrad-CAM", paper="pytorch-grad-cam (Gildenblat), after Eigen-CAM",
                   summary="First principal component of gradient x activation: class-discriminative "
                   "Eigen-CAM.", counterfactual=True, **_CAM_GRADIENT),
        MethodInfo("guided_backprop", "Guided Backprop", "input-gradient", "Springenberg et al., ICLR-W 2015",
                   "Input gradient where every ReLU also blocks negative gradients: sharp edges, weakly "
                   "class-dependent.", counterfactual=True, needs_layer=False, needs_input_gradient=True),
        MethodInfo("guided_gradcam", "Guided Grad-CAM", "fusion", "Selvaraju et al., ICCV 2017",
                   "Guided Backprop x upsampled Grad-CAM: high resolution and class-discriminative.",
                   counterfactual=True, needs_layer_gradient=True, needs_input_gradient=True),
        MethodInfo("gradient", "Gradient", "input-gradient", "Simonyan et al., ICLR-W 2014",
                   "Magnitude of the class score's gradient with respect to each pixel.",
                   counterfactual=False, needs_layer=False, needs_input_gradient=True),
        MethodInfo("smoothgrad", "SmoothGrad", "input-gradient", "Smilkov et al., 2017",
                   "Gradient magnitude averaged over noisy copies of the image: less noise.",
                   counterfactual=False, slow=True, needs_layer=False),
        MethodInfo("integrated_gradients", "Integrated Gradients", "input-gradient",
                   "Sundararajan et al., ICML 2017",
                   "Gradients integrated along a path from a baseline (zero) image; the attributions "
                   "add up to the score difference.", counterfactual=True, slow=True, needs_layer=False),
    )
}

FUSION_PREFIX = "guided_"
CAM_METHODS = tuple(n for n, m in METHODS.items() if m.kind in ("cam", "perturbation"))


def method_info(name: str) -> MethodInfo:
    """The MethodInfo for `name`, also for guided fusions such as "guided_scorecam"."""
    if name in METHODS:
        return METHODS[name]
    base = name[len(FUSION_PREFIX):] if name.startswith(FUSION_PREFIX) else None
    if base in CAM_METHODS:
        cam = METHODS[base]
        return MethodInfo(
            name, f"Guided {cam.title}", "fusion", f"{cam.paper} + Springenberg et al.",
            f"Guided Backprop x upsampled {cam.title}.", counterfactual=cam.counterfactual,
            slow=cam.slow, needs_layer_gradient=cam.needs_layer_gradient, needs_input_gradient=True)
    known = ", ".join(METHODS)
    raise ExplainerError(f"Unknown method {name!r}. Known methods: {known} "
                         f"(and guided_<cam method> fusions such as guided_scorecam).")


def uses_guided_backprop(info: MethodInfo) -> bool:
    """Guided backprop itself and every guided fusion: they need the guided ReLU gates."""
    return info.name == "guided_backprop" or info.kind == "fusion"


def fused_cam(name: str) -> str | None:
    """The CAM a fusion method multiplies with guided backprop, or None for other methods."""
    info = method_info(name)
    return name[len(FUSION_PREFIX):] if info.kind == "fusion" else None
