"""Images per second of `explainers.diagnose`: the local engine (torch's default threads, and 1 thread
as a Ray actor has) and Ray with 1 and 2 workers, on the same ImageNet sample photos in one run
(each engine writes into its own fresh folder).

    OMP_WAIT_POLICY=PASSIVE python bench/diagnose_throughput.py [--images 40] [--device cpu|cuda] [--out FILE]
        [--no-ray]

"end to end" is the whole call (model load, Ray start, actors' model loads, summary, report);
"steady" counts the images after the first batch came back, over the time since then.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from explainers.diagnose import ModelSpec, Settings, diagnose  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenet-sample"


def measure(images: Path, labels: Path, spec: ModelSpec, engine: str, workers: int | None, batch: int) -> dict:
    """One run into a fresh folder: end-to-end and steady images per second."""
    stamps: list[tuple[float, int]] = []
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        summary = diagnose(
            images,
            spec,
            out,
            Settings(methods=("gradcam",)),
            labels=labels,
            engine=engine,
            workers=workers,
            batch_size=batch,
            quiet=True,
            progress=lambda done, total, left: stamps.append((time.perf_counter(), done)),
        )
        wall = time.perf_counter() - start
    first = next((t, d) for t, d in stamps if d > 0)
    last = stamps[-1]
    steady = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else float("nan")
    return {
        "engine": engine,
        "workers": workers,
        "images": summary["images"],
        "seconds": round(wall, 2),
        "end_to_end_per_s": round(summary["images"] / wall, 3),
        "steady_per_s": round(steady, 3),
        "misclassified": sorted(m["file"] for m in summary["misclassified"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--folder", type=Path, default=SAMPLE)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--no-ray", action="store_true", help="the local engine only (where Ray is not installed)")
    args = parser.parse_args()
    files = sorted(args.folder.glob("*.JPEG"))[: args.images]
    with tempfile.TemporaryDirectory() as scratch:
        labels = Path(scratch) / "labels.csv"
        labels.write_text("".join(f"{f.name},{f.name.split('_')[0]}\n" for f in files))
        spec = ModelSpec("efficientnet_lite0", device=args.device)
        warm = Path(scratch) / "warm.csv"
        warm.write_text(labels.read_text().split("\n", 1)[0] + "\n")
        measure(args.folder, warm, spec, "local", None, 1)  # the model loaded and run once, for every engine
        runs = [measure(args.folder, labels, spec, "local", None, args.batch)]
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as each Ray actor (num_cpus=1: OMP_NUM_THREADS=1)
        runs.append({**measure(args.folder, labels, spec, "local", None, args.batch), "threads": 1})
        torch.set_num_threads(threads)
        if not args.no_ray:
            runs += [measure(args.folder, labels, spec, "ray", workers, args.batch) for workers in (1, 2)]
    same = all(run["misclassified"] == runs[0]["misclassified"] for run in runs)
    for run in runs:
        ratio = run["steady_per_s"] / runs[0]["steady_per_s"]
        print(
            f"{run['engine']:5} workers={run['workers']} threads={run.get('threads', 'default')}: "
            f"{run['images']} images in {run['seconds']} s, "
            f"end to end {run['end_to_end_per_s']}/s, steady {run['steady_per_s']}/s ({ratio:.2f} x local)"
        )
    print(f"same misclassified set on every engine: {same}")
    if args.out:
        args.out.write_text(
            json.dumps(
                {"device": args.device, "cpus": os.cpu_count(), "runs": runs, "same_misclassified": same}, indent=1
            )
        )


if __name__ == "__main__":
    main()
