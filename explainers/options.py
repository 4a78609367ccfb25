"""The tuning knobs of an explanation request, with the papers' (or their authors' code's) defaults."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Options:
    """Tuning knobs with the papers' defaults.

    batch_size: images per perturbed forward pass; None: 64 on CUDA, 16 on the CPU for Score-CAM
    and RISE, and 8 times that for Ablation-CAM (whose batches run only the network after the layer).
    score_cam_baseline: Score-CAM weights p_c(X * H_k) - p_c(0) (the paper's "increase in
    confidence") instead of p_c(X * H_k) (its authors' code, the default). A counterfactual
    Score-CAM always uses the baseline form: negated plain probabilities would all be negative.
    rise_masks: RISE's mask count; None: 8000 on CUDA (the paper), 1000 on the CPU.
    rise_cells, rise_probability: RISE's mask grid s x s and the probability p of keeping a cell.
    rollout_head_fusion: how attention rollout merges the heads of a block: "mean", "max" or "min".
    seed: SmoothGrad's noise and RISE's masks.
    """

    eigen_component: int = 0
    batch_size: int | None = None
    smoothgrad_samples: int = 25
    smoothgrad_noise: float = 0.15
    ig_steps: int = 32
    score_cam_baseline: bool = False
    rise_masks: int | None = None
    rise_cells: int = 7
    rise_probability: float = 0.5
    rollout_head_fusion: str = "mean"
    seed: int = 0

    def perturbation_batch(self, cuda: bool) -> int:
        """The perturbation batch size on this device (Ablation-CAM multiplies it by 8)."""
        return self.batch_size or (64 if cuda else 16)
