"""The class activation map formulas, each as written in its paper.

Every function takes a layer's activations ``A`` of shape [B, C, h, w] and, where the method uses
them, the gradients ``G`` of each target's score with respect to ``A``, of shape [T, B, C, h, w]
(already negated for a counterfactual map). It returns raw maps [T, B, h, w], before the final ReLU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SPATIAL = (-2, -1)


def weighted_sum(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """sum_k weights[..., k] * A_k: channel weights [T, B, C] (or [T, B, C, h, w]) -> maps [T, B, h, w]."""
    if weights.dim() == 3:
        weights = weights[..., None, None]
    return (weights * activations).sum(dim=-3)


def cam(activations: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """CAM (Zhou et al. 2016): M_c = sum_k w^c_k A_k with w the linear classifier's weights [T, B, C]."""
    return weighted_sum(class_weights, activations)


def gradcam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017): alpha_k = mean_ij dY/dA_kij."""
    return weighted_sum(grads.mean(dim=SPATIAL), activations)


def gradcam_plus_plus(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018), eq. 19 with the exponential score:

    alpha_kij = g^2 / (2 g^2 + sum_ab A_kab g^3),  w_k = sum_ij alpha_kij relu(g_kij).
    """
    g2 = grads.pow(2)
    denominator = 2 * g2 + activations.sum(dim=SPATIAL, keepdim=True) * g2 * grads
    alpha = torch.where(denominator != 0, g2 / torch.where(denominator != 0, denominator, 1), 0)
    weights = (alpha * grads.clamp(min=0)).sum(dim=SPATIAL)
    return weighted_sum(weights, activations)


def xgradcam(activations: torch.Tensor, grads: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): w_k = sum_ij (A_kij / sum_ab A_kab) dY/dA_kij."""
    totals = activations.sum(dim=SPATIAL, keepdim=True) + eps
    return weighted_sum((grads * activations / totals).sum(dim=SPATIAL), activations)


def hirescam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """HiResCAM (Draelos & Carin 2020): M = sum_k dY/dA_k (element-wise) A_k."""
    return weighted_sum(grads, activations)


def layercam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): M = sum_k relu(dY/dA_k) (element-wise) A_k."""
    return weighted_sum(grads.clamp(min=0), activations)


def principal_directions(centred: torch.Tensor) -> torch.Tensor:
    """The right singular vectors [N, K, C] of X = centred [N, L, C], K = min(L, C), by descending
    singular value, from the eigendecomposition of the smaller Gram matrix, in float64: X^T X [C, C]
    (its eigenvectors are the right singular vectors) or, when L < C, X X^T [L, L] (eigenvectors u,
    then v = X^T u / |X^T u|; a zero singular value gives a zero vector). The same directions as
    torch.linalg.svd at a fraction of its cost on the tall [h*w, C] matrices of early layers; each
    vector's sign is arbitrary, as the SVD's.
    """
    matrix = centred.double()
    tall = matrix.shape[-2] >= matrix.shape[-1]
    gram = matrix.transpose(-1, -2) @ matrix if tall else matrix @ matrix.transpose(-1, -2)
    _, eigenvectors = torch.linalg.eigh(gram)  # ascending eigenvalues
    eigenvectors = eigenvectors.flip(-1)
    if tall:
        return eigenvectors.transpose(-1, -2)
    right = matrix.transpose(-1, -2) @ eigenvectors  # [N, C, K]: sigma_k v_k
    norms = right.norm(dim=-2, keepdim=True)
    right = torch.where(norms > 0, right / torch.where(norms > 0, norms, 1), 0)  # sigma 0: no direction
    return right.transpose(-1, -2)


def principal_projection(features: torch.Tensor, component: int = 0) -> torch.Tensor:
    """Projection of each location's channel vector on a principal component (Eigen-CAM).

    features: [..., C, h, w]. The principal directions are the right singular vectors of the
    centred [h*w, C] matrix (`principal_directions`); the uncentred features are projected on
    direction ``component``. The sign is chosen so that the map correlates positively with the
    channel-mean of the features, that is, it points at the activations rather than away from them.
    """
    *lead, channels, h, w = features.shape
    if component >= min(h * w, channels):
        raise ValueError(f"component {component} does not exist for a {channels}x{h}x{w} layer")
    matrix = features.reshape(-1, channels, h * w).transpose(1, 2).float()  # [N, hw, C]
    centred = matrix - matrix.mean(dim=1, keepdim=True)
    directions = principal_directions(centred)
    projection = torch.einsum("nlc,nc->nl", matrix, directions[:, component, :].to(matrix.dtype))  # [N, hw]
    mean_map = matrix.mean(dim=2)
    agreement = ((projection - projection.mean(1, keepdim=True)) * (mean_map - mean_map.mean(1, keepdim=True))).sum(
        dim=1
    )
    projection = projection * torch.where(agreement < 0, -1.0, 1.0)[:, None]
    return projection.reshape(*lead, h, w)


def eigencam(activations: torch.Tensor, component: int = 0) -> torch.Tensor:
    """Eigen-CAM (Muhammad & Yeasin 2020): activations projected on their principal component.

    Class-agnostic: returns [1, B, h, w], the same map for every target.
    """
    return principal_projection(activations, component)[None]


def eigengradcam(activations: torch.Tensor, grads: torch.Tensor, component: int = 0) -> torch.Tensor:
    """EigenGrad-CAM: principal component of gradient x activation (class-discriminative)."""
    return principal_projection(grads * activations, component)


def score_weighted(activations: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Score-CAM and Ablation-CAM: maps from perturbation scores [T, B, C] used as channel weights."""
    return weighted_sum(scores, activations)


GRADIENT_CAMS = {
    "gradcam": gradcam,
    "gradcam++": gradcam_plus_plus,
    "xgradcam": xgradcam,
    "hirescam": hirescam,
    "layercam": layercam,
    "eigengradcam": eigengradcam,
}


def upsample(maps: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """[T, B, h, w] -> [T, B, H, W] by bilinear interpolation (half-pixel centres)."""
    target = tuple(size)
    if tuple(maps.shape[-2:]) == target:
        return maps
    count, batch = maps.shape[:2]
    flat = maps.reshape(count * batch, 1, *maps.shape[-2:]).float()
    return F.interpolate(flat, size=target, mode="bilinear", align_corners=False).reshape(count, batch, *target)
