"""ImageNet classifiers for visual explanations: registry, weights, preprocessing, labels, layers,
and the one safe loader of users' image files (open_image).

`import models` imports neither torchvision nor timm; the loaders import them when needed.
"""

from .classifier import Classifier
from .custom import load_custom
from .errors import ModelError, ModelNotAvailableError
from .images import MAX_ASPECT_RATIO, MAX_EXIF_BYTES, MAX_PIXELS, ImageError, open_image
from .labels import imagenet_labels, imagenet_wnids, read_class_names
from .layers import LayerInfo, default_layer, default_layer_choice, default_layer_reason, discover_layers
from .preprocessing import Preprocessing, to_rgb
from .registry import DEFAULT_MODEL, ModelInfo, available_models, clear_cache, load

__all__ = [
    "DEFAULT_MODEL",
    "MAX_ASPECT_RATIO",
    "MAX_EXIF_BYTES",
    "MAX_PIXELS",
    "Classifier",
    "ImageError",
    "LayerInfo",
    "ModelError",
    "ModelInfo",
    "ModelNotAvailableError",
    "Preprocessing",
    "available_models",
    "clear_cache",
    "default_layer",
    "default_layer_choice",
    "default_layer_reason",
    "discover_layers",
    "imagenet_labels",
    "imagenet_wnids",
    "load",
    "load_custom",
    "open_image",
    "read_class_names",
    "to_rgb",
]
