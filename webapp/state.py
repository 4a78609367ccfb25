"""What a run computed and where it is kept: the Result (raw maps, the crop, the input tensor),
the bounded store that holds results for re-rendering (sessions hold only a key), the engine
slots that limit how many runs compute at once, and the engine's own threads they run on."""

from __future__ import annotations

import contextvars
import functools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch
from PIL import Image

import explainers
import models
from explainers import export
from explainers.targets import ClassSet, Target

from . import budget, config, queue_policy
from .errors import UserError
from .result_store import ResultStore

if TYPE_CHECKING:
    from .results_view import Shown

T = TypeVar("T")

#: Number of times the engine (explainers.explain) ran in this process; tests read it to
#: check that display changes (colormap, opacity, scale) only re-render.
ENGINE_CALLS = 0
ENGINE_SLOTS = threading.BoundedSemaphore(config.ENGINE_CONCURRENCY)  # held until a run stops
_ENGINE_THREADS: queue.LifoQueue[ThreadPoolExecutor] = queue.LifoQueue()
for _slot in range(config.ENGINE_CONCURRENCY):
    _ENGINE_THREADS.put(ThreadPoolExecutor(1, thread_name_prefix=f"engine-{_slot}"))
PASS_TIMES = budget.PassTimes()
EXPIRED = (
    "This result is no longer kept on the server (it keeps the latest results of all "
    "visitors for up to an hour). Please press Explain again."
)


@dataclass
class Tile:
    """One computed map and what its label needs (an export.MapLike)."""

    method: str
    target: Target  # a class index, or a Contrast ("tabby rather than espresso")
    map: np.ndarray
    raw: np.ndarray
    probability: float
    seconds: float
    counterfactual: bool
    settings: dict = field(default_factory=dict)  # how it was made (RISE: {"masks": 1000})


@dataclass
class Result:
    """Everything one run computed; re-rendering and the export need nothing else."""

    model: str
    layer: str | None
    device: str
    crop: Image.Image
    methods: list[str]
    targets: list[Target]  # the rows, in order: classes, each followed by its contrast if any
    labels: dict[Target, str]
    tiles: dict[export.TileKey, Tile]  # by (method, target, counterfactual): "why not" maps apart
    predictions: list[tuple[int, str, float]]
    counterfactual: bool  # "why not" rows were added (under each class, for the methods that have them)
    seconds: float
    inputs: Any = None  # the preprocessed image tensor [1, 3, H, W] the maps explain
    name: str = "image"  # the image's name, for the files
    input_size: tuple[int, int] = (224, 224)
    class_names: Sequence[str] = ()  # every class of the model (the classifier's list)
    photo: Image.Image | None = None  # the whole photo (long side at most export.MAX_PHOTO_SIDE)
    photo_box: tuple[float, float, float, float] | None = None  # the crop's box in it
    notes: list[str] = field(default_factory=list)  # said next to the maps (skipped methods, ...)
    finished: str = field(default_factory=lambda: time.strftime("%H:%M:%S"))
    npz_path: str | None = None
    shown: Shown | None = None  # what the page shows now (the last drawing)

    def nbytes(self) -> int:
        """The memory this result holds: maps, the crop, the photo and the input tensor."""
        maps = sum(tile.map.nbytes + tile.raw.nbytes for tile in self.tiles.values())
        pictures = sum(p.width * p.height * len(p.getbands()) for p in (self.crop, self.photo) if p is not None)
        inputs = self.inputs.element_size() * self.inputs.nelement() if self.inputs is not None else 0
        return maps + pictures + inputs

    def explained(self) -> export.Explained:
        """The export's view of this result (the same as the CLI's for the same request)."""
        keys = [(m, t, cf) for t in self.targets for cf in (False, True) for m in self.methods]
        tiles = [self.tiles[key] for key in keys if key in self.tiles]
        return export.Explained(
            name=self.name,
            model=self.model,
            layer=self.layer,
            device=self.device,
            input_size=self.input_size,
            crop=self.crop,
            labels=self.class_names,
            methods=self.methods,
            targets=self.targets,
            probabilities={t.target: t.probability for t in tiles},
            predictions=[(c, p) for c, _, p in self.predictions],
            maps=tiles,
            counterfactual=self.counterfactual,
            photo=self.photo,
            photo_box=self.photo_box,
        )


RESULTS: ResultStore[Result] = ResultStore(config.RESULTS_MAX_BYTES, config.RESULTS_MAX_AGE_S, size_of=Result.nbytes)


def on_engine_thread(work: Callable[[], T]) -> T:
    """work() on one of the engine's own long-lived threads (the most recently used of those
    free), in the caller's context (Gradio's request, event and progress), the caller waiting.
    PyTorch keeps its CPU thread pool per calling thread: run on whichever of Gradio's worker
    threads was free, the default request's engine took ~90 ms instead of ~80 ms on the 2-core
    host (its pool gone cold)."""
    executor = _ENGINE_THREADS.get()
    try:
        return executor.submit(contextvars.copy_context().run, work).result()
    finally:
        _ENGINE_THREADS.put(executor)


def stored(result: Result | str | None, missing_ok: bool = False) -> Result | None:
    """The Result a session's state refers to: a Result as it is (Python callers), a key looked
    up in RESULTS (web sessions), or None before any run. A key whose result has gone gives
    UserError (None with missing_ok)."""
    if result is None or isinstance(result, Result):
        return result
    found = RESULTS.get(result)
    if found is None and not missing_ok:
        raise UserError(EXPIRED)
    return found


def combined(first: Result, rest: Result, methods: Sequence[str]) -> Result:
    """One Result of two runs of the same request on different methods (the fast ones, then the
    slow ones): the tiles of both, the methods in ``methods``' order, the time of both; the rest
    (targets, predictions, pictures) is the same in both runs and taken from ``rest``."""
    ran = set(first.methods) | set(rest.methods)
    return replace(
        rest,
        methods=[m for m in methods if m in ran],
        tiles={**first.tiles, **rest.tiles},
        seconds=first.seconds + rest.seconds,
    )


def checkpoint(deadline: budget.Deadline) -> None:
    """Stop a run (by raising) once it is over its time or its visitor has gone."""
    deadline.check()
    queue_policy.stop_if_client_gone()


def with_contrasts(classes: Sequence[int | ClassSet], rather_than: int | None) -> list[Target]:
    """The rows to explain: each class, followed by "it rather than ``rather_than``" (a
    Contrast) when ``rather_than`` is given and is another class."""
    rows: list[Target] = []
    for c in classes:
        rows.append(c)
        if rather_than is not None and isinstance(c, int) and c != rather_than:  # checked_request refuses sets
            rows.append(explainers.Contrast(c, rather_than))
    return rows


def top_classes(classifier: models.Classifier, x: torch.Tensor, k: int) -> list[int]:
    """The k most probable classes of the image x [1, 3, H, W] (one forward pass)."""
    with torch.no_grad():
        logits = classifier.module(x.to(classifier.device))
    return [int(c) for c in logits[0].float().topk(k).indices]


def _explanations(
    classifier: models.Classifier,
    x: torch.Tensor,
    methods: list[str],
    top_k: int,
    classes: Sequence[int | ClassSet],
    layer: str | None,
    counterfactual: bool,
    progress: Callable[[float, str], None] | None,
    rather_than: int | None,
) -> list[explainers.Explanation]:
    """compute's engine calls: the explanation of the top-k and chosen classes (each followed by
    its contrast with ``rather_than``), and with ``counterfactual`` the "why not" maps of its
    classes and class sets."""
    global ENGINE_CALLS
    ENGINE_CALLS += 1
    # The top-k classes (known after the engine's forward pass), then the chosen ones.
    explicit: list[Target] = list(classes)
    if rather_than is not None:
        ranked: list[int | ClassSet] = list(top_classes(classifier, x, top_k)) if top_k else []
        explicit, top_k = with_contrasts(list(dict.fromkeys(ranked + list(classes))), rather_than), 0
    explanation = explainers.explain(
        classifier, x, methods, top_k=top_k or None, targets=explicit or None, layer=layer, progress=progress
    )
    # A second call for the "why not" rows: evidence against each class or class set (contrasts have none).
    why_not = [m for m in methods if explainers.METHODS[m].counterfactual] if counterfactual else []
    targets = [export.as_target(t) for t in explanation.targets[0]]
    classes_only = [t for t in targets if not isinstance(t, explainers.Contrast)]  # classes, class sets
    if not (why_not and classes_only):
        return [explanation]
    ENGINE_CALLS += 1
    return [
        explanation,
        explainers.explain(
            classifier, x, why_not, targets=classes_only, layer=layer, counterfactual=True, progress=progress
        ),
    ]


def compute(
    image: Image.Image,
    model_name: str,
    layer: str | None,
    methods: list[str],
    top_k: int,
    classes: Sequence[int | ClassSet],  # classes and class sets
    counterfactual: bool,
    progress: Callable[[float, str], None] | None = None,
    name: str = "image",
    rather_than: int | None = None,
) -> Result:
    """Run the engine once for all (target, method) pairs and collect the raw maps. With
    ``rather_than``, each class (top-k and chosen) gets a second row: the class rather than
    ``rather_than`` (the top-k are then found by a forward pass first). With
    ``counterfactual``, a second engine call adds the "why not" maps of the same targets, for
    the methods that have that form (explainers.METHODS[m].counterfactual).

    The engine is thread-safe (its hooks are per call), so runs on the same model share it;
    ENGINE_SLOTS bounds how many run at once; they run on the engine's own threads.
    """
    classifier = models.load(model_name)
    crop = classifier.crop(image)
    x = classifier.preprocessing.tensor(crop)  # the photo resized once, for the crop and the input
    if not top_k and not classes:  # explain_image refuses this earlier
        raise UserError("Nothing to explain: set top-k to at least 1 or pick some classes.")
    start = time.perf_counter()
    with ENGINE_SLOTS:
        explanations = on_engine_thread(
            functools.partial(
                _explanations, classifier, x, methods, top_k, classes, layer, counterfactual, progress, rather_than
            )
        )
    explanation = explanations[0]
    targets = [export.as_target(t) for t in explanation.targets[0]]
    seconds = time.perf_counter() - start
    tiles = {}
    for m in (m for run in explanations for m in run.maps):
        if m.image == 0:
            target = export.as_target(m.target)
            tiles[(m.method, target, bool(m.counterfactual))] = Tile(
                m.method,
                target,
                np.asarray(m.map, np.float32),
                np.asarray(m.raw, np.float32),
                float(m.probability),
                float(m.seconds),
                bool(m.counterfactual),
                dict(m.settings),
            )
    predictions = [(int(c), classifier.labels[int(c)], float(p)) for c, p in explanation.top(max(5, top_k))]
    photo, box = export.fit_photo(image, export.photo_box(classifier.preprocessing, image.size))
    return Result(
        model=model_name,
        layer=explanation.layer,
        device=explanation.device,
        crop=crop,
        methods=list(methods),
        targets=targets,
        labels={t: export.target_label(t, classifier.labels) for t in targets},
        tiles=tiles,
        predictions=predictions,
        counterfactual=counterfactual,
        seconds=seconds,
        inputs=x,
        name=name,
        input_size=classifier.input_size,
        class_names=classifier.labels,
        photo=photo,
        photo_box=box,
    )
