"""Our engine and pytorch-grad-cam side by side, in one process, on the same model, layer and targets.

    pip install -r requirements-bench.txt
    python bench/compare_pytorch_grad_cam.py [--image assets/cat.jpg] [--model efficientnet_lite0]

Reports, for the top-3 classes of one image:
- the gradient family (every gradient-based CAM, guided backprop, guided Grad-CAM) in one call of
  ours, against one plain forward + backward of the model, and against pytorch-grad-cam running
  the same methods (one call per method, the three targets batched as three copies of the image);
- Score-CAM and Ablation-CAM for the top-3, ours in one call, theirs likewise batched;
- the Pearson correlation between the two libraries' maps of each method.
Only ratios measured in this one run are meaningful (the machine's speed varies between runs).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: busy-waiting OpenMP is erratic on 2 cores
os.environ.setdefault("TQDM_DISABLE", "1")  # pytorch-grad-cam's progress bars

import argparse
import sys
from pathlib import Path

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
import models  # noqa: E402

GRADIENT_FAMILY = [*GRADIENT_CAMS, "guided_backprop", "guided_gradcam"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--image", default=str(ROOT / "assets" / "cat.jpg"))
    parser.add_argument("--layer", default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16, help="perturbation batch, both libraries")
    parser.add_argument("--skip-perturbation", action="store_true", help="skip Score-CAM / Ablation-CAM")
    args = parser.parse_args()

    import pytorch_grad_cam

    classifier = models.load(args.model, device=args.device)
    module = classifier.module
    layer = args.layer or classifier.default_layer
    x = classifier.preprocess(Image.open(args.image).convert("RGB")).to(args.device)
    with torch.no_grad():
        targets = module(x)[0].topk(3).indices.tolist()
    print(f"# {args.model}, layer {layer}, image {Path(args.image).name}, top-3 {targets}")
    print(
        f"# torch {torch.__version__}, pytorch-grad-cam {getattr(pytorch_grad_cam, '__version__', '1.5.x')}, "
        f"device {args.device} ({device_name(args.device)}), "
        f"threads {torch.get_num_threads()}"
    )
    options = explainers.Options(batch_size=args.batch_size)
    peer = Peer(module, dict(module.named_modules())[layer], x, targets, args.batch_size)

    step, _ = timed(forward_backward(module, x, targets[0]), args.repeat)
    module.zero_grad(set_to_none=True)
    ours_s, theirs_s, correlations = side_by_side(
        lambda: explainers.explain(classifier, x, GRADIENT_FAMILY, targets=targets, layer=layer, options=options),
        lambda: peer.run(GRADIENT_FAMILY),
        GRADIENT_FAMILY,
        targets,
        args.repeat,
    )
    rows = [("gradient family, top-3", ours_s, theirs_s)]

    if not args.skip_perturbation:
        # Long on a CPU: one run each, warmed up by the runs above. On a GPU, one warm-up run each
        # first: the first half-precision pass pays for cuDNN's kernel choice, seconds on its own.
        warm_up = args.device == "cuda"
        for name in PERTURBATION_CAMS:
            ours_s, theirs_s, found = side_by_side(
                lambda name=name: explainers.explain(
                    classifier, x, [name], targets=targets, layer=layer, options=options
                ),
                lambda name=name: peer.run([name]),
                [name],
                targets,
                1,
                warm_up,
            )
            rows.append((f"{name}, top-3", ours_s, theirs_s))
            correlations.update(found)

    print_comparison(rows, step, correlations)


if __name__ == "__main__":
    main()
