"""DIR/report.html: one self-contained page (inline CSS and JS, no network) to look through a run.

Sections: totals; the misclassified images, the page's main content (input, map for the true
class, map for the predicted class, per method), sortable by confidence; the most frequent
confusions; localisation scores (with ground-truth boxes); bias hints (classes and images whose
true-class maps lie mostly outside the object or the centre); per-class accuracy. Every text is
HTML-escaped: file and class names come from users. Pictures are files under DIR/overlays/,
linked relatively.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from html import escape
from pathlib import Path

import models

from . import overlays
from .dataset import Sample
from .store import Store

REPORT = "report.html"
SHOWN_MISCLASSIFIED = 1000
SHOWN_OUTSIDE = 60
SHOWN_CLASSES = 30
_OMITTED_SVG = (
    "<svg xmlns='http://www.w3.org/2000/svg' width='140' height='140'><rect width='140' height='140' "
    "fill='#eee'/><text x='70' y='66' font-size='12' text-anchor='middle' fill='#555'>not shown here:</text>"
    "<text x='70' y='84' font-size='12' text-anchor='middle' fill='#555'>in the download</text></svg>"
)
#: What inline_pictures puts in place of a picture over its byte budget.
OMITTED_PICTURE = "data:image/svg+xml;base64," + base64.b64encode(_OMITTED_SVG.encode()).decode("ascii")
_PICTURE = re.compile(r'src="' + overlays.FOLDER + r'/([0-9a-f]{16}_[A-Za-z0-9_+\-]+\.jpg)"')

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:4px 6px;text-align:left;vertical-align:top}
th.sortable{cursor:pointer;background:#f0f0f0}th.sortable:after{content:" \\2195";color:#888}
td.num{text-align:right;font-variant-numeric:tabular-nums}
img{width:140px;height:auto;display:block}
figure{margin:0}figcaption{font-size:12px;color:#555;max-width:140px;overflow-wrap:anywhere}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.pair{display:flex;gap:6px}
.note{color:#555}
"""
_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th.sortable").forEach(function (th) {
    th.addEventListener("click", function () {
      var column = th.cellIndex, body = table.tBodies[0], numeric = th.dataset.type === "number";
      var ascending = th.dataset.order !== "asc";
      th.dataset.order = ascending ? "asc" : "desc";
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
        var order = numeric ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        return ascending ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def write_report(
    out: Path, summary: dict, store: Store, samples: Sequence[Sample], model: models.Classifier, threshold: float
) -> Path:
    """Render the pictures the page shows and write DIR/report.html; returns its path."""
    paths = {sample.file: sample.path for sample in samples}

    def pictures(file: str) -> dict[str, str]:
        record = store.records[file]
        return overlays.render(out, record, paths[file], model, store.load_maps(record), threshold)

    parts = [
        _totals(summary),
        _misclassified(summary, pictures),
        _confusions(summary),
        _localisation(summary),
        _bias(summary, pictures),
        _per_class(summary),
    ]
    page = (
        f"<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<meta name=viewport content='width=device-width'>"
        f"<title>Diagnosis of {_e(summary['model'])}</title><style>{_STYLE}</style></head><body>"
        + "".join(parts)
        + f"<script>{_SCRIPT}</script></body></html>"
    )
    path = out / REPORT
    path.write_text(page, encoding="utf-8")
    return path


def inline_pictures(page: str, out: Path, max_bytes: int | None = None) -> str:
    """The page with its pictures embedded as data: URIs, for showing it where DIR is not served
    (the app). Only the page's own overlays/ links are replaced. With `max_bytes`, pictures are
    embedded in page order until their files add up to that; the others become OMITTED_PICTURE
    (a small drawing that says the picture is in the download)."""
    left = max_bytes

    def embed(match: re.Match) -> str:
        nonlocal left
        path = out / overlays.FOLDER / match.group(1)
        data = path.read_bytes() if path.is_file() else b""
        if left is not None:
            if len(data) > left:
                left = 0
                return f'src="{OMITTED_PICTURE}"'
            left -= len(data)
        return f'src="data:image/jpeg;base64,{base64.b64encode(data).decode("ascii")}"'

    return _PICTURE.sub(embed, page)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _cell(text: object, value: object = None, number: bool = False) -> str:
    shown = _e(text)
    return f'<td{" class=num" if number else ""} data-value="{_e(text if value is None else value)}">{shown}</td>'


def _header(*columns: tuple[str, str | None]) -> str:
    """<thead> of (title, sort type: "number", "text" or None for not sortable)."""
    cells = "".join(
        f"<th class=sortable data-type={kind}>{_e(title)}</th>" if kind else f"<th>{_e(title)}</th>"
        for title, kind in columns
    )
    return f"<thead><tr>{cells}</tr></thead>"


def _figure(src: str | None, caption: str) -> str:
    picture = f'<img loading=lazy src="{_e(src)}" alt="{_e(caption)}">' if src else "<em>image unreadable</em>"
    return f"<figure>{picture}<figcaption>{_e(caption)}</figcaption></figure>"


def _totals(summary: dict) -> str:
    state = "" if summary["complete"] else " <strong>(unfinished: the run stopped before every image was done)</strong>"
    failed = summary["failed"]
    failures = (
        f"<p>{len(failed)} images could not be read: "
        + ", ".join(_e(f["file"]) for f in failed[:20])
        + ("…" if len(failed) > 20 else "")
        + "</p>"
        if failed
        else ""
    )
    return (
        f"<h1>Diagnosis of {_e(summary['model'])}{state}</h1>"
        f"<p>Layer <code>{_e(summary['layer'])}</code>; methods {_e(', '.join(summary['methods']))}; "
        f"{summary['images']} images; top-1 accuracy {_percent(summary['accuracy'])}; "
        f"{len(summary['misclassified'])} misclassified.</p>{failures}"
    )


def _confusions(summary: dict) -> str:
    rows = "".join(
        f"<tr>{_cell(c['label_name'])}{_cell(c['predicted_name'])}{_cell(c['count'], number=True)}</tr>"
        for c in summary["confusions"]
    )
    if not rows:
        return "<h2>Confusions</h2><p>None.</p>"
    return (
        "<h2>Most frequent confusions</h2><table class=sortable>"
        + _header(("True class", "text"), ("Predicted", "text"), ("Images", "number"))
        + f"<tbody>{rows}</tbody></table>"
    )


def _localisation(summary: dict) -> str:
    loc = summary["localisation"]
    head = (
        f"<h2>Localisation</h2><p class=note>Box: the largest connected region at or above "
        f"{_percent(loc['threshold'])} of the map's maximum (Grad-CAM paper, Sec. 4.1), white on the "
        f"pictures; ground truth in green."
    )
    if not loc["per_method"]:
        return head + " No ground-truth boxes were given, so no localisation score.</p>"
    rows = "".join(
        f"<tr>{_cell(method)}{_cell(_percent(m['box_accuracy']), m['box_accuracy'], True)}"
        f"{_cell(_percent(m['top1_localisation']), m['top1_localisation'], True)}"
        f"{_cell(_percent(m['pointing_game']), m['pointing_game'], True)}"
        f"{_cell(format(m['mean_iou'], '.3f'), m['mean_iou'], True)}</tr>"
        for method, m in loc["per_method"].items()
    )
    return (
        head
        + f" {loc['images_with_boxes']} images with boxes.</p><table class=sortable>"
        + _header(
            ("Method", "text"),
            ("IoU ≥ 0.5 (true class)", "number"),
            ("Top-1 localisation", "number"),
            (f"Pointing game (±{loc['pointing_tolerance']:g} px)", "number"),
            ("Mean IoU", "number"),
        )
        + f"<tbody>{rows}</tbody></table>"
    )


def _bias(summary: dict, pictures: Callable[[str], dict[str, str]]) -> str:
    bias = summary["bias"]
    region = (
        "the object boxes"
        if bias["region"] == "boxes"
        else ("the centre" if bias["region"] == "centre" else "the object boxes (the centre where no box is given)")
    )
    centre = (
        f" (the centre: the middle {_percent(bias['centre_share'])} of the input; a uniform map puts that share there)"
        if bias["region"] != "boxes"
        else ""
    )
    classes = [c for c in bias["per_class"] if c["looks_outside"]][:SHOWN_CLASSES]
    rows = "".join(
        f"<tr>{_cell(c['name'])}{_cell(c['method'])}{_cell(c['images'], number=True)}"
        f"{_cell(_percent(c['inside']), c['inside'], True)}</tr>"
        for c in classes
    )
    table = (
        "<table class=sortable>"
        + _header(("Class", "text"), ("Method", "text"), ("Images", "number"), ("Mass inside", "number"))
        + f"<tbody>{rows}</tbody></table>"
        if rows
        else "<p>No class whose maps lie mostly outside.</p>"
    )
    figures = []
    for entry in bias["looks_outside"][:SHOWN_OUTSIDE]:
        shown = pictures(entry["file"])
        key = f"{entry['method']}/{entry['label']}"
        caption = f"{entry['file']}: {entry['label_name']}, {entry['method']}, {_percent(entry['inside'])} inside"
        figures.append(f"<div>{_figure(shown.get(key), caption)}</div>")
    images = (
        f"<h3>Images whose true-class map lies mostly outside ({bias['looks_outside_count']}, "
        f"the first {min(SHOWN_OUTSIDE, bias['looks_outside_count'])} shown)</h3>"
        f"<div class=gallery>{''.join(figures)}</div>"
        if figures
        else ""
    )
    return (
        f"<h2>Bias hints</h2><p class=note>Share of each true-class map's mass inside {region}{centre}. "
        f"Classes and images below {_percent(bias['outside_below'])} may be recognised by their context "
        f"rather than the object.</p>{table}{images}"
    )


def _misclassified(summary: dict, pictures: Callable[[str], dict[str, str]]) -> str:
    wrong = sorted(summary["misclassified"], key=lambda m: -m["probability"])
    methods = summary["methods"]
    columns = [
        ("Confidence", "number"),
        ("File", "text"),
        ("True class", "text"),
        ("Predicted", "text"),
        ("Image", None),
    ] + [(f"{m}: true / predicted", None) for m in methods]
    rows = []
    for item in wrong[:SHOWN_MISCLASSIFIED]:
        shown = pictures(item["file"])
        maps = "".join(
            "<td><div class=pair>"
            + _figure(shown.get(f"{m}/{item['label']}"), f"true: {item['label_name']}")
            + _figure(shown.get(f"{m}/{item['predicted']}"), f"predicted: {item['predicted_name']}")
            + "</div></td>"
            for m in methods
        )
        rows.append(
            f"<tr>{_cell(_percent(item['probability']), item['probability'], True)}{_cell(item['file'])}"
            f"{_cell(item['label_name'])}{_cell(item['predicted_name'])}"
            f"<td>{_figure(shown.get('input'), 'input')}</td>{maps}</tr>"
        )
    more = len(wrong) - SHOWN_MISCLASSIFIED
    note = f"<p class=note>{more} more in summary.json.</p>" if more > 0 else ""
    if not rows:
        return "<h2>Misclassified images</h2><p>None.</p>"
    return (
        "<h2>Misclassified images</h2><p class=note>Most confident first; click a header to sort.</p>"
        f"<table class=sortable id=misclassified>{_header(*columns)}<tbody>{''.join(rows)}</tbody></table>{note}"
    )


def _per_class(summary: dict) -> str:
    rows = "".join(
        f"<tr>{_cell(c['class'], number=True)}{_cell(c['name'])}{_cell(c['images'], number=True)}"
        f"{_cell(_percent(c['accuracy']), c['accuracy'], True)}</tr>"
        for c in summary["per_class"]
    )
    return (
        "<h2>Per-class accuracy</h2><table class=sortable>"
        + _header(("Index", "number"), ("Class", "text"), ("Images", "number"), ("Accuracy", "number"))
        + f"<tbody>{rows}</tbody></table>"
    )
