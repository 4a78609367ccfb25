"""The "Diagnose a dataset" view: a zip of labelled images in, the diagnosis report (accuracy,
failures with their maps, boxes, bias hints) and its archive out. The handlers are in
webapp/dataset_run.py, the HTML in webapp/dataset_report.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

import models
from explainers import localisation

from . import choices, dataset_example, dataset_report, dataset_run


@dataclass
class DatasetView:
    """The view's components."""

    archive: gr.File
    model: gr.Dropdown
    methods: gr.CheckboxGroup
    threshold: gr.Slider
    run: gr.Button
    stop: gr.Button
    example: gr.Button
    status: gr.Markdown
    summary: gr.HTML
    report: gr.HTML
    download: gr.File


def intro() -> str:
    """What the view does and what the zip may hold (with this server's limits)."""
    return (
        "Explain a classifier over a labelled set of images: its accuracy and confusions, each "
        "misclassified image explained for its **true** and its **predicted** class, the box each "
        "map gives, and hints of bias (maps that look beside the object).\n\n"
        f"Upload a **zip** of up to {dataset_run.MAX_IMAGES} images "
        f"({dataset_run.MAX_ZIP_BYTES // 2**20} MB): one folder per class (`tabby/cat1.jpg`), "
        f"ImageNet-style names (`n02123045_1.JPEG`), or a `{dataset_run.LABELS_CSV}` of `file,label`; "
        f"optionally a `{dataset_run.BOXES_CSV}` of `file,x0,y0,x1,y1` or Pascal-VOC XML files for "
        "localisation scores."
    )


def build(classifier: models.Classifier, model_names: list[str]) -> DatasetView:
    """The view's components (inside the current Blocks) for ``classifier`` loaded."""
    available = choices.method_availability(classifier, classifier.default_layer)
    method_choices = [
        (label, name) for label, name in choices.method_choices(available) if name in dataset_run.CAM_METHODS
    ]
    defaults = [m for m in choices.default_methods(available) if m in dataset_run.CAM_METHODS]
    listed = [(label, name) for label, name in choices.model_choices() if name in model_names]
    with gr.Row(equal_height=False):
        with gr.Column(scale=3, min_width=330):
            gr.Markdown(intro(), elem_id="dataset-intro")
            archive = gr.File(label="Labelled images (.zip)", file_types=[".zip"], elem_id="dataset-zip")
            with gr.Row(equal_height=True):
                run = gr.Button("Diagnose", variant="primary", size="lg", scale=3, elem_id="dataset-run")
                stop = gr.Button("Stop", variant="stop", size="lg", scale=1, visible=False, elem_id="dataset-stop")
            example = gr.Button("Try the example (10 photos, 4 classes)", size="sm", elem_id="dataset-example")
            model = gr.Dropdown(choices=listed, value=classifier.name, label="Model", elem_id="dataset-model")
            methods = gr.CheckboxGroup(
                choices=method_choices,
                value=defaults[: dataset_run.MAX_METHODS],
                label=f"Methods (CAM family, at most {dataset_run.MAX_METHODS})",
                elem_id="dataset-methods",
            )
            threshold = gr.Slider(
                0.05,
                0.95,
                value=localisation.PAPER_THRESHOLD,
                step=0.05,
                label="Box threshold",
                info="A map's box frames its largest region above this share of its maximum (the paper: 0.15).",
                elem_id="dataset-threshold",
            )
        with gr.Column(scale=8, min_width=320, elem_id="dataset-results"):
            status = gr.Markdown(elem_id="dataset-status")
            summary = gr.HTML(dataset_report.PLACEHOLDER, css_template=dataset_report.CSS, elem_id="dataset-summary")
            report = gr.HTML("", elem_id="dataset-report")
            download = gr.File(
                label="Summary, report, maps and overlays (.zip)", interactive=False, elem_id="dataset-download"
            )
    return DatasetView(archive, model, methods, threshold, run, stop, example, status, summary, report, download)


def wire(view: DatasetView, web: Callable) -> None:
    """The view's events: Diagnose (and the example) claim the visitor's one job, then run it in
    the queue, one at a time on the server; Stop ends it after the images being explained."""
    claim: dict[str, Any] = dict(
        fn=dataset_run.claim_job, inputs=None, outputs=[view.stop], queue=False, api_visibility="private"
    )
    job = dict(
        fn=web(dataset_run.diagnose_dataset),
        inputs=[view.archive, view.model, view.methods, view.threshold],
        outputs=[view.status, view.summary, view.report, view.download],
        preprocess=False,
        concurrency_id="dataset",
        concurrency_limit=1,
        show_progress_on=[view.status],
        api_visibility="private",
    )
    done: dict[str, Any] = dict(
        fn=lambda: gr.Button(visible=False), outputs=[view.stop], queue=False, api_visibility="private"
    )
    for started in (
        view.run.click(**claim),
        view.example.click(
            lambda: str(dataset_example.example_zip()), None, [view.archive], queue=False, api_visibility="private"
        ).success(**claim),
    ):
        ran = started.success(**job)
        ran.success(**done)
        ran.failure(**done)  # the page does not run a .then() after an error
    view.stop.click(dataset_run.stop_job, None, [view.stop, view.status], queue=False, api_visibility="private")
