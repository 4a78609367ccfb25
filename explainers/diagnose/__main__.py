"""Command line: python -m explainers.diagnose IMAGES --model NAME --methods gradcam --out DIR.

Exit status: 0 done, 1 some images could not be read (the others are done), 2 bad arguments,
130 interrupted (re-run the same command to resume).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import explainers
import models

from .. import localisation as loc
from .dataset import DatasetError
from .model_spec import ModelSpec
from .report import REPORT
from .run import ENGINES, SUMMARY, diagnose
from .work import Settings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def build_parser() -> argparse.ArgumentParser:
    """The options of the command."""
    p = argparse.ArgumentParser(
        prog="python -m explainers.diagnose",
        description="Explain a classifier over a labelled image folder: failures, localisation, bias hints.",
        epilog="Exit status: 0 done, 1 some images unreadable, 2 bad arguments, 130 interrupted (re-run to resume).",
    )
    p.add_argument(
        "images",
        metavar="IMAGES",
        help="folder: one sub-folder per class, or ImageNet-style "
        "file names (n01440764_tench.JPEG), or any layout with --labels",
    )
    p.add_argument("--labels", metavar="CSV", help="file,label rows (label: class index, wnid or class name)")
    p.add_argument("--model", default=models.DEFAULT_MODEL, help=f"registered model (default {models.DEFAULT_MODEL})")
    p.add_argument("--arch", help="your own model: torchvision name or timm:<name> (with --checkpoint, --classes)")
    p.add_argument("--checkpoint", help="your own model's state dict (.pth, .pt, .safetensors)")
    p.add_argument("--classes", help="your own model's class names: one per line, or a JSON list")
    p.add_argument("--methods", default="gradcam", help="comma-separated methods (default gradcam)")
    p.add_argument("--layer", help="target layer of the CAM methods (default: the model's)")
    p.add_argument(
        "--boxes",
        metavar="PATH",
        help="ground-truth boxes: CSV file,x0,y0,x1,y1, or Pascal-VOC/ImageNet XML (a file or a folder)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        default=loc.PAPER_THRESHOLD,
        help="box: share of the map's maximum kept (default 0.15, the Grad-CAM paper's)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (re-run with it to resume)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--batch-size", type=int, default=8, help="images per batch sent to a worker (default 8)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="local (default) or ray")
    p.add_argument("--workers", type=int, help="Ray actors (default: one per GPU, else one per CPU)")
    p.add_argument("--ray-address", help="an existing Ray cluster (default: start a local instance)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress line")
    return p


def _methods(text: str) -> tuple[str, ...]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    known = {name.lower(): name for name in explainers.METHODS}
    unknown = [n for n in names if n.lower() not in known]
    if not names or unknown:
        raise DatasetError(
            f"Unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(known.values())}."
        )
    return tuple(dict.fromkeys(known[n.lower()] for n in names))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if not 0 < args.threshold <= 1 or args.batch_size < 1 or (args.workers is not None and args.workers < 1):
            raise DatasetError("--threshold must be in (0, 1]; --batch-size and --workers at least 1.")
        spec = (
            ModelSpec(None, args.arch, args.checkpoint, args.classes, args.device)
            if args.arch or args.checkpoint or args.classes
            else ModelSpec(args.model, device=args.device)
        )
        settings = Settings(methods=_methods(args.methods), layer=args.layer, threshold=args.threshold)
        summary = diagnose(
            args.images,
            spec,
            args.out,
            settings,
            labels=args.labels,
            boxes=args.boxes,
            engine=args.engine,
            workers=args.workers,
            ray_address=args.ray_address,
            batch_size=args.batch_size,
            quiet=args.quiet,
        )
    except KeyboardInterrupt:
        print(
            f"\nInterrupted; what is done is kept in {args.out}. Run the same command again to resume.", file=sys.stderr
        )
        return EXIT_INTERRUPTED
    except (DatasetError, models.ModelError, explainers.ExplainerError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if not args.quiet:
        accuracy = "–" if summary["accuracy"] is None else f"{100 * summary['accuracy']:.1f} %"
        print(
            f"{summary['images']} images, top-1 accuracy {accuracy}, {len(summary['misclassified'])} "
            f"misclassified. Wrote {args.out}/{SUMMARY} and {args.out}/{REPORT}."
        )
    return EXIT_FAILED if summary["failed"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
