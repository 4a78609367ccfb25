"""Our engine, pytorch-grad-cam and torchcam side by side, in one process, on the same model, layer,
image and targets (the top-3 classes).

    pip install -r requirements-bench.txt
    python bench/compare_peers.py [--image assets/cat.jpg] [--model efficientnet_lite0] [--fast] [--no-write]

For every method a peer has, reports the peer's time over ours (each library's one call for the three
targets: ours one explain() call, pytorch-grad-cam and torchcam on a batch of three copies of the
image) and the Pearson correlation of the maps (the peers' maps upsampled to the input size),
the lowest of the three targets. It runs twice: on the trained model, and on a ReLU network
(torchvision resnet18, random weights, seed 0) where pytorch-grad-cam's guided backprop applies.
--fast skips Score-CAM and Ablation-CAM (pytorch-grad-cam needs minutes for each on a CPU). The markdown tables replace
the block between the compare_peers markers in bench/RESULTS.md (unless --no-write).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch: busy-waiting OpenMP is erratic on 2 cores
os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import datetime
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]
from common import GRADIENT_CAMS, PERTURBATION_CAMS, Peer, device_name, map_correlations, timed  # noqa: E402

import explainers  # noqa: E402
import models  # noqa: E402

PGC_METHODS = [*GRADIENT_CAMS, *PERTURBATION_CAMS, "guided_backprop"]
SLOW = set(PERTURBATION_CAMS)
START, END = "<!-- compare_peers:start -->", "<!-- compare_peers:end -->"

NOTES = {
    ("pytorch-grad-cam", "guided_backprop"): "theirs swaps only nn.ReLU: on ReLU6 networks it is the plain "
    "gradient (agrees on the ReLU network)",
    ("pytorch-grad-cam", "scorecam"): "theirs weights channels by a softmax of logit gains across channels; "
    "ours by the paper's gain in class probability",
    ("pytorch-grad-cam", "eigencam"): "theirs projects centred activations, sign arbitrary; ours projects the "
    "activations and orients the map towards them",
    ("pytorch-grad-cam", "eigengradcam"): "as Eigen-CAM, on gradient x activation: theirs centres it and "
    "its sign is arbitrary",
    ("torchcam", "gradcam++"): "torchcam 0.5 never divides alpha by its denominator: `alpha[idx][mask].div_(...)` "
    "divides a copy made by boolean indexing, so alpha = grad^2 (methods/gradient.py, "
    "GradCAMpp._get_weights); Grad-CAM++ with alpha = grad^2 matches torchcam's map "
    "at correlation 1.0000",
    ("torchcam", "scorecam"): "torchcam weights channels by a softmax across channels of logit gains over the "
    "unmasked image; ours by the paper's gain in class probability over a zero image",
}


class TorchCamPeer:
    """torchcam 0.5, called as its documentation shows, on a batch of one copy of the image per target."""

    def __init__(
        self,
        module: torch.nn.Module,
        layer: str,
        x: torch.Tensor,
        targets: list[int],
        fc_layer: str | None,
        batch_size: int,
    ) -> None:
        from torchcam import methods

        self.module, self.layer, self.targets, self.fc_layer = module, layer, targets, fc_layer
        self.batch_size = batch_size
        self.x = x.expand(len(targets), -1, -1, -1).contiguous()
        self.classes = {
            "gradcam": methods.GradCAM,
            "gradcam++": methods.GradCAMpp,
            "xgradcam": methods.XGradCAM,
            "layercam": methods.LayerCAM,
            "scorecam": methods.ScoreCAM,
        }
        if fc_layer:
            self.classes["cam"] = methods.CAM

    def cam(self, name: str) -> np.ndarray:
        """[T, H, W] maps, upsampled bilinearly to the input size."""
        kwargs = {"fc_layer": self.fc_layer} if name == "cam" else {}
        if name == "scorecam":
            kwargs["batch_size"] = self.batch_size
        with self.classes[name](self.module, target_layer=self.layer, **kwargs) as extractor:
            with torch.set_grad_enabled(name not in ("cam", "scorecam")):
                scores = self.module(self.x)
            maps = extractor(self.targets, scores)[0].detach()
        size = self.x.shape[-2:]
        return F.interpolate(maps[:, None].float(), size=size, mode="bilinear", align_corners=False)[:, 0].numpy()


def compare(
    classifier,
    module: torch.nn.Module,
    layer: str,
    x: torch.Tensor,
    methods: list[str],
    fc_layer: str | None,
    repeat: int,
    batch_size: int,
) -> list[dict]:
    """One row per (method, peer): times and the worst correlation over the top-3 targets."""
    with torch.no_grad():
        targets = module(x)[0].topk(3).indices.tolist()
    options = explainers.Options(batch_size=batch_size)
    pgc = Peer(module, dict(module.named_modules())[layer], x, targets, batch_size)
    tc = TorchCamPeer(module, layer, x, targets, fc_layer, batch_size)
    rows = []
    for method in methods:
        runs = 1 if method in SLOW else repeat
        ours_s, ours = timed(
            lambda method=method: explainers.explain(
                classifier, x, [method], targets=targets, layer=layer, options=options
            ),
            runs,
            warm_up=method not in SLOW,
        )
        peers = [
            (
                "pytorch-grad-cam",
                lambda method=method: pgc.run([method])[method],
                method in pgc.classes or method == "guided_backprop",
            ),
            ("torchcam", lambda method=method: tc.cam(method), method in tc.classes),
        ]
        for peer, run, has in peers:
            if not has:
                continue
            theirs_s, theirs = timed(run, runs, warm_up=method not in SLOW)
            worst = min(map_correlations(ours, method, theirs, targets))
            rows.append(
                {
                    "method": method,
                    "peer": peer,
                    "ours_ms": ours_s * 1e3,
                    "theirs_ms": theirs_s * 1e3,
                    "correlation": worst,
                    "note": NOTES.get((peer, method), "") if worst < 0.99 else "",
                }
            )
        print(f"  {method}: done", file=sys.stderr)
    return rows


def table(title: str, rows: list[dict]) -> str:
    """A markdown table of the rows."""
    lines = [
        f"#### {title}",
        "",
        "| method | peer | ours (ms) | peer (ms) | peer / ours | correlation (worst of "
        "top-3) | deliberate difference |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['peer']} | {r['ours_ms']:.0f} | {r['theirs_ms']:.0f} | "
            f"{r['theirs_ms'] / r['ours_ms']:.1f}x | {r['correlation']:.4f} | {r['note']} |"
        )
    return "\n".join(lines)


def write_results(path: Path, block: str) -> None:
    """Replaces the compare_peers block of RESULTS.md (appends it when there is none)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    block = f"{START}\n{block}\n{END}"
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n## Peers side by side (bench/compare_peers.py)\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--image", default=str(HERE.parent / "assets" / "cat.jpg"))
    parser.add_argument("--layer", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32, help="perturbation batch, every library")
    parser.add_argument("--fast", action="store_true", help="skip Score-CAM and Ablation-CAM")
    parser.add_argument("--methods", help="comma-separated subset of the methods (default: all)")
    parser.add_argument("--no-write", action="store_true", help="print only, leave bench/RESULTS.md alone")
    args = parser.parse_args()
    chosen = args.methods.split(",") if args.methods else PGC_METHODS + ["cam"]
    methods = [m for m in chosen if not (args.fast and m in SLOW)]
    image = Image.open(args.image).convert("RGB")

    classifier = models.load(args.model, device="cpu")
    layer = args.layer or classifier.default_layer
    x = classifier.preprocess(image)
    head = "classifier" if explainers.availability(classifier, layer).get("cam") is None else None
    print(f"# {args.model}, layer {layer}", file=sys.stderr)
    trained = compare(
        classifier,
        classifier.module,
        layer,
        x,
        [m for m in methods if m != "cam" or head],
        head,
        args.repeat,
        args.batch_size,
    )

    import torchvision

    torch.manual_seed(0)
    relu_net = torchvision.models.resnet18(weights=None).eval()
    x_relu = models.Preprocessing(256, (224, 224))(image)
    print("# resnet18 (random weights, seed 0), layer layer4", file=sys.stderr)
    relu_rows = compare(
        relu_net,
        relu_net,
        "layer4",
        x_relu,
        [m for m in methods if m != "ablationcam"],
        "fc",
        args.repeat,
        args.batch_size,
    )

    block = "\n\n".join(
        [
            f"Measured {datetime.date.today().isoformat()} on {device_name('cpu')}, {os.cpu_count()} CPU cores, torch "
            f"{torch.__version__} ({torch.get_num_threads()} threads), grad-cam {version('grad-cam')}, torchcam "
            f"{version('torchcam')}; image {Path(args.image).name}, top-3 classes; "
            f"`python {' '.join(sys.argv)}`. Times are medians of "
            f"{args.repeat} runs (Score-CAM and Ablation-CAM: one run); peer / ours > 1 means we are faster. "
            "A correlation below "
            "0.99 comes with the deliberate difference that explains it.",
            table(f"{args.model}, layer {layer} (trained, ImageNet)", trained),
            table("resnet18, layer layer4 (random weights, seed 0: a ReLU network)", relu_rows),
        ]
    )
    print(block)
    if not args.no_write:
        write_results(HERE / "RESULTS.md", block)


if __name__ == "__main__":
    main()
