"""Diagnose a classifier over a labelled dataset with visual explanations (Grad-CAM paper, Sec. 4.1, 6):
the misclassified images explained for their true and predicted classes, weakly-supervised boxes
(the 15 % rule) scored against ground truth, and bias hints; on this machine or a Ray cluster.

    python -m explainers.diagnose IMAGES --model NAME --methods gradcam --out DIR

    from explainers.diagnose import ModelSpec, Settings, diagnose
    summary = diagnose("val/", ModelSpec("efficientnet_lite0"), "out/", Settings(methods=("gradcam",)))
"""

from .archive import pack_results, unpack_dataset
from .dataset import DatasetError, Sample, read_dataset
from .groundtruth import read_boxes
from .model_spec import ModelSpec
from .run import ENGINES, diagnose
from .work import Settings

__all__ = [
    "ENGINES",
    "DatasetError",
    "ModelSpec",
    "Sample",
    "Settings",
    "diagnose",
    "pack_results",
    "read_boxes",
    "read_dataset",
    "unpack_dataset",
]
