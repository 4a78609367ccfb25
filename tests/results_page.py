"""Reading the results view's HTML in tests: its column headers, and per row the row header's
text and its tiles (the input first): their pictures' bytes (JPEG, inside the page as data:
URIs), or their files for a table whose pictures are files (the attack view's), and captions."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

FILE_ROUTE = "gradio_api/file="  # the other views' pictures (sweep, attack) are files
DATA_URI = "data:image/jpeg;base64,"


@dataclass
class Row:
    header: str = ""
    tiles: list[bytes] = field(default_factory=list)  # each picture's JPEG (the results view's)
    files: list[Path] = field(default_factory=list)  # each picture's file (the attack view's)
    captions: list[str] = field(default_factory=list)
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
            src = attrs["src"]
            if src.startswith(FILE_ROUTE):  # the attack view's pictures are files
                self.table.rows[-1].files.append(Path(src[len(FILE_ROUTE) :]))
            else:
                assert src.startswith(DATA_URI), src[:80]
                self.table.rows[-1].tiles.append(base64.b64decode(src[len(DATA_URI) :], validate=True))
            self.table.rows[-1].captions.append(attrs["alt"])

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


def tiles_of(page: str) -> list[bytes]:
    """Every tile's picture (JPEG bytes) of a results view, row by row (each row: the input, then
    the maps)."""
    return [tile for row in read_results(page).rows for tile in row.tiles]


def picture(tile: bytes) -> Image.Image:
    """A tile's picture, decoded (RGB)."""
    return Image.open(io.BytesIO(tile)).convert("RGB")
