"""Cost of the layer sweep (explainers/sweep.py): the gradient-family CAMs at 8 layers (one forward
pass with 8 taps, one backward pass to all of them, the maps) against one plain forward + backward of
the model (the top class's logit backpropagated to the parameters), in one run, median of --runs.

    OMP_WAIT_POLICY=PASSIVE python bench/sweep_cost.py [--model efficientnet_lite0] [--runs 7] [--device cpu|cuda]
        [--with-scores]

--with-scores also times the faithfulness scores (deletion + insertion, 20 steps) of one method's
8 maps, once: they cost forward passes of perturbed images, not gradients, and are reported apart.

Also times EigenGrad-CAM's principal projection at the 8 layers' shapes (random features) in the
engine's form (eigendecomposition of the small Gram matrix, explainers.cam_formulas) against the
full SVD of the [h*w, C] matrix it replaced.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import models  # noqa: E402
from explainers.cam_formulas import principal_projection  # noqa: E402
from explainers.sweep import default_layers, sweep  # noqa: E402

GRADIENT_CAMS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigengradcam")
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def median_seconds(work: Callable[[], object], runs: int) -> float:
    """The median wall time of `runs` calls after one warm-up call."""
    work()
    times = []
    for _ in range(runs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        work()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def plain_forward_backward(module: torch.nn.Module, x: torch.Tensor) -> None:
    """One forward pass and the top logit's backward pass to the parameters."""
    module.zero_grad(set_to_none=True)
    logits = module(x)
    logits[0, logits[0].argmax()].backward()


def svd_projection(features: torch.Tensor) -> torch.Tensor:
    """The first principal projection by a full SVD of each centred [h*w, C] matrix (the former form;
    the sign step, the same in both, left out)."""
    channels, h, w = features.shape[-3:]
    matrix = features.reshape(-1, channels, h * w).transpose(1, 2)
    _, _, vh = torch.linalg.svd(matrix - matrix.mean(dim=1, keepdim=True), full_matrices=False)
    return torch.einsum("nlc,nc->nl", matrix, vh[:, 0, :]).reshape(*features.shape[:-3], h, w)


def projection_seconds(shapes: list[tuple[int, ...]], device: torch.device, runs: int) -> tuple[float, float]:
    """(eigh form, SVD form): median seconds to project random features of every shape."""
    generator = torch.Generator().manual_seed(0)
    features = [torch.randn(1, *shape, generator=generator).to(device) for shape in shapes]
    eigh = median_seconds(lambda: [principal_projection(f) for f in features], runs)
    svd = median_seconds(lambda: [svd_projection(f) for f in features], runs)
    return eigh, svd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--device", choices=("cpu", "cuda"))
    parser.add_argument("--with-scores", action="store_true")
    args = parser.parse_args()
    classifier = models.load(args.model, args.device)
    photos = sorted(SAMPLE.glob("*.JPEG")) + sorted(SAMPLE.glob("*.jpg")) if SAMPLE.is_dir() else []
    if photos:
        x = classifier.preprocess(models.open_image(photos[0]))
    else:
        x = torch.randn(1, 3, *classifier.input_size)
    x = x.to(next(classifier.module.parameters()).device)
    layers = default_layers(classifier)
    classifier.module.eval()
    base = median_seconds(lambda: plain_forward_backward(classifier.module, x), args.runs)
    maps = median_seconds(lambda: sweep(classifier, x, GRADIENT_CAMS, layers, score=False), args.runs)
    weighted = [m for m in GRADIENT_CAMS if m != "eigengradcam"]
    maps_weighted = median_seconds(lambda: sweep(classifier, x, weighted, layers, score=False), args.runs)
    print(f"model {args.model}, device {x.device}, torch threads {torch.get_num_threads()}, input {list(x.shape)}")
    print(f"layers ({len(layers)}): {', '.join(layers)}")
    print(f"methods ({len(GRADIENT_CAMS)}): {', '.join(GRADIENT_CAMS)}")
    print(f"plain forward + backward: {base * 1000:.1f} ms (median of {args.runs})")
    print(f"sweep, maps of {len(GRADIENT_CAMS)} methods x {len(layers)} layers: {maps * 1000:.1f} ms")
    print(f"ratio sweep / (forward + backward): {maps / base:.2f}x")
    print(f"without eigengradcam: {maps_weighted * 1000:.1f} ms = {maps_weighted / base:.2f}x")
    shapes = [info.shape for info in classifier.layers if info.name in layers]
    eigh, svd = projection_seconds(shapes, x.device, args.runs)
    print(
        f"EigenGrad-CAM's projection at the {len(shapes)} layers: Gram eigh {eigh * 1000:.1f} ms, "
        f"full SVD {svd * 1000:.1f} ms ({svd / eigh:.1f}x)"
    )
    if args.with_scores:
        start = time.perf_counter()
        result = sweep(classifier, x, ["gradcam"], layers)
        scored = time.perf_counter() - start
        print(f"sweep of gradcam with scores (20 steps, 8 maps): {scored * 1000:.0f} ms = {scored / base:.1f}x")
        print(f"recommended layer: {result.recommended()}")


if __name__ == "__main__":
    main()
