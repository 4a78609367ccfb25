"""Reading the results view's HTML in tests: its column headers, and per row the row header's
text and the files of its tiles (the input first)."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

FILE_ROUTE = "gradio_api/file="


@dataclass
class Row:
    header: str = ""
    tiles: list[Path] = field(default_factory=list)
    times: list[str] = field(default_factory=list)


@dataclass
class Table:
    columns: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.table, self.where, self.text, self.in_time = Table(), None, "", False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "tr" and self.where == "body":
            self.table.rows.append(Row())
        elif tag == "thead":
            self.where = "head"
        elif tag == "tbody":
            self.where = "body"
        elif tag in ("th", "li"):
            self.text = ""
        elif tag == "div" and attrs.get("class") == "time":
            self.text, self.in_time = "", True
        elif tag == "img" and self.where == "body":
            src = html.unescape(attrs["src"])
            assert src.startswith(FILE_ROUTE), src
            self.table.rows[-1].tiles.append(Path(src[len(FILE_ROUTE) :]))

    def handle_data(self, data):
        self.text += data

    def handle_endtag(self, tag):
        if tag == "th" and self.where == "head":
            self.table.columns.append(self.text.strip())
        elif tag == "th" and self.where == "body":
            self.table.rows[-1].header = self.text.strip()
        elif tag == "li":
            self.table.notes.append(self.text.strip())
        elif tag == "div" and self.in_time:
            self.table.rows[-1].times.append(self.text.strip())
            self.in_time = False


def read_results(page: str) -> Table:
    """The table of a results view's HTML."""
    reader = _Reader()
    reader.feed(page)
    return reader.table


def tiles_of(page: str) -> list[Path]:
    """Every tile's file of a results view, row by row (each row: the input, then the maps)."""
    return [tile for row in read_results(page).rows for tile in row.tiles]
