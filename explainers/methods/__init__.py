"""The catalogue of explanation methods: every built-in unit, registered in display order.

One module per family (`cams`, `perturbations`, `at_input`, `attention`); the registry itself
(`Method`, `Needs`, `register`...) is `explainers.registry`, re-exported here.
"""

from ..registry import (
    FUSION_PREFIX,
    METHODS,
    Context,
    Method,
    MethodInfo,
    Needs,
    PassQuery,
    Recording,
    fused_cam,
    get_method,
    method_info,
    register,
    unregister,
)
from . import at_input, attention, cams, perturbations

for _family in (cams, perturbations, at_input, attention):
    for _unit in _family.UNITS:
        register(_unit)

__all__ = [
    "FUSION_PREFIX",
    "METHODS",
    "Context",
    "Method",
    "MethodInfo",
    "Needs",
    "PassQuery",
    "Recording",
    "fused_cam",
    "get_method",
    "method_info",
    "register",
    "unregister",
]
