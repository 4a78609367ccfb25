"""How a dataset diagnosis shows in the page: the summary (totals, notes, per-class accuracy, the
most frequent confusions) as HTML, and the run's report.html in a sandboxed frame.

The frame gets the page itself (``srcdoc``, pictures inlined): no server path, no file but the
visitor's own. ``sandbox="allow-scripts"`` lets the report's sorting script run in an origin of its
own, away from the app's page and cookies. Every text is escaped: file names come from visitors.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

SHOWN_CONFUSIONS = 10
SHOWN_FAILED = 5
FRAME_STYLE = (  # the frame's own (the view's CSS does not reach the report component)
    "display: block; width: 100%; height: 900px; max-height: 85vh; border: 1px solid #ccc; "
    "border-radius: 6px; background: white;"
)

PLACEHOLDER = (
    "<div class='dataset-empty'>Upload a zip of labelled images and press <b>Diagnose</b>, "
    "or press <b>Try the example</b>.</div>"
)

CSS = """
.dataset-summary {font-size: 0.95rem;}
.dataset-summary .totals {font-size: 1.05rem; margin: 0 0 0.5rem 0;}
.dataset-summary ul.notes {margin: 0 0 0.75rem 0; padding: 0.4rem 0.8rem 0.4rem 1.6rem; border-radius: 6px;
  font-size: 0.85rem; background: var(--background-fill-secondary);}
.dataset-summary .tables {display: flex; flex-wrap: wrap; gap: 1.5rem; align-items: flex-start;}
.dataset-summary .scroll {max-height: 16rem; overflow: auto; max-width: 100%;}
.dataset-summary table {border-collapse: collapse; font-size: 0.85rem; margin: 0;}
.dataset-summary th, .dataset-summary td {padding: 2px 8px; text-align: left; border: none;
  border-bottom: 1px solid var(--border-color-primary);}
.dataset-summary td.num {text-align: right; font-variant-numeric: tabular-nums;}
.dataset-summary h3 {font-size: 0.95rem; margin: 0 0 0.25rem 0;}
.dataset-empty {padding: 2rem 1rem; color: var(--body-text-color-subdued);}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def percent(value: float | None) -> str:
    """ "87.5 %", or "–" for no value."""
    return "–" if value is None else f"{100 * value:.1f} %"


def _table(title: str, header: Sequence[str], rows: list[list[tuple[str, bool]]], elem_class: str) -> str:
    """A titled table of (text, is a number) cells."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td class=num>{_e(t)}</td>" if num else f"<td>{_e(t)}</td>" for t, num in row) + "</tr>"
        for row in rows
    )
    return (
        f"<div class='{elem_class}'><h3>{_e(title)}</h3><div class=scroll><table>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div></div>"
    )


def failed_note(failed: Sequence[dict]) -> str:
    """Why the first unreadable images could not be read (the loader's messages name them)."""
    return " ".join(f["error"] for f in failed[:SHOWN_FAILED]) + (" …" if len(failed) > SHOWN_FAILED else "")


def summary_html(summary: dict, notes: Sequence[str] = ()) -> str:
    """The run's totals, ``notes`` (stopped early, skipped methods, ...), unreadable images,
    per-class accuracy (worst first) and the most frequent confusions."""
    failed = summary["failed"]
    notes = list(notes)
    if failed:
        notes.append(f"{len(failed)} image(s) could not be read and are left out: {failed_note(failed)}")
    totals = (
        f"<p class=totals><b>{summary['images']}</b> images · top-1 accuracy <b>{percent(summary['accuracy'])}</b> · "
        f"<b>{len(summary['misclassified'])}</b> misclassified <span class=where>({_e(summary['model'])}, layer "
        f"<code>{_e(summary['layer'])}</code>, {_e(', '.join(summary['methods']))})</span></p>"
    )
    listed = "<ul class=notes>" + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>" if notes else ""
    per_class = sorted(summary["per_class"], key=lambda c: (c["accuracy"], c["class"]))
    classes = _table(
        "Per-class accuracy",
        ["Class", "Images", "Correct", "Accuracy"],
        [
            [
                (f"{c['class']}: {c['name']}", False),
                (str(c["images"]), True),
                (str(c["correct"]), True),
                (percent(c["accuracy"]), True),
            ]
            for c in per_class
        ],
        "per-class",
    )
    confusions = summary["confusions"][:SHOWN_CONFUSIONS]
    confused = (
        _table(
            "Most frequent confusions",
            ["True class", "Predicted", "Images"],
            [[(c["label_name"], False), (c["predicted_name"], False), (str(c["count"]), True)] for c in confusions],
            "confusions",
        )
        if confusions
        else "<div class=confusions><h3>Most frequent confusions</h3><p>None: every image is right.</p></div>"
    )
    return f"<div class=dataset-summary>{totals}{listed}<div class=tables>{classes}{confused}</div></div>"


def report_frame(page: str) -> str:
    """The report page (pictures inlined) in a sandboxed frame of its own."""
    return (
        "<iframe class=dataset-report title='Diagnosis report' sandbox='allow-scripts' "
        f'style="{FRAME_STYLE}" srcdoc="{_e(page)}"></iframe>'
    )
