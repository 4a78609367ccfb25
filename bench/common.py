"""What the compare_* scripts share: the methods they compare, pytorch-grad-cam called as its
documentation shows, timing, the correlation of two libraries' maps and the printed tables.

Import it after setting OMP_WAIT_POLICY (it imports torch).
"""

from __future__ import annotations

import platform
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

#: The gradient-based CAMs pytorch-grad-cam also has (one call of ours computes them all).
GRADIENT_CAMS = ("gradcam", "gradcam++", "xgradcam", "hirescam", "layercam", "eigengradcam", "eigencam")
#: The CAMs that run the model once per channel: minutes on a CPU, so timed once.
PERTURBATION_CAMS = ("ablationcam", "scorecam")

#: A row of the speed table: (what was run, our seconds, pytorch-grad-cam's seconds).
SpeedRow = tuple[str, float, float]


def timed(function: Callable[[], Any], repeat: int, warm_up: bool = True) -> tuple[float, Any]:
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
    """Pearson correlation of two maps of the same shape (NaN when either is constant)."""
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def map_correlations(ours: Any, method: str, theirs: np.ndarray, targets: Sequence[int]) -> list[float]:
    """Per target, the correlation of our map of `method` (an Explanation) with theirs[i], the
    peer's [T, H, W] maps in the order of `targets`."""
    return [correlation(ours.get(method, target).map, theirs[i]) for i, target in enumerate(targets)]


def side_by_side(
    ours: Callable[[], Any],
    theirs: Callable[[], dict[str, np.ndarray]],
    methods: Sequence[str],
    targets: Sequence[int],
    repeat: int,
    warm_up: bool = True,
) -> tuple[float, float, dict[str, list[float]]]:
    """Median seconds of ours (an Explanation of `methods`) and of theirs ({method: [T, H, W]}),
    timed one after the other, and per method the correlation of the maps of each target."""
    ours_s, explanation = timed(ours, repeat, warm_up)
    theirs_s, maps = timed(theirs, repeat, warm_up)
    return ours_s, theirs_s, {m: map_correlations(explanation, m, maps[m], targets) for m in methods}


def forward_backward(module: torch.nn.Module, x: torch.Tensor, target: int) -> Callable[[], None]:
    """One plain training-style step's worth of work: forward and a full backward."""

    def run() -> None:
        module.zero_grad(set_to_none=True)
        module(x)[0, target].backward()

    return run


def device_name(device: str) -> str:
    """The GPU's name for "cuda", else the processor's."""
    return torch.cuda.get_device_name() if device == "cuda" else platform.processor() or platform.machine()


def print_comparison(rows: Sequence[SpeedRow], step_s: float, correlations: dict[str, list[float]]) -> None:
    """Print the markdown tables: times and speed-up per row, one forward + backward, and the
    correlation with pytorch-grad-cam per method and target."""
    print("\n| work | ours (ms) | pytorch-grad-cam (ms) | speed-up | ours / (forward + backward) |")
    print("|---|---:|---:|---:|---:|")
    for label, ours_s, theirs_s in rows:
        print(
            f"| {label} | {ours_s * 1e3:.0f} | {theirs_s * 1e3:.0f} | {theirs_s / ours_s:.1f}x | "
            f"{ours_s / step_s:.2f} |"
        )
    print(f"\nOne forward + backward: {step_s * 1e3:.0f} ms")
    print("\n| method | correlation with pytorch-grad-cam (per target) |")
    print("|---|---|")
    for name, values in correlations.items():
        print(f"| {name} | {', '.join(f'{v:.4f}' for v in values)} |")


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

    def run(self, names: Sequence[str]) -> dict[str, np.ndarray]:
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
