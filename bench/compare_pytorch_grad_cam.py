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
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import explainers  # noqa: E402
import models  # noqa: E402

GRADIENT_FAMILY = [
    "gradcam",
    "gradcam++",
    "xgradcam",
    "hirescam",
    "layercam",
    "eigengradcam",
    "eigencam",
    "guided_backprop",
    "guided_gradcam",
]


def timed(function, repeat: int, warm_up: bool = True) -> tuple[float, object]:
    """Median seconds of `repeat` runs (after one warm-up run), and the last result."""
    result = function() if warm_up else None
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = function()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


class Peer:
    """pytorch-grad-cam, called the way its documentation shows, on a batch of one copy per target."""

    def __init__(
        self, module: torch.nn.Module, layer: torch.nn.Module, x: torch.Tensor, targets: list[int], batch_size: int
    ) -> None:
        import pytorch_grad_cam as pgc
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        self.pgc, self.module, self.layer, self.batch_size = pgc, module, layer, batch_size
        self.x = x.expand(len(targets), -1, -1, -1).contiguous()
        self.targets = [ClassifierOutputTarget(t) for t in targets]
        self.target_ids = targets
        self.classes = {
            "gradcam": pgc.GradCAM,
            "gradcam++": pgc.GradCAMPlusPlus,
            "xgradcam": pgc.XGradCAM,
            "hirescam": pgc.HiResCAM,
            "layercam": pgc.LayerCAM,
            "eigengradcam": pgc.EigenGradCAM,
            "eigencam": pgc.EigenCAM,
            "scorecam": pgc.ScoreCAM,
            "ablationcam": pgc.AblationCAM,
        }

    def cam(self, name: str) -> np.ndarray:
        """[T, H, W] maps of one CAM method."""
        with self.classes[name](model=self.module, target_layers=[self.layer]) as cam:
            cam.batch_size = self.batch_size
            return cam(input_tensor=self.x, targets=self.targets)

    def guided_backprop(self) -> np.ndarray:
        """[T, H, W, 3] guided backprop (their GuidedBackpropReLUModel swaps nn.ReLU only)."""
        model = self.pgc.GuidedBackpropReLUModel(model=self.module, device=self.x.device)
        return np.stack([model(self.x[:1], target_category=t) for t in self.target_ids])

    def run(self, names: list[str]) -> dict[str, np.ndarray]:
        """Maps of every method in `names`, guided Grad-CAM as their guided backprop x Grad-CAM."""
        out = {}
        for name in names:
            if name == "guided_backprop":
                out[name] = np.abs(self.guided_backprop()).max(axis=-1)
            elif name == "guided_gradcam":
                gradcam = out.get("gradcam") if "gradcam" in out else self.cam("gradcam")
                guided = out.get("guided_backprop")
                if guided is None:
                    guided = np.abs(self.guided_backprop()).max(axis=-1)
                out[name] = guided * gradcam
            else:
                out[name] = self.cam(name)
        return out


def forward_backward(module: torch.nn.Module, x: torch.Tensor, target: int):
    """One plain training-style step's worth of work: forward and a full backward."""

    def run():
        module.zero_grad(set_to_none=True)
        module(x)[0, target].backward()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--image", default=str(Path(__file__).resolve().parents[1] / "assets" / "cat.jpg"))
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
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor() or platform.machine()
    print(
        f"# torch {torch.__version__}, pytorch-grad-cam {getattr(pytorch_grad_cam, '__version__', '1.5.x')}, "
        f"device {args.device} ({device_name}), "
        f"threads {torch.get_num_threads()}"
    )
    options = explainers.Options(batch_size=args.batch_size)
    peer = Peer(module, dict(module.named_modules())[layer], x, targets, args.batch_size)

    step, _ = timed(forward_backward(module, x, targets[0]), args.repeat)
    module.zero_grad(set_to_none=True)
    ours_time, ours = timed(
        lambda: explainers.explain(classifier, x, GRADIENT_FAMILY, targets=targets, layer=layer, options=options),
        args.repeat,
    )
    theirs_time, theirs = timed(lambda: peer.run(GRADIENT_FAMILY), args.repeat)
    rows = [("gradient family, top-3", ours_time, theirs_time, step)]
    correlations = {
        name: [correlation(ours.get(name, t).map, theirs[name][i]) for i, t in enumerate(targets)]
        for name in GRADIENT_FAMILY
    }

    if not args.skip_perturbation:
        # Long on a CPU: one run each, warmed up by the runs above. On a GPU, one warm-up run each
        # first: the first half-precision pass pays for cuDNN's kernel choice, seconds on its own.
        warm_up = args.device == "cuda"
        for name in ("ablationcam", "scorecam"):
            ours_time, ours_p = timed(
                lambda name=name: explainers.explain(
                    classifier, x, [name], targets=targets, layer=layer, options=options
                ),
                1,
                warm_up,
            )
            theirs_time, theirs_p = timed(lambda name=name: peer.run([name]), 1, warm_up)
            rows.append((f"{name}, top-3", ours_time, theirs_time, step))
            correlations[name] = [
                correlation(ours_p.get(name, t).map, theirs_p[name][i]) for i, t in enumerate(targets)
            ]

    print("\n| work | ours (ms) | pytorch-grad-cam (ms) | speed-up | ours / (forward + backward) |")
    print("|---|---:|---:|---:|---:|")
    for label, ours_s, theirs_s, step_s in rows:
        print(
            f"| {label} | {ours_s * 1e3:.0f} | {theirs_s * 1e3:.0f} | {theirs_s / ours_s:.1f}x | "
            f"{ours_s / step_s:.2f} |"
        )
    print(f"\nOne forward + backward: {step * 1e3:.0f} ms")
    print("\n| method | correlation with pytorch-grad-cam (per target) |")
    print("|---|---|")
    for name, values in correlations.items():
        print(f"| {name} | {', '.join(f'{v:.4f}' for v in values)} |")


if __name__ == "__main__":
    main()
