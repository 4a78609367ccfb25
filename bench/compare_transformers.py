"""Vision transformers: our engine and pytorch-grad-cam side by side, in one process.

    pip install -r requirements-bench.txt
    python bench/compare_transformers.py [--quick] [--perturbation [ablationcam] [scorecam]] [--device cuda]

A timm ViT-B/16 with random weights (seeded; nothing to download), layer blocks.11.norm1, the
top-3 classes of one photo. Ours: every CAM method that pytorch-grad-cam also has, in one call,
with no reshape code (the layer's tokens become a 14 x 14 grid inside the engine). Theirs: the same
methods, one call each, the three targets batched as three copies of the image, with the reshape
transform of its ViT tutorial. Prints the median time of several runs, the ratio, and the Pearson
correlation of the two libraries' maps. Score-CAM and Ablation-CAM (768 channels: 768 masked
forward passes; theirs runs the whole ViT 768 times per target) only with --perturbation, timed
once. Only ratios measured in one run are meaningful (the machine's speed varies between runs).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: busy-waiting OpenMP is erratic on 2 cores
os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
from common import (  # noqa: E402
    GRADIENT_CAMS,
    PERTURBATION_CAMS,
    Peer,
    device_name,
    forward_backward,
    print_comparison,
    side_by_side,
    timed,
)

import explainers  # noqa: E402
from models.timm_zoo import preprocessing_of  # noqa: E402


def vit_reshape(tensor: torch.Tensor, height: int = 14, width: int = 14) -> torch.Tensor:
    """pytorch-grad-cam's ViT reshape transform (its tutorial): drop the class token, tokens to a grid."""
    result = tensor[:, 1:, :].reshape(tensor.size(0), height, width, tensor.size(2))
    return result.transpose(2, 3).transpose(1, 2)


class TransformerPeer(Peer):
    """pytorch-grad-cam on a ViT: each CAM with the reshape transform, Ablation-CAM with its ViT layer."""

    def cam(self, name: str) -> np.ndarray:
        """[T, H, W] maps of one CAM method."""
        extra = {}
        if name == "ablationcam":
            from pytorch_grad_cam.ablation_layer import AblationLayerVit

            extra["ablation_layer"] = AblationLayerVit()
        with self.classes[name](
            model=self.module, target_layers=[self.layer], reshape_transform=vit_reshape, **extra
        ) as cam:
            cam.batch_size = self.batch_size
            return cam(input_tensor=self.x, targets=self.targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="vit_base_patch16_224")
    parser.add_argument("--layer", default="blocks.11.norm1")
    parser.add_argument("--image", default=str(ROOT / "assets" / "cat_and_coffee.jpg"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="3 runs per measurement, no perturbation methods")
    parser.add_argument(
        "--perturbation",
        nargs="*",
        choices=PERTURBATION_CAMS,
        default=None,
        help="also these (all when none is named): slow, timed once",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="perturbation batch, both libraries")
    args = parser.parse_args()
    repeat = min(args.repeat, 3) if args.quick else args.repeat

    import pytorch_grad_cam
    import timm

    torch.manual_seed(0)
    module = timm.create_model(args.model, pretrained=False).eval().to(args.device)
    x = preprocessing_of(module)(Image.open(args.image).convert("RGB")).to(args.device)
    with torch.no_grad():
        targets = module(x)[0].topk(3).indices.tolist()
    print(
        f"# {args.model} (random weights, seed 0), layer {args.layer}, image {Path(args.image).name}, "
        f"top-3 {targets}, median of {repeat}"
    )
    print(
        f"# torch {torch.__version__}, timm {timm.__version__}, pytorch-grad-cam "
        f"{getattr(pytorch_grad_cam, '__version__', '1.5.x')}, device {args.device} ({device_name(args.device)}), "
        f"threads {torch.get_num_threads()}"
    )
    options = explainers.Options(batch_size=args.batch_size)
    peer = TransformerPeer(module, module.get_submodule(args.layer), x, targets, args.batch_size)

    step, _ = timed(forward_backward(module, x, targets[0]), repeat)
    module.zero_grad(set_to_none=True)
    ours_s, theirs_s, correlations = side_by_side(
        lambda: explainers.explain(module, x, GRADIENT_CAMS, targets=targets, layer=args.layer, options=options),
        lambda: peer.run(GRADIENT_CAMS),
        GRADIENT_CAMS,
        targets,
        repeat,
    )
    rows = [(f"{len(GRADIENT_CAMS)} gradient CAMs, top-3, one call", ours_s, theirs_s)]
    if args.perturbation is not None and not args.quick:
        for name in args.perturbation or PERTURBATION_CAMS:  # long: one run each, warmed up by the runs above
            ours_s, theirs_s, found = side_by_side(
                lambda name=name: explainers.explain(
                    module, x, [name], targets=targets, layer=args.layer, options=options
                ),
                lambda name=name: peer.run([name]),
                [name],
                targets,
                1,
                False,
            )
            rows.append((f"{name}, top-3", ours_s, theirs_s))
            correlations.update(found)

    print_comparison(rows, step, correlations)


if __name__ == "__main__":
    main()
