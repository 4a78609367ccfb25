"""Diagnosing an uploaded dataset (the "Diagnose a dataset" view's handlers): the zip checked and
unpacked within this server's limits, one job at a time on the server and per visitor, the run
(explainers.diagnose, local engine) with progress, Stop and a time limit, and afterwards only the
results' zip left on disk: the unpacked images and the run's folder are deleted.

Limits: the upload (Gradio's per-file limit, config.MAX_FILE_BYTES, checked again here), the
files in the zip (MAX_FILES) and their bytes once unpacked (MAX_UNPACKED_BYTES, counted while
unpacking: a zip bomb stops there), the labelled images (MAX_IMAGES), each image's pixels (the
app's one image loader, models.open_image: an image over models.MAX_PIXELS is listed as
unreadable), the methods (CAM family, at most MAX_METHODS) and the time (estimated before, and
enforced between batches: a run over MAX_SECONDS stops and reports what it has done).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils as gradio_utils

import explainers
import models
from explainers import localisation
from explainers.diagnose import DatasetError, Sample, Settings, diagnose, pack_results, read_dataset, unpack_dataset
from explainers.diagnose.progress import format_seconds
from explainers.diagnose.report import OMITTED_PICTURE, REPORT, inline_pictures

from . import budget, config, dataset_report, files, handlers, memory, queue_policy, uploads, values
from .dataset_visitors import VisitorJobs, visitor_keys
from .errors import UserError, friendly_errors

MAX_ZIP_BYTES = config.MAX_FILE_BYTES
MAX_IMAGES = 100
MAX_FILES = 2 * MAX_IMAGES + 2  # images, an XML annotation each, labels.csv and boxes.csv
MAX_UNPACKED_BYTES = 128 * 2**20
MAX_METHODS = 3
MAX_SECONDS = 300
REPORT_PICTURE_BYTES = 6 * 2**20  # pictures inlined into the page; the others are in the zip
BATCH_SIZE = 4  # images between two looks at Stop and the time limit
SLOT_WAIT_S = 60  # how long a job waits for the previous one to finish stopping
CAM_METHODS = tuple(name for name, info in explainers.METHODS.items() if info.kind == "cam")
LABELS_CSV, BOXES_CSV = "labels.csv", "boxes.csv"
RESULTS_ZIP = "diagnosis.zip"

SERVER_SLOT = threading.BoundedSemaphore(1)  # one dataset job computes at a time, whatever Gradio believes
JOBS = VisitorJobs(lapse_s=MAX_SECONDS, kept_archives=config.SESSIONS)

NO_ARCHIVE = "Please upload a zip of labelled images first (or press “Try the example”)."
ARCHIVE_NOT_AVAILABLE = "That zip is not available on this server. Please upload it again."
FORMAT_HELP = (
    "Use one folder per class (tabby/cat1.jpg, with class names, indices or wnids as folder names), "
    f"ImageNet-style file names (n02123045_1.JPEG), or a {LABELS_CSV} of file,label rows."
)


def upload_policy() -> uploads.UploadPolicy:
    """Where a web request's zip may be: Gradio's upload folder (the example's zip is in it too)."""
    return uploads.UploadPolicy([gradio_utils.get_upload_folder()])


def checked_archive(payload: Any, policy: uploads.UploadPolicy) -> Path:
    """The uploaded zip's path (a file the policy allows, at most MAX_ZIP_BYTES), or UserError.
    Accepts what gr.File sends: a path, or a dict (or FileData) with ``path``."""
    if payload is None:
        raise UserError(NO_ARCHIVE)
    real = uploads.checked_path(uploads.file_payload(payload).path, policy, ARCHIVE_NOT_AVAILABLE)
    if not real.is_file():
        raise UserError(ARCHIVE_NOT_AVAILABLE)
    if real.stat().st_size > MAX_ZIP_BYTES:
        raise UserError(f"The zip is larger than {MAX_ZIP_BYTES // 2**20} MB; please upload fewer or smaller images.")
    return real


def checked_settings(model: str, methods: Any, threshold: Any) -> tuple[models.Classifier, Settings, list[str]]:
    """The classifier, the run's settings and "Title (reason)" of each chosen method that does
    not apply to this model; UserError for methods outside the CAM family, too many, none left,
    or a threshold outside (0, 1)."""
    names = values.method_names(methods)
    other = [m for m in names if m not in CAM_METHODS]
    if other:
        raise UserError(
            "A dataset is diagnosed with CAM-family methods only, not "
            f"{', '.join(values.quoted(m) for m in other[:5])}. "
            f"Choose from: {', '.join(CAM_METHODS)}."
        )
    if len(names) > MAX_METHODS:
        raise UserError(f"Pick at most {MAX_METHODS} methods for a dataset (each image is explained by each of them).")
    try:
        threshold = float(threshold)
    except (TypeError, ValueError):
        threshold = float("nan")
    if not 0 < threshold < 1:
        raise UserError("The box threshold must be a share of the map's maximum between 0 and 1, such as 0.15.")
    classifier = models.load(model or config.DEFAULT_MODEL)
    usable, skipped = handlers.usable_methods(classifier, classifier.default_layer, names, False)
    settings = Settings(methods=tuple(usable), layer=classifier.default_layer, threshold=threshold)
    return classifier, settings, skipped


def dataset_tables(root: Path) -> tuple[Path | None, Path | None]:
    """(labels, boxes) of an unpacked dataset: its LABELS_CSV (or its only other CSV) and its
    BOXES_CSV, else its XML annotations (the folder itself), at the top of the folder."""
    tables = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() == ".csv")
    boxes = next((p for p in tables if p.name.lower() == BOXES_CSV), None)
    others = [p for p in tables if p != boxes]
    labels = next((p for p in others if p.name.lower() == LABELS_CSV), others[0] if len(others) == 1 else None)
    if boxes is None and any(root.rglob("*.xml")):
        boxes = root
    return labels, boxes


def labelled_samples(
    top: Path, root: Path, class_names: Sequence[str], labels: Path | None
) -> tuple[Path, list[Sample]]:
    """(the dataset folder, its labelled images) of the folder the zip was unpacked into (``top``)
    and the folder unpack_dataset found in it (``root``): a zip of one class folder is unwrapped
    to that folder, so without a labels file its parent is tried too. UserError (with the formats
    this view reads) when neither has labels."""
    try:
        return root, read_dataset(root, class_names, labels)
    except DatasetError as err:
        if labels is None and root != top:
            with contextlib.suppress(DatasetError):
                return root.parent, read_dataset(root.parent, class_names)
        raise UserError(f"{err} {FORMAT_HELP}") from None


def claim_job(request: gr.Request) -> Any:
    """The page's first step (before the queue): claim this visitor's one dataset job, and show
    the Stop button; refused with a message while the visitor has one waiting or running."""
    try:
        JOBS.claim(visitor_keys(request))
    except UserError as err:
        raise gr.Error(str(err), title="Not now", print_exception=False) from None
    return gr.Button(visible=True)


def stop_job(request: gr.Request) -> tuple[Any, str]:
    """The Stop button: the visitor's job stops after the images being explained (its report
    covers the images done); a job still waiting stops as soon as its turn comes."""
    stopping = JOBS.stop(visitor_keys(request))
    return gr.Button(visible=False), "Stopping after the images being explained…" if stopping else gr.skip()


class _StopCheck:
    """Whether a run should stop (Stop pressed, over time, the visitor gone), and why."""

    def __init__(self, stop: threading.Event, deadline: budget.Deadline) -> None:
        self.stop, self.deadline, self.reason = stop, deadline, ""

    def __call__(self) -> bool:
        if self.stop.is_set():
            self.reason = "Stopped at your request"
        elif self.deadline.elapsed() > MAX_SECONDS:
            self.reason = f"Stopped after {MAX_SECONDS} s, this server's limit for a dataset"
        elif queue_policy.client_gone():
            self.reason = "The page was closed"
        return bool(self.reason)


def _progress_line(progress: Callable) -> Callable[[int, int, float | None], None]:
    def report(done: int, total: int, seconds_left: float | None) -> None:
        if total and done >= total:
            progress(1.0, desc="Drawing the report…")
        else:
            left = f" · about {format_seconds(seconds_left)} left" if seconds_left is not None else ""
            progress((done, total), desc=f"Explaining image {done + 1} of {total}{left}", unit="images")

    return report


@friendly_errors("diagnose the dataset")
def diagnose_dataset(
    archive: Any,
    model: str = config.DEFAULT_MODEL,
    methods: list[str] | None = None,
    threshold: float = localisation.PAPER_THRESHOLD,
    request: gr.Request | None = None,
    progress: gr.Progress = gr.Progress(),
) -> tuple[str, str, str, str | None]:
    """Diagnose the labelled images of an uploaded zip with ``model`` and CAM-family ``methods``.

    Returns (status line, summary HTML, the report in a sandboxed frame, the results' zip: summary,
    report, maps and overlays). Each image is explained for its true class and, when the model is
    wrong, its predicted class; ``threshold`` (share of a map's maximum) draws each map's box.
    """
    keys = visitor_keys(request)
    job = JOBS.start(keys)  # released below, whatever happens: the visitor may start another
    try:
        path = checked_archive(archive, upload_policy())
        progress(0, desc=f"Loading {model}…")
        classifier, settings, skipped = checked_settings(model, methods, threshold)
        if job.stop.is_set():
            return "Stopped before it started.", dataset_report.PLACEHOLDER, "", None
        if not SERVER_SLOT.acquire(timeout=SLOT_WAIT_S):
            raise UserError("The server is still finishing another dataset; please try again in a minute.")
        try:
            outcome = _run(path, classifier, settings, job.stop, progress)
        finally:
            SERVER_SLOT.release()
            memory.release_memory()
    finally:
        JOBS.release(job)
    if outcome is None:
        return "Stopped before any image was done.", dataset_report.PLACEHOLDER, "", None
    summary, page, results, reason, total = outcome
    JOBS.replace_archive(keys, results)
    files.tidy()
    notes = [f"Skipped: {note}." for note in skipped]
    done = summary["images"] + len(summary["failed"])
    if reason:
        notes.insert(0, f"{reason}: the report covers the first {done} of {total} images.")
    omitted = page.count(OMITTED_PICTURE)
    if omitted:
        notes.append(f"{omitted} pictures are not shown in the page (its size limit): they are in the download.")
    status = f"Diagnosed {summary['images']} images with {', '.join(settings.methods)} on {classifier.name}."
    return status, dataset_report.summary_html(summary, notes), dataset_report.report_frame(page), str(results)


def _run(
    archive: Path, classifier: models.Classifier, settings: Settings, stop: threading.Event, progress: Callable
) -> tuple[dict, str, Path, str, int] | None:
    """Unpack, check, diagnose and pack, in a work folder deleted at the end. Returns (summary,
    the report page with its pictures inlined, the results' zip, why it stopped early or "",
    the number of images), or None when it stopped before any image was done."""
    files.tidy()  # room for the unpacked images under the scratch folder's cap
    parent = files.scratch_folder().root / "datasets"
    parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="job-", dir=parent))
    try:
        progress(0, desc="Unpacking…")
        root = unpack_dataset(archive, work / "data", max_files=MAX_FILES, max_bytes=MAX_UNPACKED_BYTES)
        labels, boxes = dataset_tables(root)
        root, samples = labelled_samples(work / "data", root, classifier.labels, labels)
        if len(samples) > MAX_IMAGES:
            raise UserError(f"The zip holds {len(samples)} labelled images; the limit here is {MAX_IMAGES}.")
        budget.check_estimate(
            len(samples) * handlers.estimated_seconds(classifier, settings.layer, list(settings.methods), 2),
            MAX_SECONDS,
            f"{len(samples)} images with {', '.join(settings.methods)} on {classifier.name}",
            "Pick fewer methods or images, or a smaller model.",
        )
        should_stop = _StopCheck(stop, budget.Deadline(MAX_SECONDS))
        out = work / "out"
        summary = diagnose(
            root,
            classifier,
            out,
            settings,
            labels=labels,
            boxes=boxes,
            batch_size=BATCH_SIZE,
            progress=_progress_line(progress),
            quiet=True,
            should_stop=should_stop,
        )
        if not summary["images"] and not summary["failed"]:
            return None
        if not summary["images"]:
            raise UserError(f"None of the images could be read: {dataset_report.failed_note(summary['failed'])}")
        page = inline_pictures((out / REPORT).read_text(encoding="utf-8"), out, REPORT_PICTURE_BYTES)
        results = pack_results(out, files.new_folder() / RESULTS_ZIP)
        return summary, page, results, should_stop.reason, len(samples)
    except DatasetError as err:
        raise UserError(str(err)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
