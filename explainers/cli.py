"""Command line: explain the predictions of an ImageNet classifier on image files.

    python -m explainers IMAGE... [--model NAME] [--methods gradcam,scorecam] [--top-k 3 | --targets 281,tabby]
                         [--contrast tabby:espresso] [--class-set dog]
                         [--layer NAME] [--counterfactual] [--shared-scale] [--colormap jet] [--opacity 0.5]
                         [--device cpu|cuda] [--out DIR]
    python -m explainers IMAGE... --layers a,b,c|sweep [--methods gradcam,layercam] [--targets 281] ...
    python -m explainers IMAGE... --attack espresso|967|any [--epsilon 2] [--attack-steps 10] [--methods ...]
    python -m explainers --list-models | --list-methods | --list-layers [--model NAME]

For each image it writes into DIR (and nowhere else) the layout of explainers/export.py, the
same files as the web app's zip:
    <stem>_input.png              the centre crop the model saw
    <stem>_<method>_<key>-<label>.png        one overlay per (method, target) on that crop
    <stem>_<method>_<key>-<label>_photo.jpg  the same map on the whole photo, at its size
    <stem>_grid.png               rows = targets, columns = the input + one per method
    <stem>_maps.npz               "<method>/<key>/map" (in [0, 1]) and "<method>/<key>/raw" arrays
(<key>: the class index, "contrast-281-967" for --contrast tabby:espresso, "set-dog" for --class-set dog)
    <stem>.json                   model, layer, device, top-5 predictions, targets, methods, timings
With --counterfactual each class also gets its "why not" maps (<method>-cf), for the methods that
have that form, as the app adds its "why not" rows: the same files as the app's zip.
With --attack (explainers.attack: PGD within --epsilon levels of 0-255 per pixel of the crop) it
writes the layout above for the clean image and for the adversarial crop, each explaining the clean
top class, the adversarial top class and the target:
    <stem>_...                    the clean image's layout
    <stem>_adversarial_input.png  the adversarial image (the crop the model sees, lossless)
    <stem>_adversarial_...        its maps, grid, npz and json, in the same layout
    <stem>_difference.png         the perturbation, amplified (mid-grey: no change)
    <stem>_attack.json            target, budget, L-inf change, top-3 predictions before and after
With --layers (a layer sweep, explainers/sweep.py: one target, the top class or the first of
--targets) it writes instead:
    <stem>_<method>_<layer>.png   one overlay per (method, layer) on the crop
    <stem>_sweep.json             per-layer deletion / insertion AUC, the recommended layer, same maps
Exit status: 0 all done, 1 some image could not be read or explained, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

import explainers
import models
from explainers import attack, export, rendering, request, sweep

DEFAULT_MODEL = "efficientnet_lite0"
ATTACK_EPSILON, ATTACK_STEPS = 2.0, 10
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A bad argument: reported on one line, exit status 2."""


class BadImage(Exception):
    """An input that is not a readable image: reported, skipped, exit status 1 at the end."""


# --------------------------------------------------------------------------- arguments


def _opacity(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _levels(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value <= attack.LEVELS:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 255 levels, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m explainers",
        description="Visual explanations (CAM family, Score-CAM, guided backprop, ...) of an "
        "ImageNet classifier's predictions on image files.",
        epilog="Exit status: 0 done, 1 some image failed (the others are written), 2 bad arguments.",
    )
    p.add_argument(
        "images",
        nargs="*",
        metavar="IMAGE",
        help=f"image files, or directories (their {'/'.join(s[1:] for s in IMAGE_SUFFIXES)} files, sorted)",
    )
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name (default {DEFAULT_MODEL}; see --list-models)")
    p.add_argument(
        "--methods",
        default="gradcam",
        help="comma-separated method names, or 'all' (default gradcam; see --list-methods)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--top-k",
        type=_positive_int,
        default=1,
        metavar="K",
        help="explain the K top predictions of each image (default 1)",
    )
    which.add_argument(
        "--targets",
        metavar="CLASSES",
        help="comma-separated classes to explain instead: indices (281) or names (tabby)",
    )
    p.add_argument(
        "--contrast",
        action="append",
        metavar="A:B",
        help="explain 'A rather than B' (the score y_A - y_B), e.g. tabby:espresso; "
        "repeatable; with --targets and --class-set these replace the top-k",
    )
    p.add_argument(
        "--class-set",
        action="append",
        metavar="WORD",
        help="explain an ImageNet category as one class (its classes' summed "
        "probability): dog, cat, bird, ...; repeatable",
    )
    p.add_argument("--layer", help="target layer of the CAM methods (default: the model's; see --list-layers)")
    p.add_argument(
        "--layers",
        metavar="A,B,C|sweep",
        help="layer sweep: explain at each of these layers (or 'sweep': 8 layers spread over the "
        "model) and write per-layer overlays and <stem>_sweep.json with each layer's "
        "faithfulness score and the recommended layer (CAM-family methods, one target)",
    )
    p.add_argument(
        "--counterfactual",
        action="store_true",
        help="also the 'why not' maps: the evidence against each class (methods with that form)",
    )
    p.add_argument(
        "--attack",
        metavar="TARGET",
        help="adversarial image (PGD): make the model see TARGET (a class index or name), or 'any' "
        "other class than its top one; explains the clean and the adversarial image",
    )
    p.add_argument(
        "--epsilon",
        type=_levels,
        metavar="LEVELS",
        help=f"--attack's budget: the largest change of a pixel, in 0-255 levels (default {ATTACK_EPSILON:g})",
    )
    p.add_argument(
        "--attack-steps",
        type=_positive_int,
        metavar="N",
        help=f"--attack's gradient steps (default {ATTACK_STEPS})",
    )
    p.add_argument(
        "--shared-scale",
        action="store_true",
        help="one colour scale per method across the classes of an image, "
        "so that their strengths compare (default: each map scaled on its own)",
    )
    p.add_argument("--colormap", default="jet", choices=rendering.colormaps())
    p.add_argument(
        "--opacity", type=_opacity, default=0.5, help="heat-map opacity over the image, 0 to 1 (default 0.5)"
    )
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument(
        "--out",
        default="explanations",
        metavar="DIR",
        help="output directory, created if needed (default ./explanations)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="errors only")
    p.add_argument("--list-models", action="store_true", help="list the models and exit")
    p.add_argument("--list-methods", action="store_true", help="list the methods and exit")
    p.add_argument("--list-layers", action="store_true", help="list the layers of --model and exit")
    return p


def resolve_methods(text: str) -> list[str]:
    """Method names from "gradcam,LayerCAM" or "all"; guided_<cam> fusions are accepted too."""
    names = request.split_list(text)
    if [n.lower() for n in names] == ["all"]:
        return list(explainers.METHODS)
    if not names:
        raise UsageError("--methods: no method given")
    known = {name.lower(): name for name in explainers.METHODS}
    methods = []
    for name in names:
        method = known.get(name.lower(), name)
        try:
            explainers.method_info(method)
        except explainers.ExplainerError:
            raise UsageError(
                f"unknown method {name!r}{_suggest(name.lower(), known)}; choose from: {', '.join(explainers.METHODS)}"
            ) from None
        if method not in methods:
            methods.append(method)
    return methods


def resolve_targets(classifier, text: str) -> list[int]:
    """Class indices from "281,tabby,tiger cat" (request.parse_classes, as the app reads them)."""
    try:
        targets = request.parse_classes(classifier, text)
    except request.RequestError as error:
        raise UsageError(str(error)) from None
    if not targets:
        raise UsageError("--targets: no class given")
    return targets


def resolve_extra_targets(classifier, contrasts: Sequence[str] | None, class_sets: Sequence[str] | None) -> list:
    """The Contrast and ClassSet targets of --contrast A:B and --class-set WORD."""
    try:
        return [request.parse_contrast(classifier, text) for text in contrasts or ()] + [
            request.parse_class_set(classifier, word) for word in class_sets or ()
        ]
    except request.RequestError as error:
        raise UsageError(str(error)) from None


def check_layer(classifier, layer: str | None) -> None:
    if layer is None:
        return
    names = [info.name for info in classifier.layers]
    if layer not in names:
        raise UsageError(f"unknown layer {layer!r} for {classifier.name}{_suggest(layer, names)}; see --list-layers")


def check_methods(classifier, methods: list[str], layer: str | None, counterfactual: bool = False) -> None:
    """UsageError when a method cannot run on the model and layer, or when ``counterfactual`` asks
    for "why not" maps that none of the methods has (some having none is fine: their class maps
    are made, as in the app)."""
    if counterfactual and not why_not_methods(methods, True):
        raise UsageError(f"--counterfactual: none of {', '.join(methods)} has a 'why not' form")
    reasons = explainers.availability(classifier, layer)
    for method in methods:
        if reasons.get(method):
            raise UsageError(f"method {method!r} cannot run on {classifier.name}: {reasons[method]}")


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


# --------------------------------------------------------------------------- listings


def list_models(out) -> None:
    for info in models.available_models():
        h, w = info.input_size
        ready = "ready" if info.ready else "download needed"
        print(f"{info.name:<24} {info.source:<12} {w}x{h:<5} {ready:<16} {info.description}", file=out)


def list_methods(out) -> None:
    for name, info in explainers.METHODS.items():
        flags = ", ".join(f for f, on in (("slow", info.slow), ("counterfactual", info.counterfactual)) if on)
        print(f"{name:<20} {info.title:<22} {info.kind:<15} {flags:<21} {info.summary}", file=out)


def list_layers(classifier, out) -> None:
    """One line per layer (* marks the default): name, grid shape, module kind, and how tokens
    are read; then why the default layer is the default."""
    for info in classifier.layers:
        mark = "*" if info.name == classifier.default_layer else " "
        shape = "x".join(str(s) for s in info.shape)
        print(f"{mark} {info.name:<40} {shape:<16} {info.kind:<16} {request.layout_note(info)}".rstrip(), file=out)
    if classifier.default_layer_reason:
        print(f"\nDefault layer (*): {classifier.default_layer_reason}", file=out)


# --------------------------------------------------------------------------- inputs


def expand_inputs(paths: Sequence[str]) -> list[Path]:
    """Files as given; directories replaced by their images (sorted, not recursive)."""
    files, seen = [], set()
    for text in paths:
        path = Path(text)
        found = (
            sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if path.is_dir()
            else [path]
        )
        for file in found:
            if file.resolve() not in seen:  # the same file named twice is done once
                seen.add(file.resolve())
                files.append(file)
    return files


def load_image(path: Path) -> Image.Image:
    """The upright RGB image, read by models.open_image (the app's loader and limits);
    BadImage with its reason otherwise."""
    try:
        return models.open_image(path)
    except models.ImageError as error:
        raise BadImage(str(error)) from None


# --------------------------------------------------------------------------- outputs


def why_not_methods(methods: list[str], counterfactual: bool) -> list[str]:
    """The methods whose "why not" maps are added with --counterfactual (those with that form)."""
    return [m for m in methods if explainers.method_info(m).counterfactual] if counterfactual else []


def explain_image(
    classifier, image: Image.Image, methods: list[str], targets: list | None, args, progress: Progress
) -> list[explainers.Explanation]:
    """The class maps of one image (``targets``, else the --top-k classes), then with
    --counterfactual the "why not" maps of its classes, as the app computes them
    (webapp.state.compute): a second engine call for the classes found."""
    x = classifier.preprocess(image)
    runs = [
        explainers.explain(
            classifier,
            x,
            methods=methods,
            targets=targets,
            top_k=None if targets else args.top_k,
            layer=args.layer,
            progress=progress,
        )
    ]
    why_not = why_not_methods(methods, args.counterfactual)
    classes = [t for t in runs[0].targets[0] if isinstance(t, int)]  # contrasts and sets have none
    if why_not and classes:
        runs.append(
            explainers.explain(
                classifier, x, why_not, targets=classes, layer=args.layer, counterfactual=True, progress=progress
            )
        )
    return runs


def explained(
    name: str,
    classifier,
    runs: Sequence[explainers.Explanation],
    methods: list[str],
    counterfactual: bool,
    crop: Image.Image,
    photo: Image.Image | None,
) -> export.Explained:
    """The export's view of one image's explanation: the maps of its engine runs (the first gives
    the targets and predictions; later ones add "why not" maps), in the app's order: per target,
    its maps, then its "why not" maps, each in the methods' order. With the whole ``photo``, the
    maps are also drawn on it."""
    targets = [export.as_target(t) for t in runs[0].targets[0]]
    order = {(m, t, cf): i for i, (t, cf, m) in enumerate(itertools.product(targets, (False, True), methods))}
    maps = sorted(
        (m for run in runs for m in run.maps if m.image == 0),
        key=lambda m: order[(m.method, export.as_target(m.target), bool(m.counterfactual))],
    )
    return export.Explained(
        name=name,
        model=classifier.name,
        layer=runs[0].layer,
        device=str(runs[0].device),
        input_size=tuple(classifier.input_size),
        crop=crop,
        labels=classifier.labels,
        methods=methods,
        targets=targets,
        probabilities={export.as_target(m.target): float(m.probability) for m in maps},
        predictions=runs[0].top(5),
        maps=maps,
        counterfactual=counterfactual,
        photo=photo,
        photo_box=export.photo_box(classifier.preprocessing, photo.size) if photo is not None else None,
    )


# --------------------------------------------------------------------------- progress


class Progress:
    """A one-line progress bar on a terminal, fed by the engine's progress(fraction, message)."""

    def __init__(self, stream, enabled: bool):
        self.stream, self.enabled = stream, enabled
        self.prefix, self.drawn, self.last = "", False, 0.0

    def start(self, prefix: str) -> None:
        self.prefix, self.last = prefix, 0.0
        self(0.0, "")

    def __call__(self, fraction: float, message: str = "") -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if 0.0 < fraction < 1.0 and now - self.last < 0.1:
            return
        self.last = now
        fraction = min(1.0, max(0.0, float(fraction)))
        filled = round(20 * fraction)
        line = f"{self.prefix} [{'#' * filled}{'-' * (20 - filled)}] {fraction:4.0%} {message}"
        width = shutil.get_terminal_size((80, 20)).columns - 1
        self.stream.write("\r" + line[:width].ljust(width))
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            width = shutil.get_terminal_size((80, 20)).columns - 1
            self.stream.write("\r" + " " * width + "\r")
            self.stream.flush()
            self.drawn = False


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # argparse: --help (0) or a malformed command line (2, usage printed)
        return stop.code if isinstance(stop.code, int) else EXIT_USAGE
    err = sys.stderr
    progress = Progress(err, enabled=getattr(err, "isatty", lambda: False)() and not args.quiet)
    try:
        return _run(args, progress)
    except (UsageError, models.ModelError, explainers.ExplainerError) as error:
        progress.clear()
        print(f"{parser.prog}: error: {error}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        progress.clear()
        print("interrupted", file=err)
        return 130


def resolve_sweep_layers(classifier, args) -> list[str]:
    """The layers of --layers ('sweep': sweep.default_layers), after checking the other options:
    one class (--targets) or class set (--class-set) is swept, the top class by default."""
    if args.layer or args.counterfactual or args.contrast or args.top_k != 1:
        raise UsageError(
            "--layers sweeps one class or class set: use it without --layer, --counterfactual, --contrast, --top-k"
        )
    if len(request.split_list(args.targets or "")) + len(args.class_set or ()) > 1:
        raise UsageError("--layers sweeps one class or class set: give one --targets class or one --class-set")
    if args.layers.strip() == "sweep":
        return sweep.default_layers(classifier)
    layers = request.split_list(args.layers)
    for layer in layers:
        check_layer(classifier, layer)
    return layers


def write_sweep(out_dir: Path, stem: str, image: Image.Image, classifier, methods, layers, targets, args) -> dict:
    """One image's layer sweep: an overlay per (method, layer) and <stem>_sweep.json; the record."""
    result = sweep.sweep(
        classifier, classifier.preprocess(image), methods, layers, target=targets[0] if targets else None
    )
    crop = classifier.crop(image)
    record = {"model": classifier.name, "image": stem, **result.to_json(), "overlays": {}, "json": f"{stem}_sweep.json"}
    for method, per_layer in result.maps.items():
        record["overlays"][method] = {}
        for layer, saliency in per_layer.items():
            name = f"{stem}_{export.safe_name(method)}_{export.safe_name(layer)}.png"
            export.save_picture(rendering.overlay(crop, saliency, args.colormap, args.opacity), out_dir / name)
            record["overlays"][method][layer] = name
    (out_dir / record["json"]).write_text(json.dumps(record, indent=2))
    return record


def display_of(args) -> export.Display:
    """How the maps are drawn: --colormap, --opacity, --shared-scale."""
    return export.Display(args.colormap, args.opacity, args.shared_scale)


def resolve_attack(classifier, args) -> int | None:
    """The class --attack aims at (None for 'any' other class), after checking the options that go
    with it; None without --attack."""
    if not args.attack:
        if args.epsilon is not None or args.attack_steps is not None:
            raise UsageError("--epsilon and --attack-steps go with --attack TARGET")
        return None
    if args.layers or args.counterfactual or args.targets or args.contrast or args.class_set or args.top_k != 1:
        raise UsageError(
            "--attack explains the clean and the adversarial image's top classes and its target: use it "
            "without --layers, --counterfactual, --targets, --contrast, --class-set, --top-k"
        )
    if args.attack.strip().lower() == "any":
        return None
    classes = resolve_targets(classifier, args.attack)
    if len(classes) != 1:
        raise UsageError(f"--attack: give one class (or 'any'), not {len(classes)}")
    return classes[0]


def write_attack(
    out_dir: Path, stem: str, name: str, image: Image.Image, classifier, methods, aim: int | None, args, progress
) -> dict:
    """One image's attack (explainers.attack.explain_attack): the layout of the clean image, that of
    the adversarial crop (stem "<stem>_adversarial"), the difference image and <stem>_attack.json;
    returns that record."""
    epsilon = args.epsilon if args.epsilon is not None else ATTACK_EPSILON
    steps = args.attack_steps or ATTACK_STEPS
    run = attack.explain_attack(classifier, image, methods, aim, epsilon, steps, layer=args.layer, progress=progress)
    adversarial_stem = f"{stem}_adversarial"
    export.write_folder(
        out_dir,
        explained(name, classifier, [run.clean], methods, False, classifier.crop(image), image),
        display_of(args),
        stem,
    )
    adversarial = run.attack.image()
    export.write_folder(
        out_dir,
        explained(f"{adversarial_stem}.png", classifier, [run.adversarial], methods, False, adversarial, None),
        display_of(args),
        adversarial_stem,
    )
    export.save_picture(run.attack.difference_image(), out_dir / f"{stem}_difference.png")
    record = attack_record(run, classifier.labels, name, classifier.name, steps)
    record["files"] = {
        "clean": f"{stem}.json",
        "adversarial_image": f"{adversarial_stem}_input.png",
        "adversarial": f"{adversarial_stem}.json",
        "difference": f"{stem}_difference.png",
    }
    record["json"] = f"{stem}_attack.json"
    (out_dir / record["json"]).write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return record


def attack_record(run: attack.ExplainedAttack, labels: Sequence[str], name: str, model: str, steps: int) -> dict:
    """What an attack did: its target and budget, the change it made, the top-3 before and after."""

    def top3(explanation: explainers.Explanation) -> list[dict]:
        return [{"class": c, "label": labels[c], "probability": round(p, 6)} for c, p in explanation.top(3)]

    result = run.attack
    return {
        "image": name,
        "model": model,
        "target": "any" if result.target[0] is None else {"class": result.target[0], "label": labels[result.target[0]]},
        "epsilon": result.epsilon,
        "steps": steps,
        "linf_levels": result.linf_levels[0],
        "success": result.success[0],
        "difference_gain": round(result.difference_gain(), 3),
        "classes": [{"class": c, "label": labels[c]} for c in run.classes],
        "clean": top3(run.clean),
        "adversarial": top3(run.adversarial),
    }


def attack_summary(record: dict) -> str:
    """ "tabby (41.2%) -> espresso (97.0%), L-inf 2 of 2 levels" (and "target not reached")."""
    before, after = record["clean"][0], record["adversarial"][0]
    missed = "" if record["success"] else ", target not reached"
    return (
        f"{before['label']} ({before['probability']:.1%}) -> {after['label']} ({after['probability']:.1%}), "
        f"L-inf {record['linf_levels']:g} of {record['epsilon']:g} levels{missed}"
    )


def _run(args, progress: Progress) -> int:
    listing = args.list_models or args.list_methods or args.list_layers
    if args.list_models:
        list_models(sys.stdout)
    if args.list_methods:
        list_methods(sys.stdout)
    if listing and not args.list_layers:
        return EXIT_OK
    if not listing and not args.images:
        raise UsageError("no IMAGE given (or use --list-models, --list-methods, --list-layers)")
    methods = None if listing else resolve_methods(args.methods)

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UsageError("--device cuda: CUDA is not available here")
    classifier = models.load(args.model, args.device)
    if args.list_layers:
        list_layers(classifier, sys.stdout)
        return EXIT_OK
    assert methods is not None  # every listing has returned

    sweep_layers = resolve_sweep_layers(classifier, args) if args.layers else None
    aim = resolve_attack(classifier, args)
    check_layer(classifier, args.layer)
    check_methods(classifier, methods, args.layer, args.counterfactual)
    targets = (
        (resolve_targets(classifier, args.targets) if args.targets else [])
        + resolve_extra_targets(classifier, args.contrast, args.class_set)
    ) or None

    files = expand_inputs(args.images)
    if not files:
        raise UsageError("no image found in: " + ", ".join(args.images))
    out_dir = Path(args.out)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir}: not a directory")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {out_dir}: cannot create the directory ({error.strerror})") from None
    stems: set[str] = set()
    failed = 0
    for number, path in enumerate(files, 1):
        prefix = f"[{number}/{len(files)}] {path.name}"
        stem = base = export.stem_of(path.name)
        copy = 1
        while stem in stems:  # the same name from another directory: do not overwrite
            copy += 1
            stem = f"{base}-{copy}"
        stems.add(stem)
        started = time.perf_counter()
        try:
            image = load_image(path)
            progress.start(prefix)
            if sweep_layers:
                record = write_sweep(out_dir, stem, image, classifier, methods, sweep_layers, targets, args)
                progress.clear()
                if not args.quiet:
                    where = out_dir / record["json"]
                    print(f"{prefix}: recommended layer {record['recommended']} -> {where}", file=sys.stderr)
                continue
            if args.attack:
                record = write_attack(out_dir, stem, path.name, image, classifier, methods, aim, args, progress)
                progress.clear()
                if not args.quiet:
                    print(f"{prefix}: {attack_summary(record)} -> {out_dir / record['json']}", file=sys.stderr)
                continue
            runs = explain_image(classifier, image, methods, targets, args, progress)
            crop = classifier.crop(image)
            record = export.write_folder(
                out_dir,
                explained(path.name, classifier, runs, methods, args.counterfactual, crop, image),
                display_of(args),
                stem,
            )
        except BadImage as error:
            progress.clear()
            failed += 1
            print(f"{prefix}: error: {error}", file=sys.stderr)
            continue
        except (explainers.ExplainerError, KeyboardInterrupt):
            raise
        except Exception as error:  # one image going wrong must not lose the others
            progress.clear()
            failed += 1
            print(f"{prefix}: error: {type(error).__name__}: {error}", file=sys.stderr)
            continue
        progress.clear()
        if not args.quiet:
            best = record["predictions"][0]
            print(
                f"{prefix}: {best['label']} ({best['probability']:.1%}), "
                f"{len(record['maps'])} maps in {time.perf_counter() - started:.1f} s "
                f"-> {out_dir / record['grid']}",
                file=sys.stderr,
            )
    if args.counterfactual and not args.quiet:
        without = [m for m in methods if m not in why_not_methods(methods, True)]
        if without:
            print(f"no 'why not' maps for: {', '.join(without)} (no such form)", file=sys.stderr)
    if failed:
        print(f"{failed} of {len(files)} images failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK
