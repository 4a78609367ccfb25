"""The page: its header, the inputs and results columns, the faithfulness panel and the
methods' help, and the events between them."""

from __future__ import annotations

from typing import Any

import gradio as gr

import models

from . import (
    attack_view,
    choices,
    config,
    dataset_view,
    faithfulness,
    files,
    handlers,
    inputs,
    queue_policy,
    queue_wakeup,
    results_view,
    sweep_view,
)

TITLE = "Why did the model say that? · Visual explanations"


def header_html() -> str:
    """The title, what the page does, and where the engine runs."""
    return (
        "<div id='header'><div><h1>Why did the model say that?</h1>"
        "<p>See which pixels made an ImageNet classifier choose a class: explanation methods "
        "(Grad-CAM, Score-CAM, Integrated Gradients, …) side by side.</p></div>"
        f"<div id='device-badge'>Running on {choices.device_summary()}</div></div>"
    )


def build_app() -> gr.Blocks:
    """Build the Gradio Blocks UI (not launched). Loads the default model once."""
    files.scratch_folder()  # Gradio's cache goes into it: claimed before any Block is built
    classifier = models.load(config.DEFAULT_MODEL)
    available = choices.method_availability(classifier, classifier.default_layer)
    model_names = [name for _, name in choices.model_choices()]
    listed = frozenset(model_names)
    policy = handlers.upload_policy()

    def web(fn):  # noqa: ANN001, ANN202 - a handler, checked as a web request
        return handlers.for_the_web(fn, listed, policy)

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.HTML(header_html())
        result_state = gr.State(None, time_to_live=config.RESULTS_MAX_AGE_S)  # a key of RESULTS
        with gr.Tabs(elem_id="views", overflow_behavior="wrap"):
            with gr.Tab("Explain an image", id="image", elem_id="image-view"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=3, min_width=330):
                        ins = inputs.build(classifier, available, model_names)
                    with gr.Column(scale=8, min_width=320, elem_id="results-column"):
                        with gr.Tabs(elem_id="image-tabs", overflow_behavior="wrap"):
                            with gr.Tab("Maps", id="maps", elem_id="maps-view"):
                                res = results_view.build()
                                panel = faithfulness.build()
                            with gr.Tab("Which layer?", id="sweep", elem_id="sweep-view"):
                                sweep = sweep_view.build(classifier)
                            with gr.Tab("Does noise fool it?", id="attack", elem_id="attack-view"):
                                attack = attack_view.build(classifier)
                with gr.Accordion("What do these methods mean?", open=False, elem_id="methods-help"):
                    gr.Markdown(choices.methods_help())
                    gr.Markdown(
                        "Maps are computed on the centre crop the model actually sees (the "
                        "*input* column); the download also has each map on the whole photo. "
                        "CAM-family methods look at the chosen layer; gradient methods at the "
                        "pixels. “Why not?” shows the evidence against a class."
                    )
            with gr.Tab("Diagnose a dataset", id="dataset", elem_id="dataset-view"):
                dataset = dataset_view.build(classifier, model_names)
        wire(ins, res, result_state, web)
        faithfulness.wire(panel, result_state)
        sweep_view.wire(sweep, ins, web)
        attack_view.wire(attack, ins, web)
        dataset_view.wire(dataset, web)
    files.scratch_folder().keep(
        path
        for block in demo.blocks.values()  # the examples' copies
        for path in getattr(block, "keep_in_cache", ())
    )
    demo.queue(default_concurrency_limit=config.ENGINE_CONCURRENCY, max_size=config.QUEUE_SIZE)
    queue_policy.limit_per_client(demo._queue, config.PER_SESSION, config.PER_ADDRESS)
    queue_wakeup.install(demo._queue)
    return demo


def wire(ins: inputs.Inputs, res: results_view.Results, result_state: gr.State, web) -> None:  # noqa: ANN001 - web: the for_the_web wrapper of build_app
    """The events: explain (button, example, API), stop, model and layer, display, download."""
    explain_inputs = [
        ins.image,
        ins.model,
        ins.layer,
        ins.methods,
        ins.top_k,
        ins.classes,
        ins.counterfactual,
        res.colormap,
        res.opacity,
        res.shared,
        ins.rather_than,
    ]
    explain_out = [res.maps, res.predictions, res.download, res.status, res.grid, result_state]
    explain_web = web(handlers.explain_stream)
    running: dict[str, Any] = dict(
        fn=lambda: (gr.Button(visible=True), gr.Button(visible=False)),
        outputs=[ins.stop, res.prepare],
        queue=False,
        api_visibility="private",
    )
    done: dict[str, Any] = dict(
        fn=lambda: gr.Button(visible=False), outputs=[ins.stop], queue=False, api_visibility="private"
    )
    engine: dict[str, Any] = dict(preprocess=False, concurrency_id="engine", show_progress_on=[res.status])
    clicked = ins.run.click(**running).then(explain_web, explain_inputs, explain_out, api_name="explain", **engine)
    clicked.success(**done)
    clicked.failure(**done)  # the page runs no .then() after an error: Stop would stay
    example = (
        ins.examples.load_input_event.then(
            handlers.example_preset, [ins.image], [ins.classes], preprocess=False, queue=False, api_visibility="private"
        )
        .then(**running)
        .then(explain_web, explain_inputs, explain_out, api_visibility="private", **engine)
    )
    example.success(**done)
    example.failure(**done)
    ins.stop.click(
        lambda: gr.Button(visible=False),
        None,
        [ins.stop],
        cancels=[clicked, example],
        queue=False,
        api_visibility="private",
    )

    estimate_in = [ins.model, ins.layer, ins.methods, ins.top_k, ins.classes, ins.rather_than, ins.counterfactual]
    for control in (ins.methods, ins.top_k, ins.classes, ins.layer, ins.rather_than, ins.counterfactual):
        control.change(
            handlers.estimate_note,
            estimate_in,
            [ins.estimate],
            queue=False,
            api_visibility="private",
            show_progress="hidden",
        )
    ins.image.upload(
        web(handlers.on_upload),
        [ins.image],
        [ins.image],
        preprocess=False,
        api_visibility="private",
        concurrency_id="render",
        concurrency_limit=4,
        show_progress="hidden",
    )
    ins.model.input(
        web(handlers.on_model_change),
        [ins.model, ins.loaded, ins.methods, ins.classes],
        [ins.model, ins.layer, ins.methods, ins.classes, ins.method_note, ins.model_note, ins.loaded],
        api_visibility="private",
        concurrency_id="models",
        show_progress_on=[ins.model],
    )
    ins.loaded.change(
        web(handlers.rather_than_choices),
        [ins.loaded, ins.rather_than],
        [ins.rather_than],
        api_visibility="private",
        concurrency_id="models",
        show_progress="hidden",
    )
    ins.layer.change(
        web(handlers.on_layer_change),
        [ins.model, ins.layer, ins.methods],
        [ins.methods, ins.method_note],
        api_visibility="private",
        concurrency_id="models",
        show_progress="hidden",
    )

    display_in = [result_state, res.colormap, res.opacity, res.shared]
    display_out = [res.maps, res.grid, res.download, res.prepare]
    render_events: dict[str, Any] = dict(
        api_visibility="private", concurrency_id="render", concurrency_limit=4, show_progress="minimal"
    )
    res.colormap.change(handlers.rerender, display_in, display_out, **render_events)
    res.colormap.change(results_view.legend_html, [res.colormap], [res.legend], api_visibility="private", queue=False)
    res.opacity.change(handlers.rerender, display_in, display_out, trigger_mode="always_last", **render_events)
    res.shared.change(handlers.rerender, display_in, display_out, **render_events)
    res.prepare.click(handlers.prepare_download, [result_state], [res.download, res.prepare], **render_events)
