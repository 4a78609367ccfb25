"""The inputs column: the image and its examples, the Explain and Stop buttons with the run's
estimate, then the model, layer, methods, classes and the "…rather than" class."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
from gradio.helpers import Examples

import models

from . import choices, components, config


@dataclass
class Inputs:
    """The inputs' components."""

    image: gr.Image
    examples: Examples  # what gr.Examples() makes
    run: gr.Button
    stop: gr.Button
    estimate: gr.Markdown
    model: gr.Dropdown
    model_note: gr.Markdown
    loaded: gr.State
    layer: gr.Dropdown
    methods: gr.CheckboxGroup
    method_note: gr.Markdown
    top_k: gr.Slider
    counterfactual: gr.Checkbox
    classes: gr.Dropdown
    rather_than: gr.Dropdown


def build(classifier: models.Classifier, available: dict[str, str | None], model_names: list[str]) -> Inputs:
    """The inputs column's components (inside the current Blocks), for ``classifier`` loaded."""
    image = components.ImageInput(
        label="Image: upload, paste or webcam",
        type="filepath",
        sources=["upload", "clipboard", "webcam"],
        height=230,
        elem_id="input-image",
    )
    with gr.Row(equal_height=True, elem_id="run-row"):
        run = gr.Button("Explain", variant="primary", size="lg", elem_id="run", scale=3, min_width=120)
        stop = gr.Button("Stop", variant="stop", size="lg", elem_id="stop", scale=1, min_width=80, visible=False)
    estimate = gr.Markdown(elem_id="estimate")
    examples = gr.Examples(
        examples=[[str(p)] for p in choices.example_files()],
        inputs=[image],
        label="Examples (click one to run it; “cat and coffee” explains the tabby and the espresso)",
        examples_per_page=8,
        elem_id="examples",
    )
    with gr.Group():
        model = gr.Dropdown(
            choices=choices.model_choices(),
            value=config.DEFAULT_MODEL if config.DEFAULT_MODEL in model_names else model_names[0],
            label="Model",
            elem_id="model",
        )
        model_note = gr.Markdown(elem_id="model-note")
        layer = gr.Dropdown(
            choices=choices.layer_choices(classifier),
            value=classifier.default_layer,
            label="Layer (for CAM methods)",
            info=choices.layer_info(classifier),
            elem_id="layer",
        )
    loaded = gr.State(classifier.name)
    methods = gr.CheckboxGroup(
        choices=choices.method_choices(available),
        value=choices.default_methods(available),
        label="Methods",
        elem_id="methods",
        info="“slow” methods run the network many times: the page says how long before they start",
    )
    method_note = gr.Markdown(choices.availability_note(available), elem_id="method-note")
    with gr.Row(equal_height=True):
        top_k = gr.Slider(
            0,
            config.MAX_CLASSES,
            value=config.DEFAULT_TOP_K,
            step=1,
            label="Top-k predictions to explain",
            elem_id="topk",
            scale=3,
        )
        counterfactual = gr.Checkbox(
            False, label="Why not?", elem_id="counterfactual", info="counterfactual maps", scale=2
        )
    classes = gr.Dropdown(
        choices=choices.class_choices(classifier),
        value=[],
        multiselect=True,
        max_choices=config.MAX_CLASSES,
        filterable=True,
        label="…and/or these classes",
        info="Type part of a name, e.g. “tabby” or “espresso”; ImageNet models also offer groups "
        "explained as one, e.g. “all dogs”",
        elem_id="classes",
    )
    rather_than = gr.Dropdown(
        choices=choices.single_class_choices(classifier),
        value=None,
        filterable=True,
        label="…rather than",
        info="Adds a row beside each class: the evidence for it rather "
        "than this class (e.g. tabby rather than espresso)",
        elem_id="rather-than",
    )
    return Inputs(
        image,
        examples,
        run,
        stop,
        estimate,
        model,
        model_note,
        loaded,
        layer,
        methods,
        method_note,
        top_k,
        counterfactual,
        classes,
        rather_than,
    )
