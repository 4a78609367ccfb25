"""Command line: how faithful are the maps? Deletion / insertion, Average Drop / Increase, grid
pointing game, the parameter-randomisation sanity check with its controls, and the "why not" maps'
emptiness and counterfactual check, per method, over a folder of images.

    python -m explainers.evaluate --images DIR [--model NAME] [--methods gradcam,scorecam] [--limit N]
                                  [--steps 50] [--layer L] [--pointing-game] [--sanity]
                                  [--counterfactual [--why-not runner-up]] [--out DIR]

Each image is explained for its label (ImageNet file names "n01440764_tench.JPEG" give the wnid, hence
the class), else for its predicted class. Writes into --out: summary.csv (one row per method),
per_image.csv, curves.csv and curves.png (mean deletion / insertion curves), and with --sanity
sanity.csv and sanity.png. With --counterfactual the methods that have a "why not" form also explain
the evidence against the same class (or, with --why-not runner-up, against the most probable other
class): the share of near-empty "why not" maps (explainers.evidence)
and the counterfactual check (explainers.metrics.counterfactual_check) join the summary. Exit
status: 0 done, 1 some image failed (skipped), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import explainers
import models
from explainers import cli, plots, request
from explainers.evidence import Evidence, assess_evidence
from explainers.metrics import (
    COUNTERFACTUAL_SHARE,
    DEFAULT_STEPS,
    ConfidenceChange,
    CounterfactualCheck,
    confidence_change,
    counterfactual_check,
    deletion_insertion,
)
from explainers.metrics_pointing import CELLS, pointing_grid, pointing_score
from explainers.metrics_sanity import IMAGE_INDEPENDENT, SURVIVAL_MARGIN, SanityResult, cascading_randomisation

WNID = re.compile(r"^(n\d{8})")


def build_parser() -> argparse.ArgumentParser:
    """The command line's arguments."""
    p = argparse.ArgumentParser(
        prog="python -m explainers.evaluate",
        description="Faithfulness metrics of explanation methods over a folder of images.",
    )
    p.add_argument("--images", required=True, metavar="DIR", help="folder of images (or image files, comma-separated)")
    p.add_argument("--model", default=cli.DEFAULT_MODEL)
    p.add_argument("--methods", default="gradcam", help="comma-separated method names (default gradcam)")
    p.add_argument("--layer", help="target layer of the CAM methods (default: the model's)")
    p.add_argument("--limit", type=cli._positive_int, metavar="N", help="the first N images only")
    p.add_argument(
        "--steps",
        type=cli._positive_int,
        default=DEFAULT_STEPS,
        help=f"deletion / insertion steps (default {DEFAULT_STEPS}: 2 %% of the pixels per step)",
    )
    p.add_argument("--batch-size", type=cli._positive_int, default=64, help="perturbed images per forward pass")
    p.add_argument("--pointing-game", action="store_true", help="grid pointing game on groups of 4 classes")
    p.add_argument("--sanity", action="store_true", help="cascading parameter-randomisation sanity check")
    p.add_argument(
        "--sanity-images",
        type=cli._positive_int,
        default=8,
        metavar="N",
        help="images used by the sanity check (default 8)",
    )
    p.add_argument(
        "--sanity-stages",
        type=cli._positive_int,
        default=8,
        metavar="N",
        help="cumulative randomisation stages, top layer down (default 8)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the re-initialisation and of the noise control (default 0)"
    )
    p.add_argument(
        "--counterfactual", action="store_true", help='also "why not" maps: near-empty share and counterfactual check'
    )
    p.add_argument(
        "--why-not",
        choices=("label", "runner-up"),
        default="label",
        help='the class of the "why not" maps: the image\'s own (default) or the most probable other',
    )
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
    why_not: list[Evidence] = field(default_factory=list)  # one per image, with --counterfactual
    why_not_class: list[int] = field(default_factory=list)
    counterfactual: list[CounterfactualCheck] = field(default_factory=list)


@dataclass
class Evaluated:
    """One image that was explained: its name, model input and explained class."""

    name: str
    x: torch.Tensor
    target: int
    labelled: bool


def evaluate_image(
    classifier, x: torch.Tensor, target: int | None, methods: list[str], args, scores: dict[str, Scores], progress
) -> int:
    """Explains one image for its class and adds every method's metrics to `scores`; the class."""
    explanation = explainers.explain(
        classifier, x, methods, targets=None if target is None else [target], layer=args.layer, progress=progress
    )
    explained_class = explanation.maps[0].target
    assert isinstance(explained_class, int)  # one class index (or none, then the top class) was asked for
    target = explained_class
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
        s.confidence.append(ConfidenceChange(change.original[i : i + 1], change.explained[i : i + 1]))
    with_why_not = [m for m in methods if explainers.METHODS[m].counterfactual]
    if args.counterfactual and with_why_not:
        why_not = target if args.why_not == "label" else next(c for c, _ in explanation.top(2) if c != target)
        normal = (
            explanation
            if why_not == target
            else explainers.explain(classifier, x, with_why_not, targets=[why_not], layer=args.layer)
        )
        evaluate_why_not(classifier, x, why_not, with_why_not, normal, args, scores)
    return target


def evaluate_why_not(
    classifier,
    x: torch.Tensor,
    target: int,
    methods: list[str],
    normal: explainers.Explanation,
    args,
    scores: dict[str, Scores],
) -> None:
    """Explains why not `target` with `methods` (those with a counterfactual form); adds each map's
    evidence (against the raw peak of its normal map in `normal`) and its counterfactual check."""
    explanation = explainers.explain(classifier, x, methods, targets=[target], layer=args.layer, counterfactual=True)
    raw = [explanation.get(m, target).raw for m in methods]
    check = counterfactual_check(classifier, x, raw, [target] * len(methods), batch_size=args.batch_size)
    for i, method in enumerate(methods):
        scores[method].why_not.append(assess_evidence(raw[i], float(normal.get(method, target).raw.max())))
        scores[method].why_not_class.append(target)
        scores[method].counterfactual.append(check.pick(i))


def pointing_groups(items: list[Evaluated]) -> list[list[Evaluated]]:
    """Groups of 4 images of 4 distinct classes, greedily in folder order."""
    groups: list[list[Evaluated]] = []
    current: list[Evaluated] = []
    for item in items:
        if item.target not in {other.target for other in current}:
            current.append(item)
        if len(current) == CELLS:
            groups.append(current)
            current = []
    return groups


def play_pointing_game(
    classifier, groups: list[list[Evaluated]], methods: list[str], layer: str | None, scores: dict[str, Scores]
) -> None:
    """Explains the 4 classes of each grid in one call and scores each map in its class's cell."""
    for group in groups:
        grid = pointing_grid(torch.cat([item.x for item in group]))
        targets = [item.target for item in group]
        explanation = explainers.explain(classifier, grid, methods, targets=targets, layer=layer)
        for method in methods:
            for cell, target in enumerate(targets):
                scores[method].pointing.append(pointing_score(explanation.get(method, target).raw, cell))


def sanity_figures(sanity: SanityResult, method: str) -> dict:
    """The sanity check's figures of one method: Spearman after full randomisation, its controls and
    the verdict."""
    verdict, controls = sanity.verdict(method), sanity.controls[method].means()
    return {
        "sanity_spearman": verdict.spearman,
        "sanity_other_images": controls["other_images"],
        "sanity_noise": controls["noise"],
        "sanity_centre": controls["centre"],
        "sanity_randomised_centre": controls["randomised_centre"],
        "sanity_between_images": controls["between_images"],
        "sanity_excess": verdict.excess,
        "sanity": verdict.outcome,
    }


def why_not_figures(s: Scores) -> dict:
    """The "why not" maps' figures of one method (None for a method without a "why not" form)."""
    if not s.why_not:
        return dict.fromkeys(
            (
                "why_not_maps",
                "why_not_near_empty",
                "counterfactual_checked",
                "counterfactual_region_gain",
                "counterfactual_shifted_gain",
                "counterfactual_wins",
            )
        )
    check = CounterfactualCheck.concatenate(s.counterfactual)
    checked = np.isfinite(check.separation)
    return {
        "why_not_maps": len(s.why_not),
        "why_not_near_empty": 100 * float(np.mean([e.near_empty for e in s.why_not])),
        "counterfactual_checked": check.checked,
        "counterfactual_region_gain": float(np.mean(check.region_gain[checked])) if checked.any() else None,
        "counterfactual_shifted_gain": float(np.mean(check.shifted_gain[checked])) if checked.any() else None,
        "counterfactual_wins": 100 * check.win_rate if checked.any() else None,
    }


WHY_NOT_ROW = (
    "why_not_class",
    "why_not_positive_share",
    "why_not_peak_ratio",
    "why_not_near_empty",
    "counterfactual_region_gain",
    "counterfactual_shifted_gain",
)


def why_not_row(s: Scores) -> dict:
    """The per-image CSV's "why not" fields of the last image of `s`."""
    evidence, check = s.why_not[-1], s.counterfactual[-1]
    return dict(
        zip(
            WHY_NOT_ROW,
            (
                s.why_not_class[-1],
                f"{evidence.positive_share:.6f}",
                "" if evidence.peak_ratio is None else f"{evidence.peak_ratio:.6f}",
                evidence.near_empty,
                f"{check.region_gain[0]:.6f}",
                f"{check.shifted_gain[0]:.6f}",
            ),
        )
    )


def summary_rows(
    methods: list[str], scores: dict[str, Scores], sanity: SanityResult | None, counterfactual: bool = False
) -> list[dict]:
    """One row of means per method (None where a figure does not apply)."""
    rows = []
    for method in methods:
        s = scores[method]
        change = ConfidenceChange.concatenate(s.confidence)
        row = {
            "method": method,
            "images": len(s.deletion_auc),
            "deletion_auc": float(np.mean(s.deletion_auc)),
            "insertion_auc": float(np.mean(s.insertion_auc)),
            "average_drop": change.average_drop,
            "increase_in_confidence": change.increase_in_confidence,
        }
        if s.pointing:
            row["pointing_game"] = float(np.nanmean(s.pointing))
            row["pointing_grids"] = len(s.pointing) // CELLS
        if counterfactual:
            row.update(why_not_figures(s))
        if sanity is not None:
            row.update(sanity_figures(sanity, method))
        rows.append(row)
    return rows


SUMMARY_COLUMNS = [
    ("method", "method", "{}"),
    ("images", "images", "{}"),
    ("deletion_auc", "deletion AUC ↓", "{:.3f}"),
    ("insertion_auc", "insertion AUC ↑", "{:.3f}"),
    ("average_drop", "Average Drop % ↓", "{:.1f}"),
    ("increase_in_confidence", "Increase % ↑", "{:.1f}"),
    ("pointing_game", "pointing game ↑", "{:.3f}"),
]
WHY_NOT_COLUMNS = [
    ("method", "method", "{}"),
    ("why_not_maps", "why-not maps", "{}"),
    ("why_not_near_empty", "near-empty %", "{:.1f}"),
    ("counterfactual_checked", "checked", "{}"),
    ("counterfactual_region_gain", "gain: region ↑", "{:+.3f}"),
    ("counterfactual_shifted_gain", "gain: shifted", "{:+.3f}"),
    ("counterfactual_wins", "region wins % ↑", "{:.1f}"),
]
SANITY_COLUMNS = [
    ("method", "method", "{}"),
    ("sanity_spearman", "Spearman", "{:.3f}"),
    ("sanity_other_images", "other images", "{:.3f}"),
    ("sanity_noise", "noise", "{:.3f}"),
    ("sanity_centre", "centre", "{:.3f}"),
    ("sanity_excess", "excess", "{:+.3f}"),
    ("sanity_between_images", "between images", "{:.3f}"),
    ("sanity_randomised_centre", "randomised vs centre", "{:.3f}"),
    ("sanity", "sanity check", "{}"),
]


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return fmt.format(value)


def format_table(rows: list[dict], columns: list[tuple[str, str, str]] = SUMMARY_COLUMNS) -> str:
    """The rows as an aligned text table of `columns` (key, title, format) present in the rows."""
    columns = [c for c in columns if c[0] in rows[0]]
    cells = [[title for _, title, _ in columns]]
    cells += [[_cell(row[key], fmt) for key, _, fmt in columns] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    lines = [
        "  ".join(text.ljust(w) if i == 0 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths)))
        for line in cells
    ]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as a CSV file (columns from the first row; None as an empty cell)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_curves(out: Path, methods: list[str], scores: dict[str, Scores], title: str) -> None:
    """curves.csv (mean curves) and curves.png (deletion and insertion panels, one line per method)."""
    means = {
        kind: {m: np.mean(getattr(scores[m], kind), axis=0) for m in methods} for kind in ("deletion", "insertion")
    }
    areas = {
        kind: {m: float(np.mean(getattr(scores[m], f"{kind}_auc"))) for m in methods}
        for kind in ("deletion", "insertion")
    }
    fractions: dict[str, np.ndarray] = {}
    for m in methods:
        measured = scores[m].fractions
        if measured is None:
            raise ValueError(f"no curves of {m} to write: no image was evaluated")
        fractions[m] = measured
    write_csv(
        out / "curves.csv",
        [
            {"method": m, "curve": kind, "fraction": f"{f:.6f}", "probability": f"{p:.6f}"}
            for kind in ("deletion", "insertion")
            for m in methods
            for f, p in zip(fractions[m], means[kind][m])
        ],
    )
    plots.mean_curves_figure(
        fractions, means["deletion"], means["insertion"], areas["deletion"], areas["insertion"], title
    ).savefig(out / "curves.png", dpi=110)


def write_sanity(out: Path, methods: list[str], sanity: SanityResult, title: str) -> None:
    """sanity.csv (mean Spearman per stage) and sanity.png."""
    write_csv(
        out / "sanity.csv",
        [
            {
                "method": m,
                "stage": i + 1,
                "randomised_modules": count,
                "down_to": name,
                "mean_spearman": f"{sanity.mean(m)[i]:.6f}",
            }
            for m in methods
            for i, (count, name) in enumerate(zip(sanity.randomised, sanity.stages))
        ],
    )
    plots.sanity_figure(
        sanity.randomised,
        sanity.stages,
        {m: sanity.mean(m) for m in methods},
        sanity.threshold,
        title=title,
        controls={m: sanity.verdict(m).control for m in methods},
    ).savefig(out / "sanity.png", dpi=110)


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
    files = cli.expand_inputs(request.split_list(args.images))[: args.limit]
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
            row = {
                "image": path.name,
                "class": target,
                "label": classifier.labels[target],
                "from_file_name": label is not None,
                "method": method,
                "deletion_auc": f"{s.deletion_auc[-1]:.6f}",
                "insertion_auc": f"{s.insertion_auc[-1]:.6f}",
                "probability": f"{s.confidence[-1].original[0]:.6f}",
                "probability_on_explanation_map": f"{s.confidence[-1].explained[0]:.6f}",
            }
            if args.counterfactual:
                row.update(why_not_row(s) if s.why_not else dict.fromkeys(WHY_NOT_ROW))
            per_image.append(row)
        log(
            f"{prefix}: class {target} {classifier.labels[target]}"
            f"{'' if label is not None else ' (predicted)'}, {time.perf_counter() - started:.0f} s so far"
        )
    if not done:
        print(f"no image could be evaluated ({failed} failed)", file=sys.stderr)
        return cli.EXIT_FAILED

    if args.pointing_game:
        groups = pointing_groups(done)
        log(f"pointing game: {len(groups)} grids of 4 classes")
        play_pointing_game(classifier, groups, methods, args.layer, scores)
    sanity = None
    if args.sanity:
        chosen = done[: args.sanity_images]
        log(f"sanity check: {len(chosen)} images, {args.sanity_stages} stages")
        sanity = cascading_randomisation(
            classifier,
            torch.cat([item.x for item in chosen]),
            methods,
            [item.target for item in chosen],
            layer=args.layer,
            stages=args.sanity_stages,
            seed=args.seed,
        )

    rows = summary_rows(methods, scores, sanity, args.counterfactual)
    header = (
        f"{classifier.name}, layer {args.layer}, {len(done)} images "
        f"({sum(item.labelled for item in done)} labelled by file name), {args.steps} steps "
        f"({100 / args.steps:.3g} % of the pixels each); deletion to zero, insertion from a "
        f"Gaussian blur (kernel 11, sigma 5)"
    )
    print(header)
    print(format_table(rows))
    if args.counterfactual:
        which = "the same classes" if args.why_not == "label" else "each image's most probable other class"
        print(
            f'\n"why not" maps of {which}: near-empty when positive on < 1 % of the pixels or '
            f"peak < 1 % of the normal map's; counterfactual check: log-probability gain of the class when "
            f"the map's top {COUNTERFACTUAL_SHARE:.0%} (positive pixels) is set to zero, against shifted "
            f"copies of the same region"
        )
        print(format_table(rows, WHY_NOT_COLUMNS))
    if sanity is not None:
        print(
            f"\nsanity check on {len(sanity.spearman[methods[0]][0])} images: Spearman with the trained map "
            f"after full randomisation, beside its controls (other images' trained maps, the randomised "
            f"model's map of noise, a centred Gaussian); fails when it exceeds the largest control by more "
            f"than {SURVIVAL_MARGIN}, image-independent when trained maps of different images agree at "
            f">= {IMAGE_INDEPENDENT}"
        )
        print(format_table(rows, SANITY_COLUMNS))
    write_csv(
        out / "summary.csv", [{k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows]
    )
    write_csv(out / "per_image.csv", per_image)
    write_curves(out, methods, scores, header)
    if sanity is not None:
        write_sanity(out, methods, sanity, f"Cascading randomisation, {classifier.name}")
    log(
        f"wrote {out}/summary.csv, per_image.csv, curves.csv, curves.png"
        + (", sanity.csv, sanity.png" if sanity is not None else "")
    )
    if failed:
        print(f"{failed} of {len(files)} images failed", file=sys.stderr)
    return cli.EXIT_FAILED if failed else cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
