"""A diagnosis run: read the dataset, explain what is not done yet, write summary and report.

The driver is the same for both engines: it skips the images the output folder already holds,
streams the others in batches to the engine, stores each result as it arrives, and on Ctrl-C (or
when `should_stop()` says so) stops between batches, writing the summary of what is done.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import models

from .dataset import Sample, read_dataset
from .groundtruth import read_boxes
from .local_engine import LocalEngine
from .model_spec import ModelSpec
from .progress import Progress, ProgressCallback
from .report import write_report
from .store import Store
from .summary import summarise
from .work import Settings

SUMMARY = "summary.json"
ENGINES = ("local", "ray")


def diagnose(
    images: str | Path,
    model: ModelSpec | models.Classifier,
    out: str | Path,
    settings: Settings = Settings(),
    labels: str | Path | None = None,
    boxes: str | Path | None = None,
    engine: str = "local",
    workers: int | None = None,
    ray_address: str | None = None,
    batch_size: int = 8,
    progress: ProgressCallback | None = None,
    quiet: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> dict:
    """Diagnose the labelled images of folder `images`; returns the summary (also in out/summary.json).

    model: a ModelSpec (any engine) or a loaded Classifier (local engine only). labels: a CSV of
    file,label (else class folders or ImageNet-style file names). boxes: ground truth (CSV of
    file,x0,y0,x1,y1, an XML file or a folder of Pascal-VOC/ImageNet XML). progress(done, total,
    seconds_left) is called as images are done; quiet: no progress line on stderr. A run stopped by
    Ctrl-C re-raises KeyboardInterrupt after writing the partial summary; a run stopped by
    should_stop() returns it with "complete": false. Running again with the same out resumes.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "ray" and not isinstance(model, ModelSpec):
        raise ValueError("the Ray engine loads the model in each worker: give a ModelSpec, not a loaded model")
    classifier = model if isinstance(model, models.Classifier) else model.load("cpu" if engine == "ray" else None)
    samples = read_dataset(images, classifier.labels, labels)
    if boxes is not None:
        found = read_boxes(boxes, [s.file for s in samples])
        samples = [dataclasses.replace(s, boxes=tuple(found.get(s.file, ()))) for s in samples]
    out = Path(out)
    store = Store(out, _job(classifier, settings, images, labels, boxes))
    pending = [s for s in samples if s.file not in store.records]
    meter = Progress(len(samples), len(samples) - len(pending), stream=None if quiet else sys.stderr, callback=progress)
    if engine == "local":
        runner = LocalEngine(classifier, settings)
    else:
        assert isinstance(model, ModelSpec)  # checked above
        runner = _ray_engine(model, settings, workers, ray_address)
    complete = False
    try:
        with runner:
            for results in runner.run(_batches(pending, batch_size)):
                for result in results:
                    store.add(result)
                meter.advance(len(results))
                if should_stop is not None and should_stop():
                    break
            else:
                complete = True
    finally:
        summary = _finish(out, store, samples, classifier, settings, complete)
    return summary


def _finish(
    out: Path,
    store: Store,
    samples: Sequence[Sample],
    classifier: models.Classifier,
    settings: Settings,
    complete: bool,
) -> dict:
    """Write summary.json and report.html from the records stored so far."""
    records = [store.records[s.file] for s in samples if s.file in store.records]
    summary = summarise(records, classifier.labels, classifier.name, settings, complete)
    (out / SUMMARY).write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    write_report(out, summary, store, samples, classifier, settings.threshold)
    return summary


def _job(
    classifier: models.Classifier,
    settings: Settings,
    images: str | Path,
    labels: str | Path | None,
    boxes: str | Path | None,
) -> dict:
    """What the stored records depend on: a resume must compute the same."""
    source = {
        name: None if path is None else str(Path(path).resolve())
        for name, path in (("images", images), ("labels", labels), ("boxes", boxes))
    }
    return {
        "model": classifier.name,
        "methods": list(settings.methods),
        "layer": settings.layer,
        "threshold": settings.threshold,
        "tolerance": settings.tolerance,
        "centre_share": settings.centre_share,
        **source,
    }


def _batches(samples: Sequence[Sample], size: int) -> Iterator[list[Sample]]:
    iterator = iter(samples)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _ray_engine(spec: ModelSpec, settings: Settings, workers: int | None, address: str | None):
    from .ray_engine import RayEngine  # Ray is imported only for this engine

    return RayEngine(spec, settings, workers=workers, address=address)
