"""Command line: how faithful are the maps? Deletion / insertion, Average Drop / Increase, grid
pointing game and the parameter-randomisation sanity check, per method, over a folder of images.

    python -m explainers.evaluate --images DIR [--model NAME] [--methods gradcam,scorecam] [--limit N]
                                  [--steps 50] [--layer L] [--pointing-game] [--sanity] [--out DIR]

Each image is explained for its label (ImageNet file names "n01440764_tench.JPEG" give the wnid, hence
the class), else for its predicted class. Writes into --out: summary.csv (one row per method),
per_image.csv, curves.csv and curves.png (mean deletion / insertion curves), and with --sanity
sanity.csv and sanity.png. Exit status: 0 done, 1 some image failed (skipped), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

import explainers
import models
from explainers import cli, plots
from explainers.metrics import DEFAULT_STEPS, ConfidenceChange, confidence_change, deletion_insertion
from explainers.metrics_pointing import CELLS, pointing_grid, pointing_score
from explainers.metrics_sanity import SANITY_THRESHOLD, SanityResult, cascading_randomisation

WNID = re.compile(r"^(n\d{8})")


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    p = argparse.ArgumentParser(prog="python -m explainers.evaluate",
                                description="Faithfulness metrics of explanation methods over a folder of images.")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (or image files, comma-separated)")
    p.add_argument("--model", default=cli.DEFAULT_MODEL)
    p.add_argument("--methods", default="gradcam", help="comma-separated method names (default gradcam)")
    p.add_argument("--layer", help="target layer of the CAM methods (default: the model's)")
    p.add_argument("--limit", type=cli._positive_int, metavar="N", help="the first N images only")
    p.add_argument("--steps", type=cli._positive_int, default=DEFAULT_STEPS,
                   help=f"deletion / insertion steps (default {DEFAULT_STEPS}: 2 %% of the pixels per step)")
    p.add_argument("--batch-size", type=cli._positive_int, default=64, help="perturbed images per forward pass")
    p.add_argument("--pointing-game", action="store_true", help="grid pointing game on groups of 4 classes")
    p.add_argument("--sanity", action="store_true", help="cascading parameter-randomisation sanity check")
    p.add_argument("--sanity-images", type=cli._positive_int, default=8, metavar="N",
                   help="images used by the sanity check (default 8)")
    p.add_argument("--sanity-stages", type=cli._positive_int, default=8, metavar="N",
                   help="cumulative randomisation stages, top layer down (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the re-initialisation (default 0)")
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when available")
    p.add_argument("--out", default="evaluation", metavar="DIR", help="output folder (default ./evaluation)")
    p.add_argument("-q", "--quiet", action="store_true", help="the table and errors only")
    return p


def label_of(path: Path, classifier) -> int | None:
    """The ImageNet class of an "n01440764_tench.JPEG"-style name, None when it has none."""
    match = WNID.match(path.name)
    if not match or classifier.num_classes != 1000:
        return None
    wnids = models.imagenet_wnids()
    return wnids.index(match.group(1)) if match.group(1) in wnids else None


@dataclass
class Scores:
    """Everything measured for one method."""

    deletion: list[np.ndarray] = field(default_factory=list)  # curves, one per image
    insertion: list[np.ndarray] = field(default_factory=list)
    deletion_auc: list[float] = field(default_factory=list)
    insertion_auc: list[float] = field(default_factory=list)
    confidence: list[ConfidenceChange] = field(default_factory=list)
    pointing: list[float] = field(default_factory=list)
    fractions: np.ndarray | None = None  # x axis of the curves


@dataclass
class Evaluated:
    """One image that was explained: its name, model input and explained class."""

    name: str
    x: torch.Tensor
    target: int
    labelled: bool


def evaluate_image(classifier, x: torch.Tensor, target: int | None, methods: list[str], args,
                   scores: dict[str, Scores], progress) -> int:
    """Explains one image for its class and adds every method's metrics to `scores`; the class."""
    explanation = explainers.explain(classifier, x, methods, targets=None if target is None else [target],
                                     layer=args.layer, progress=progress)
    target = explanation.maps[0].target
    maps = [explanation.get(m, target).map for m in methods]
    chosen = [target] * len(methods)
    curves = deletion_insertion(classifier, x, maps, chosen, steps=args.steps, batch_size=args.batch_size)
    change = confidence_change(classifier, x, maps, chosen, batch_size=args.batch_size)
    for i, method in enumerate(methods):
        s = scores[method]
        s.fractions = curves.fractions
        s.deletion.append(curves.deletion[i])
        s.insertion.append(curves.insertion[i])
        s.deletion_auc.append(float(curves.deletion_auc[i]))
        s.insertion_auc.append(float(curves.insertion_auc[i]))
        s.confidence.append(ConfidenceChange(change.original[i:i + 1], change.explained[i:i + 1]))
    return target


def pointing_groups(items: list[Evaluated]) -> list[list[Evaluated]]:
    """Groups of 4 images of 4 distinct classes, greedily in folder order."""
    groups, current = [], []
    for item in items:
        if item.target not in {other.target for other in current}:
            current.append(item)
        if len(current) == CELLS:
            groups.append(current)
            current = []
    return groups


def play_pointing_game(classifier, groups: list[list[Evaluated]], methods: list[str], layer: str | None,
                       scores: dict[str, Scores]) -> None:
    """Explains the 4 classes of each grid in one call and scores each map in its class's cell."""
    for group in groups:
        grid = pointing_grid(torch.cat([item.x for item in group]))
        targets = [item.target for item in group]
        explanation = explainers.explain(classifier, grid, methods, targets=targets, layer=layer)
        for method in methods:
            for cell, target in enumerate(targets):
                scores[method].pointing.append(pointing_score(explanation.get(method, target).raw, cell))


def summary_rows(methods: list[str], scores: dict[str, Scores], sanity: SanityResult | None) -> list[dict]:
    """One row of means per method."""
    rows = []
    for method in methods:
        s = scores[method]
        change = ConfidenceChange.concatenate(s.confidence)
        row = {"method": method, "images": len(s.deletion_auc),
               "deletion_auc": float(np.mean(s.deletion_auc)), "insertion_auc": float(np.mean(s.insertion_auc)),
               "average_drop": change.average_drop, "increase_in_confidence": change.increase_in_confidence}
        if s.pointing:
            row["pointing_game"] = float(np.nanmean(s.pointing))
            row["pointing_grids"] = len(s.pointing) // CELLS
        if sanity is not None:
            row["sanity_spearman"] = sanity.final(method)
            row["sanity"] = "fails" if sanity.fails(method) else "passes"
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """The summary as an aligned text table."""
    columns = [("method", "method", "{}"), ("images", "images", "{}"),
               ("deletion_auc", "deletion AUC ↓", "{:.3f}"), ("insertion_auc", "insertion AUC ↑", "{:.3f}"),
               ("average_drop", "Average Drop % ↓", "{:.1f}"),
               ("increase_in_confidence", "Increase % ↑", "{:.1f}"),
               ("pointing_game", "pointing game ↑", "{:.3f}"),
               ("sanity_spearman", "sanity Spearman ↓", "{:.3f}"), ("sanity", "sanity check", "{}")]
    columns = [c for c in columns if c[0] in rows[0]]
    cells = [[title for _, title, _ in columns]]
    cells += [[fmt.format(row[key]) for key, _, fmt in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = ["  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))
             for line in cells]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as a CSV file (columns from the first row)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_curves(out: Path, methods: list[str], scores: dict[str, Scores], title: str) -> None:
    """curves.csv (mean curves) and curves.png (deletion and insertion panels, one line per method)."""
    means = {kind: {m: np.mean(getattr(scores[m], kind), axis=0) for m in methods}
             for kind in ("deletion", "insertion")}
    areas = {kind: {m: float(np.mean(getattr(scores[m], f"{kind}_auc"))) for m in methods}
             for kind in ("deletion", "insertion")}
    fractions = {m: scores[m].fractions for m in methods}
    write_csv(out / "curves.csv", [
        {"method": m, "curve": kind, "fraction": f"{f:.6f}", "probability": f"{p:.6f}"}
        for kind in ("deletion", "insertion") for m in methods
        for f, p in zip(fractions[m], means[kind][m])])
    plots.mean_curves_figure(fractions, means["deletion"], means["insertion"], areas["deletion"],
                             areas["insertion"], title).savefig(out / "curves.png", dpi=110)


def write_sanity(out: Path, methods: list[str], sanity: SanityResult, title: str) -> None:
    """sanity.csv (mean Spearman per stage) and sanity.png."""
    write_csv(out / "sanity.csv", [{"method": m, "stage": i + 1, "randomised_modules": count,
                                    "down_to": name, "mean_spearman": f"{sanity.mean(m)[i]:.6f}"}
                                   for m in methods
                                   for i, (count, name) in enumerate(zip(sanity.randomised, sanity.stages))])
    plots.sanity_figure(sanity.randomised, sanity.stages, {m: sanity.mean(m) for m in methods},
                        sanity.threshold, title=title).savefig(out / "sanity.png", dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the evaluation; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else cli.EXIT_USAGE
    progress = cli.Progress(sys.stderr, enabled=sys.stderr.isatty() and not args.quiet)
    try:
        return _run(args, progress)
    except (cli.UsageError, models.ModelError, explainers.ExplainerError) as error:
        progress.clear()
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return cli.EXIT_USAGE


def _run(args, progress) -> int:
    methods = cli.resolve_methods(args.methods)
    classifier = models.load(args.model, args.device)
    cli.check_layer(classifier, args.layer)
    cli.check_methods(classifier, methods, args.layer, False)
    args.layer = args.layer or classifier.default_layer
    files = cli.expand_inputs(cli.split_list(args.images))[:args.limit]
    if not files:
        raise cli.UsageError(f"no image found in {args.images}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))

    scores = {m: Scores() for m in methods}
    done: list[Evaluated] = []
    per_image, failed, started = [], 0, time.perf_counter()
    for number, path in enumerate(files, 1):
        prefix = f"[{number}/{len(files)}] {path.name}"
        try:
            x = classifier.preprocess(cli.load_image(path))
            label = label_of(path, classifier)
            progress.start(prefix)
            target = evaluate_image(classifier, x, label, methods, args, scores, progress)
        except explainers.ExplainerError:
            raise
        except Exception as error:  # a bad image is reported and skipped
            progress.clear()
            failed += 1
            print(f"{prefix}: error: {error if isinstance(error, cli.BadImage) else repr(error)}", file=sys.stderr)
            continue
        progress.clear()
        done.append(Evaluated(path.name, x, target, label is not None))
        for method in methods:
            s = scores[method]
            per_image.append({"image": path.name, "class": target, "label": classifier.labels[target],
                              "from_file_name": label is not None, "method": method,
                              "deletion_auc": f"{s.deletion_auc[-1]:.6f}", "insertion_auc": f"{s.insertion_auc[-1]:.6f}",
                              "probability": f"{s.confidence[-1].original[0]:.6f}",
                              "probability_on_explanation_map": f"{s.confidence[-1].explained[0]:.6f}"})
        log(f"{prefix}: class {target} {classifier.labels[target]}"
            f"{'' if label is not None else ' (predicted)'}, {time.perf_counter() - started:.0f} s so far")
    if not done:
        print(f"no image could be evaluated ({failed} failed)", file=sys.stderr)
        return cli.EXIT_FAILED

    if args.pointing_game:
        groups = pointing_groups(done)
        log(f"pointing game: {len(groups)} grids of 4 classes")
        play_pointing_game(classifier, groups, methods, args.layer, scores)
    sanity = None
    if args.sanity:
        chosen = done[:args.sanity_images]
        log(f"sanity check: {len(chosen)} images, {args.sanity_stages} stages")
        sanity = cascading_randomisation(classifier, torch.cat([item.x for item in chosen]), methods,
                                         [item.target for item in chosen], layer=args.layer,
                                         stages=args.sanity_stages, seed=args.seed)

    rows = summary_rows(methods, scores, sanity)
    header = (f"{classifier.name}, layer {args.layer}, {len(done)} images "
              f"({sum(item.labelled for item in done)} labelled by file name), {args.steps} steps "
              f"({100 / args.steps:.3g} % of the pixels each); deletion to zero, insertion from a "
              f"Gaussian blur (kernel 11, sigma 5)")
    print(header)
    print(format_table(rows))
    if sanity is not None:
        print(f"sanity check: Spearman after full randomisation on {len(sanity.spearman[methods[0]][0])} "
              f"images; fails when > {SANITY_THRESHOLD}")
    write_csv(out / "summary.csv", [{k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()}
                                    for r in rows])
    write_csv(out / "per_image.csv", per_image)
    write_curves(out, methods, scores, header)
    if sanity is not None:
        write_sanity(out, methods, sanity, f"Cascading randomisation, {classifier.name}")
    log(f"wrote {out}/summary.csv, per_image.csv, curves.csv, curves.png"
        + (", sanity.csv, sanity.png" if sanity is not None else ""))
    if failed:
        print(f"{failed} of {len(files)} images failed", file=sys.stderr)
    return cli.EXIT_FAILED if failed else cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
