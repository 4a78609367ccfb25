"""The run's summary.json: accuracy, confusions, misclassified images with their maps, localisation
scores against ground-truth boxes, and bias hints, all from the records of the images."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np

from ..localisation import IOU_HIT
from .work import Settings

TOP_CONFUSIONS = 20
LIST_LIMIT = 500


def summarise(
    records: Sequence[dict], class_names: Sequence[str], model: str, settings: Settings, complete: bool
) -> dict:
    """The summary of the records (one per image, in dataset order) of one run."""
    done = [r for r in records if "error" not in r]
    name = list(class_names).__getitem__
    wrong = [r for r in done if r["predicted"] != r["label"]]
    return {
        "model": model,
        "layer": done[0]["layer"] if done else settings.layer,
        "methods": list(settings.methods),
        "complete": complete,
        "images": len(done),
        "failed": [{"file": r["file"], "error": r["error"]} for r in records if "error" in r],
        "accuracy": (len(done) - len(wrong)) / len(done) if done else None,
        "per_class": _per_class(done, name),
        "confusions": [
            {"label": a, "label_name": name(a), "predicted": b, "predicted_name": name(b), "count": n}
            for (a, b), n in Counter((r["label"], r["predicted"]) for r in wrong).most_common(TOP_CONFUSIONS)
        ],
        "misclassified": [_misclassified(r, name) for r in wrong],
        "localisation": _localisation(done, settings),
        "bias": _bias(done, name, settings),
    }


def _per_class(done: Sequence[dict], name) -> list[dict]:
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in done:
        counts[r["label"]][0] += 1
        counts[r["label"]][1] += r["predicted"] == r["label"]
    return [
        {"class": c, "name": name(c), "images": n, "correct": k, "accuracy": k / n}
        for c, (n, k) in sorted(counts.items())
    ]


def _misclassified(record: dict, name) -> dict:
    analysis = record["analysis"]
    return {
        "file": record["file"],
        "label": record["label"],
        "label_name": name(record["label"]),
        "predicted": record["predicted"],
        "predicted_name": name(record["predicted"]),
        "probability": record["probability"],
        "label_probability": record["label_probability"],
        "maps": {
            target: {method: {"file": record["maps_file"], "key": f"{method}/{target}"} for method in per_method}
            for target, per_method in analysis.items()
        },
        "boxes": {
            target: {method: measured["box"] for method, measured in per_method.items()}
            for target, per_method in analysis.items()
        },
    }


def _localisation(done: Sequence[dict], settings: Settings) -> dict:
    """Every map's box (original pixels) by file, class and method; and per method over the images
    with ground-truth boxes: box accuracy with the true class's map (IoU >= 0.5, "GT-known"), top-1
    localisation (right class and IoU >= 0.5), and the pointing game."""
    boxed = [r for r in done if "boxes" in r]
    per_method: dict[str, dict[str, float]] = {}
    result = {
        "threshold": settings.threshold,
        "iou_hit": IOU_HIT,
        "pointing_tolerance": settings.tolerance,
        "images_with_boxes": len(boxed),
        "per_method": per_method,
        "boxes": {
            r["file"]: {
                target: {method: measured["box"] for method, measured in per_method.items()}
                for target, per_method in r["analysis"].items()
            }
            for r in done
        },
    }
    for method in settings.methods if boxed else ():
        measured = [(r, r["analysis"][str(r["label"])][method]) for r in boxed]
        per_method[method] = {
            "box_accuracy": float(np.mean([m["iou"] >= IOU_HIT for _, m in measured])),
            "top1_localisation": float(
                np.mean([r["predicted"] == r["label"] and m["iou"] >= IOU_HIT for r, m in measured])
            ),
            "pointing_game": float(np.mean([m["hit"] for _, m in measured])),
            "mean_iou": float(np.mean([m["iou"] for _, m in measured])),
        }
    return result


def _bias(done: Sequence[dict], name, settings: Settings) -> dict:
    """Share of each true-class map's mass inside the object boxes (or the centre without boxes):
    mean per class and method, and the images whose map lies mostly outside."""
    shares: dict[tuple[int, str], list[float]] = defaultdict(list)
    outside = []
    for r in done:
        for method, measured in r["analysis"][str(r["label"])].items():
            if measured["inside"] is None:
                continue
            shares[r["label"], method].append(measured["inside"])
            if measured["inside"] < settings.outside:
                outside.append(
                    {
                        "file": r["file"],
                        "label": r["label"],
                        "label_name": name(r["label"]),
                        "predicted": r["predicted"],
                        "method": method,
                        "inside": measured["inside"],
                    }
                )
    per_class = [
        {
            "class": c,
            "name": name(c),
            "method": m,
            "images": len(v),
            "inside": float(np.mean(v)),
            "looks_outside": float(np.mean(v)) < settings.outside,
        }
        for (c, m), v in shares.items()
    ]
    per_class.sort(key=lambda entry: (entry["inside"], entry["class"], entry["method"]))
    outside.sort(key=lambda entry: (entry["inside"], entry["file"], entry["method"]))
    boxed = sum("boxes" in r for r in done)
    region = "boxes" if boxed and boxed == len(done) else "boxes where given, else the centre" if boxed else "centre"
    return {
        "region": region,
        "centre_share": settings.centre_share,
        "outside_below": settings.outside,
        "per_class": per_class,
        "looks_outside_count": len(outside),
        "looks_outside": outside[:LIST_LIMIT],
    }
