"""What the page's events call (and the API's /explain): check the request, run the engine,
draw the result; the model and layer pickers; re-rendering and the download."""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
from gradio import utils as gradio_utils
from PIL import Image

import explainers
import models
from explainers.targets import ClassSet

from . import budget, choices, config, files, memory, results_view, state, uploads, values
from .errors import MODEL_NOT_AVAILABLE, UserError, as_message, friendly_errors
from .state import Result
from .why_not_note import empty_why_not_note

log = logging.getLogger("app")


def explain_outputs_order() -> list[str]:
    """Names of explain_image's outputs in order (documentation for API users and tests)."""
    return ["results", "predictions", "download", "status", "grid", "state"]


def upload_policy() -> uploads.UploadPolicy:
    """What a web request's image may be: a file in Gradio's upload folder, or an example."""
    return uploads.UploadPolicy([gradio_utils.get_upload_folder()], choices.example_files())


def for_the_web(fn: Callable, listed: frozenset[str], policy: uploads.UploadPolicy) -> Callable:
    """Wrap a handler Gradio calls. Its ``model`` must be one the app lists (a web request cannot
    make the server download models), its ``image`` an upload or an example (no other file of
    the server), and a Result it returns is kept in RESULTS: the session holds only its key.
    Python callers of ``fn`` are not limited. Works for generators (each update is checked)."""
    params = list(inspect.signature(fn).parameters)

    def checked(args: tuple, kwargs: dict) -> dict:
        values_ = {**dict(zip(params, args)), **kwargs}
        try:
            if "model" in values_:
                values.check_web_model(values_["model"], listed)
            if "image" in values_:
                values_["image"] = uploads.checked_image(values_["image"], policy)
        except UserError as err:
            raise gr.Error(str(err), title="Request refused", print_exception=False) from None
        return values_

    def kept(out: Any, last: list) -> Any:
        """``out`` with its Result replaced by its key in RESULTS; ``last`` is the [Result, key]
        of a stream's previous answer, so that a Result yielded again keeps its key."""
        if not (isinstance(out, tuple) and out and isinstance(out[-1], Result)):
            return out
        if last[0] is not out[-1]:
            last[:] = [out[-1], state.RESULTS.put(out[-1])]
        return (*out[:-1], last[1])

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def stream(*args: Any, **kwargs: Any) -> Any:
            last: list = [None, None]
            for out in fn(**checked(args, kwargs)):
                yield kept(out, last)

        return stream

    @functools.wraps(fn)
    def inner(*args: Any, **kwargs: Any) -> Any:
        return kept(fn(**checked(args, kwargs)), [None, None])

    return inner


# ---------------------------------------------------------------------------- model and layer


def kept_classes(classifier: models.Classifier, entries: list[str] | None) -> list[str]:
    """The typed classes ("967: espresso") and class sets ("all dogs (118 classes)") that the new
    model has too, as its entries (a class found by index when the label matches there, else by the
    label)."""
    kept = []
    sets = choices.class_set_choices(classifier)
    for entry in entries or []:
        index, _, label = str(entry).partition(": ")
        if entry in sets:
            kept.append(entry)
        elif index.isdigit() and int(index) < classifier.num_classes and classifier.labels[int(index)] == label:
            kept.append(entry)
        elif label in classifier.labels:
            kept.append(choices.class_entry(classifier.labels.index(label), label))
    return kept


def on_model_change(
    model: str,
    loaded: str | None,
    methods: list[str] | None = None,
    classes: list[str] | None = None,
    progress: gr.Progress = gr.Progress(track_tqdm=True),
) -> tuple:
    """Load the chosen model and rebuild layers, methods and classes, keeping the methods and
    typed classes that still apply. A model that cannot be loaded leaves everything as it was
    (the previous model selected) and says why under the model picker.

    Returns (model, layer, methods, classes, methods note, model note, loaded model)."""
    progress(0, desc=f"Loading {model}…")
    try:
        classifier = models.load(model)
    except Exception as err:  # noqa: BLE001 - the page stays as it was, with a message
        if isinstance(err, models.ModelNotAvailableError):
            message = MODEL_NOT_AVAILABLE
        elif isinstance(err, models.ModelError):
            message = str(err)
        else:
            log.exception("could not load %s", model)
            message = "This model could not be loaded on this server. Please choose another one."
        keep = loaded or config.DEFAULT_MODEL
        note = f"⚠️ **{model}** is not available: {message} Still using **{keep}**."
        return (
            gr.Dropdown(choices=choices.model_choices(), value=keep),
            gr.skip(),
            gr.skip(),
            gr.skip(),
            gr.skip(),
            note,
            keep,
        )
    available = choices.method_availability(classifier, classifier.default_layer)
    return (
        gr.skip(),
        gr.Dropdown(
            choices=choices.layer_choices(classifier),
            value=classifier.default_layer,
            info=choices.layer_info(classifier),
        ),
        gr.CheckboxGroup(choices=choices.method_choices(available), value=choices.kept_methods(methods, available)),
        gr.Dropdown(
            choices=choices.class_choices(classifier), value=kept_classes(classifier, classes), multiselect=True
        ),
        choices.availability_note(available),
        "",
        classifier.name,
    )


def rather_than_choices(loaded: str, rather_than: str | None) -> Any:
    """The "…rather than" picker for the model just loaded: its single classes, the chosen one kept
    when that model has it too."""
    classifier = models.load(loaded)
    kept = kept_classes(classifier, [rather_than] if rather_than else [])
    return gr.Dropdown(choices=choices.single_class_choices(classifier), value=kept[0] if kept else None)


@friendly_errors("check the layer")
def on_layer_change(model: str, layer: str, methods: list[str] | None) -> tuple:
    """Re-check which methods apply to this layer; keep the selected ones that still do."""
    classifier = models.load(model)
    available = choices.method_availability(classifier, layer)
    return (
        gr.CheckboxGroup(choices=choices.method_choices(available), value=choices.kept_methods(methods, available)),
        choices.availability_note(available),
    )


def on_upload(image: Any) -> Any:
    """Check an upload at once: a file that is not a usable image is reported and cleared; a
    tiny one gets a warning."""
    if image is None:
        return gr.skip()
    try:
        picture = values.load_image(image)
    except UserError as err:
        gr.Warning(str(err), title="Not a usable image", duration=15)
        return None
    if values.tiny_image_note(picture):
        gr.Warning(values.tiny_image_note(picture), title="A very small image", duration=15)
    return gr.skip()


def example_preset(image: Any) -> Any:
    """The classes an example comes with (the composite: tabby and espresso), for the classes
    picker; the picker is left as it is for the other examples."""
    preset = choices.example_classes(Path(values.image_name(image)))
    return preset if preset else gr.skip()


# ---------------------------------------------------------------------------- explain


def usable_methods(
    classifier: models.Classifier, layer: str | None, methods: list[str], counterfactual: bool
) -> tuple[list[str], list[str]]:
    """(methods to run, "Title (reason)" of each chosen one skipped); UserError if none is left.
    With ``counterfactual``, methods without a "why not" form are kept (for their class rows)."""
    if not methods:
        raise UserError("Please tick at least one method.")
    unknown = [m for m in methods if m not in explainers.METHODS]
    if unknown:
        raise UserError(
            f"Unknown method(s): {', '.join(values.quoted(m) for m in unknown[:5])}. "
            f"Choose from: {', '.join(explainers.METHODS)}."
        )
    available = choices.method_availability(classifier, layer)
    skipped = [f"{explainers.METHODS[m].title} ({available[m]})" for m in methods if available[m]]
    usable = [m for m in methods if not available[m]]
    if not usable:
        raise UserError("None of the chosen methods applies here: " + "; ".join(skipped) + ".")
    return usable, skipped


WhyNot = tuple[int, Sequence[str]]  # "why not" rows of a request: (classes, methods with that form)


def why_not_methods(methods: list[str], counterfactual: bool) -> list[str]:
    """The methods that get a "why not" row under each class (those with that form)."""
    return [m for m in methods if explainers.METHODS[m].counterfactual] if counterfactual else []


def why_not_note(methods: list[str], counterfactual: bool) -> str:
    """ "No “why not” maps for: Gradient (no such form)." when "Why not?" is on and some of
    ``methods`` have no counterfactual form, else ""."""
    without = [explainers.METHODS[m].title for m in methods if m not in why_not_methods(methods, counterfactual)]
    return f"No “why not” maps for: {', '.join(without)} (no such form)." if counterfactual and without else ""


def estimated_seconds(
    classifier: models.Classifier, layer: str | None, methods: list[str], n_rows: int, why_not: WhyNot = (0, ())
) -> float:
    """The run's estimated seconds: its forward passes (``methods`` for ``n_rows`` rows, and the
    "why not" rows: ``why_not`` = (classes, their methods)) times this model's measured pass time."""
    n_classes, cf_methods = why_not
    passes = budget.layer_passes(classifier, layer, methods, n_rows)
    if n_classes and cf_methods:
        passes += budget.layer_passes(classifier, layer, list(cf_methods), n_classes)
    return passes * state.PASS_TIMES.seconds(classifier)


def check_time(
    classifier: models.Classifier, layer: str | None, methods: list[str], n_classes: int, why_not: WhyNot = (0, ())
) -> None:
    """UserError when the slow methods of a request would take longer than MAX_REQUEST_SECONDS."""
    slow = [m for m in methods if explainers.method_info(m).slow]
    if not slow:
        return
    titles = ", ".join(explainers.method_info(m).title for m in slow)
    budget.check_estimate(
        estimated_seconds(classifier, layer, methods, n_classes, why_not),
        config.MAX_REQUEST_SECONDS,
        f"{titles} for {n_classes} class(es) on {classifier.name}",
        "Pick fewer slow methods or classes, or a smaller model.",
    )


def estimate_note(
    model: str,
    layer: str | None,
    methods: list[str] | None,
    top_k: float,
    classes: list[str] | None,
    rather_than: str | None = None,
    counterfactual: bool = False,
) -> str:
    """What the next run will cost, said before it starts when it is slow: its estimated seconds
    on this server (from the methods' forward passes and this model's measured pass time),
    counting the contrast rows and, with ``counterfactual``, the "why not" rows."""
    try:
        classifier = models.load(model or config.DEFAULT_MODEL)
        layer = layer or classifier.default_layer
        usable, _ = usable_methods(classifier, layer, values.method_names(methods), False)
        n_classes = max(1, int(top_k or 0) + len(classes or []))
        rows = n_classes * (2 if rather_than else 1)  # a contrast row beside each class
        why_not = (n_classes, why_not_methods(usable, bool(counterfactual)))
        seconds = estimated_seconds(classifier, layer, usable, rows, why_not)
    except Exception:  # noqa: BLE001 - no estimate for a request the run itself will refuse
        return ""
    if seconds < config.SLOW_RUN_SECONDS:
        return ""
    slow = [explainers.method_info(m).title for m in usable if explainers.method_info(m).slow]
    over = seconds > config.MAX_REQUEST_SECONDS
    verdict = (
        f"over this server's limit of {config.MAX_REQUEST_SECONDS} s: pick fewer"
        if over
        else "the fast maps appear first; **Stop** ends it"
    )
    contrasts = " and their contrasts" if rather_than else ""
    contrasts += " and “why not” rows" if why_not[1] else ""
    return (
        f"⏱ About **{seconds:.0f} s** for {n_classes} class(es){contrasts} with "
        f"{', '.join(slow) or 'these methods'} ({verdict})."
    )


class Checked(NamedTuple):
    """A request whose every value and limit has been checked."""

    classifier: models.Classifier
    layer: str | None
    top_k: int
    chosen: list[int | ClassSet]  # classes and class sets
    usable: list[str]
    skipped: list[str]
    rather_than: int | None  # each class also explained rather than this one


def checked_request(
    model: str, layer: str | None, methods: Any, top_k: Any, classes: Any, counterfactual: bool, rather_than: Any = None
) -> Checked:
    """The model, layer, classes, "…rather than" class and methods of a request, checked
    against the app's limits (classes, maps, the time estimate); UserError otherwise."""
    top_k = values.whole_number(top_k, "Top-k", 0, config.MAX_CLASSES)
    counterfactual = values.as_bool(counterfactual, "“Why not?”")
    classifier = models.load(model or config.DEFAULT_MODEL)
    layer = layer or classifier.default_layer
    if layer not in {info.name for info in classifier.layers}:
        raise UserError(
            f"{classifier.name} has no layer {values.quoted(layer)}. Pick one from the "
            f"list; the default is {classifier.default_layer}."
        )
    chosen = values.parse_targets(classifier, classes, rather_than)  # classes and class sets ("all dogs")
    if top_k == 0 and not chosen:
        raise UserError("Nothing to explain: set top-k to at least 1 or pick some classes.")
    usable, skipped = usable_methods(classifier, layer, values.method_names(methods), counterfactual)
    contrast = values.parse_classes(classifier, rather_than)
    if len(contrast) > 1:
        raise UserError("Pick one class for “…rather than”.")
    n_classes = top_k + len(chosen)
    if n_classes > config.MAX_CLASSES:
        raise UserError(f"That is {n_classes} classes; at most {config.MAX_CLASSES} per run.")
    n_rows = n_classes * (2 if contrast else 1)  # a contrast row beside each class
    why_not = (n_classes, why_not_methods(usable, counterfactual))  # a "why not" row under each class
    n_maps = n_rows * len(usable) + n_classes * len(why_not[1])
    if n_maps > config.MAX_MAPS:
        raise UserError(f"That is {n_maps} maps; at most {config.MAX_MAPS} per run. Pick fewer methods or classes.")
    check_time(classifier, layer, usable, n_rows, why_not)
    return Checked(classifier, layer, top_k, chosen, usable, skipped, contrast[0] if contrast else None)


@friendly_errors("explain the image")
def explain_image(
    image: Any,
    model: str = config.DEFAULT_MODEL,
    layer: str | None = None,
    methods: list[str] | None = None,
    top_k: float = config.DEFAULT_TOP_K,
    classes: list[str] | str | None = None,
    counterfactual: bool = False,
    colormap: str = config.DEFAULT_COLORMAP,
    opacity: float = config.DEFAULT_OPACITY,
    shared_scale: bool = False,
    rather_than: str | None = None,
    progress: gr.Progress = gr.Progress(track_tqdm=True),
) -> tuple:
    """Explain why the model predicts what it does: the app's main function (api_name="explain").

    Args:
        image: the picture (a file path through the API).
        model: a name from models.available_models().
        layer: the layer CAM methods look at; empty for the model's default.
        methods: method names from explainers.METHODS, e.g. ["gradcam", "layercam"].
        top_k: explain the k most probable classes (0 to explain only `classes`).
        classes: extra classes to explain: "281: tabby", "281" or a name such as "espresso".
        counterfactual: "why not" maps (regions speaking against the class).
        colormap, opacity, shared_scale: how the maps are drawn.
        rather_than: a class ("967: espresso"): each class also gets a row explaining it rather
            than this one (the score y_class - y_rather_than).

    Returns:
        (the maps as HTML: one row per class, one column per method; top predictions; zip of
        everything (explainers/export.py's layout); status line; the grid as one image; the
        Result for re-rendering: web sessions get its key in RESULTS; not part of the API).
    """
    request = prepared_request(
        image, model, layer, methods, top_k, classes, counterfactual, colormap, opacity, shared_scale, rather_than
    )
    progress(0, desc=f"Loading {model}…")
    try:
        result = explained(request, request.checked.usable, progress)
        view, grid, archive = results_view.present(result, *request.display)
    finally:
        memory.release_memory()
    status = with_empty_why_not_note(results_view.status_line(result), result)
    return (view, results_view.predictions_label(result), archive, status, grid, result)


def with_empty_why_not_note(status: str, result: Result) -> str:
    """The status line, followed by why the "why not" maps came out empty and which earlier layer
    shows the evidence against the class (why_not_note; it runs a quick sweep in an engine slot of
    its own, so it is called once the explanation's run has given its slot back)."""
    note = empty_why_not_note(result)
    return f"{status}\n\n{note}" if note else status


class Prepared(NamedTuple):
    """A request read and checked: the picture, what to explain, and how to draw it."""

    picture: Image.Image
    name: str  # the image's name, for the files
    checked: Checked
    counterfactual: bool
    display: tuple[str, float, bool]  # colormap, opacity, one scale across classes


def prepared_request(
    image: Any,
    model: str,
    layer: str | None,
    methods: Any,
    top_k: Any,
    classes: Any,
    counterfactual: Any,
    colormap: Any,
    opacity: Any,
    shared_scale: Any,
    rather_than: Any,
) -> Prepared:
    """explain_image's arguments read (the image decoded) and checked; UserError otherwise."""
    picture = values.load_image(image)
    colormap, opacity = values.display_settings(colormap, opacity)
    counterfactual = values.as_bool(counterfactual, "“Why not?”")
    shared_scale = values.as_bool(shared_scale, "“One scale across classes”")
    checked = checked_request(model, layer, methods, top_k, classes, counterfactual, rather_than)
    return Prepared(picture, values.image_name(image), checked, counterfactual, (colormap, opacity, shared_scale))


PROGRESS_EVERY_S = 0.25  # the page's progress bar is updated at most this often (a fast run: never)


def explained(request: Prepared, methods: list[str], progress: Callable[..., Any]) -> Result:
    """Run the engine for ``methods`` (of request's usable ones) under the request's time limit:
    the Result, with its notes (skipped methods, "why not" forms missing, a tiny image). The
    caller gives the freed memory back (memory.release_memory) once it has answered."""
    checked = request.checked
    deadline = budget.Deadline(config.MAX_REQUEST_SECONDS)
    last_sent = [time.monotonic()]

    def report(fraction: float, message: str = "") -> None:
        state.checkpoint(deadline)
        if time.monotonic() - last_sent[0] >= PROGRESS_EVERY_S:
            last_sent[0] = time.monotonic()
            progress(max(0.0, min(1.0, float(fraction))), desc=message or "Explaining…")

    result = state.compute(
        request.picture,
        checked.classifier.name,
        checked.layer,
        methods,
        checked.top_k,
        checked.chosen,
        request.counterfactual,
        progress=report,
        name=request.name,
        rather_than=checked.rather_than,
    )
    notes = [why_not_note(checked.usable, request.counterfactual), values.tiny_image_note(request.picture)]
    result.notes = [f"Skipped: {note}." for note in checked.skipped] + [note for note in notes if note]
    return result


# ---------------------------------------------------------------------------- display


@friendly_errors("redraw the maps")
def rerender(result: Result | str | None, colormap: str, opacity: float, shared_scale: bool) -> tuple:
    """Redraw with another colormap/opacity/scale; the engine does not run again. Only the
    tiles (inside the table) and the grid are encoded: the download is built for the new
    colours on request (prepare_download), so a re-render costs no zip, no PNG of the tiles
    and no copy of the raw maps."""
    result = state.stored(result)
    if result is None:
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    colormap, opacity = values.display_settings(colormap, opacity)
    view, grid, _ = results_view.present(
        result, colormap, opacity, values.as_bool(shared_scale, "“One scale across classes”"), archive=False
    )
    return view, grid, gr.File(value=None), gr.Button(visible=True)


@friendly_errors("prepare the download")
def prepare_download(result: Result | str | None) -> tuple:
    """The zip of what is shown now (after a re-render): its pictures drawn again, the raw maps
    from the file written at the first drawing."""
    result = state.stored(result)
    if result is None or result.shown is None:
        raise UserError("Explain an image first.")
    if not Path(result.shown.folder).is_dir():
        raise UserError(state.EXPIRED)
    path = results_view.write_archive(result, result.shown)
    files.tidy()
    return path, gr.Button(visible=False)


def explain_stream(
    image: Any,
    model: str = config.DEFAULT_MODEL,
    layer: str | None = None,
    methods: list[str] | None = None,
    top_k: float = config.DEFAULT_TOP_K,
    classes: list[str] | str | None = None,
    counterfactual: bool = False,
    colormap: str = config.DEFAULT_COLORMAP,
    opacity: float = config.DEFAULT_OPACITY,
    shared_scale: bool = False,
    rather_than: str | None = None,
    progress: gr.Progress = gr.Progress(track_tqdm=True),
) -> Iterator[tuple]:
    """explain_image as the page wants it: the maps as soon as they are drawn, then the grid
    image and the zip (which only its tab and the download show). When fast and slow methods
    are mixed, the fast maps come first, then all of them once the slow ones are done. Yields
    explain_image's outputs (no zip and no grid before the last); the page's Explain button
    and the API's /explain call it."""
    try:
        request = prepared_request(
            image, model, layer, methods, top_k, classes, counterfactual, colormap, opacity, shared_scale, rather_than
        )
        progress(0, desc=f"Loading {model}…")
        usable = request.checked.usable
        fast = [m for m in usable if not explainers.method_info(m).slow]
        waiting = ", ".join(explainers.method_info(m).title for m in usable if m not in fast)
        first = None
        for step in [fast, [m for m in usable if m not in fast]] if fast and waiting else [usable]:
            result = explained(request, step, progress)
            if first is not None:  # the slow maps join the fast ones (computed once)
                result = state.combined(first, result, usable)
            view, shown, overlays = results_view.present_maps(result, *request.display)
            predictions, status = results_view.predictions_label(result), results_view.status_line(result)
            still = f" · *still computing: {waiting}…*" if step is fast else ""
            yield (view, predictions, None, status + still, None, result)
            first = result
        grid, archive = results_view.present_rest(result, shown, overlays)
        yield (view, predictions, archive, with_empty_why_not_note(status, result), grid, result)
    except gr.Error:
        raise
    except Exception as err:  # noqa: BLE001 - shown as a message, like explain_image's
        raise as_message(err, "explain the image") from None
    finally:  # after the answers (a stopped run too)
        memory.release_memory()
