"""Visual explanations of image classifiers: the CAM family, perturbation, gradient and attention methods.

Pure PyTorch, no UI. Quick use::

    import models, explainers
    m = models.load("efficientnet_lite0")
    x = m.preprocess(image)
    heat = explainers.saliency(m, x, target=281, method="gradcam")
    many = explainers.explain(m, x, ["gradcam", "scorecam"], top_k=3)
    why = explainers.explain(m, x, ["gradcam"], targets=[explainers.Contrast(281, 967)])

Methods are units of a registry (`explainers.registry`): `register(Method(...))` adds one.
"""

from .engine import Explanation, SaliencyMap, explain, normalise, saliency
from .errors import ExplainerError
from .methods import METHODS, Method, MethodInfo, Needs, method_info, register, unregister
from .options import Options
from .targets import ClassSet, Contrast, imagenet_class_set
from .validation import availability

__all__ = [
    "METHODS",
    "ClassSet",
    "Contrast",
    "ExplainerError",
    "Explanation",
    "Method",
    "MethodInfo",
    "Needs",
    "Options",
    "SaliencyMap",
    "availability",
    "explain",
    "imagenet_class_set",
    "method_info",
    "normalise",
    "register",
    "saliency",
    "unregister",
]
