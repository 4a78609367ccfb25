"""Visual explanations of image classifiers: the CAM family, perturbation and gradient methods.

Pure PyTorch, no UI. Quick use::

    import models, explainers
    m = models.load("efficientnet_lite0")
    x = m.preprocess(image)
    heat = explainers.saliency(m, x, target=281, method="gradcam")
    many = explainers.explain(m, x, ["gradcam", "scorecam"], top_k=3)
"""
from .engine import Explanation, Options, SaliencyMap, explain, normalise, saliency
from .errors import ExplainerError
from .methods import METHODS, MethodInfo, method_info
from .validation import availability

__all__ = ["METHODS", "ExplainerError", "Explanation", "MethodInfo", "Options", "SaliencyMap",
           "availability", "explain", "method_info", "normalise", "saliency"]
