"""The app in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright,
at desktop (1400x1000) and phone (390x844) size.

Checks the results view from the page's layout (tiles at least 224 px wide, labels outside the
maps, one row per class with the input at its head, sideways scrolling instead of wrapping),
re-rendering without the engine, the examples' preset classes, a model that cannot be loaded,
model changes that keep the choices, the tiny-image warning, the estimate and the Stop button,
and readable messages for files that are not images. Screenshots go to artifacts/.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from servers import running_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"
SIZES = {"desktop": (1400, 1000), "phone": (390, 844)}
TILE = "#results img.tile"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing (install Debian's chromium: apt-get install -y chromium)",
)


@pytest.fixture(scope="module")
def server():
    import app

    with running_app(app.build_app()) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield chromium
        chromium.close()


def _open(browser, server, size: str):
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server)
    page.wait_for_selector("#run")
    return context, page


@pytest.fixture(params=list(SIZES))
def page(request, browser, server):
    context, page = _open(browser, server, request.param)
    page.size_name = request.param
    yield page
    context.close()


@pytest.fixture
def desktop(browser, server):
    context, page = _open(browser, server, "desktop")
    page.size_name = "desktop"
    yield page
    context.close()


def _shot(page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"app_{name}_{page.size_name}.png"), full_page=full_page)


def _toasts(page) -> str:
    return " | ".join(t.inner_text() for t in page.query_selector_all(".toast-body"))


def _wait_for_toast(page, pattern: str, timeout_s: float = 20) -> str:
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        text = _toasts(page)
        if re.search(pattern, text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"no message matching {pattern!r}; messages: {_toasts(page)!r}")


def _tile_sources(page) -> list[str]:
    return [img.get_attribute("src") for img in page.query_selector_all(TILE)]


def _pick_methods(page, wanted: set[str]) -> None:
    for title in ("Grad-CAM", "Grad-CAM++", "LayerCAM"):
        box = page.get_by_label(title, exact=True)
        if box.is_checked() != (title in wanted):
            box.click()


def _box(element) -> dict:
    box = element.bounding_box()
    assert box is not None
    return box


def _overlap(a: dict, b: dict) -> bool:
    return (
        a["x"] < b["x"] + b["width"] - 1
        and b["x"] < a["x"] + a["width"] - 1
        and a["y"] < b["y"] + b["height"] - 1
        and b["y"] < a["y"] + a["height"] - 1
    )


def _explain(page, n_tiles: int) -> None:
    page.click("#run")
    page.wait_for_function(
        f"() => document.querySelectorAll('{TILE}').length === {n_tiles} && "
        "[...document.querySelectorAll('{TILE}')].every(i => i.complete && i.naturalWidth > 0)".replace("{TILE}", TILE)
    )
    page.wait_for_selector("#status >> text=computed at")


def test_results_view_layout_and_rerender(page, server):
    from webapp import state

    if page.size_name == "desktop":  # the Explain button is above the fold
        run = _box(page.locator("#run"))
        assert run["y"] + run["height"] <= SIZES["desktop"][1]
    page.set_input_files("#input-image input[type=file]", str(COMPOSITE))
    page.wait_for_selector("#input-image img")
    _pick_methods(page, {"Grad-CAM", "LayerCAM"})
    assert page.input_value("#topk input[type=number]") == "2"
    calls = state.ENGINE_CALLS
    _explain(page, 6)  # 2 classes x (the input + 2 methods)
    assert state.ENGINE_CALLS == calls + 1

    heads = page.locator("#results th.method")
    assert [h.inner_text().strip() for h in heads.all()] == ["input", "Grad-CAM", "LayerCAM"]
    rows = page.locator("#results tbody tr").all()
    predicted = [el.inner_text() for el in page.query_selector_all("#predictions dt")]
    assert len(rows) == 2 and len(predicted) >= 5
    labels = []
    for row, name in zip(rows, predicted):
        header = row.locator("th.row")
        assert header.locator(".class-name").inner_text() == name  # the class heads its row
        assert re.fullmatch(r"\d+\.\d%", header.locator(".chance").inner_text())
        tiles = row.locator("img.tile").all()
        assert len(tiles) == 3
        boxes = [_box(t) for t in tiles]
        assert all(b["width"] >= 224 and b["height"] >= 224 for b in boxes)  # big maps
        assert len({round(b["y"]) for b in boxes}) == 1  # one row: no wrapping
        assert [b["x"] for b in boxes] == sorted(b["x"] for b in boxes)
        labels += [header, *row.locator(".time").all()]
        for time_box, tile_box in zip((_box(t) for t in row.locator(".time").all()), boxes[1:]):
            assert time_box["y"] >= tile_box["y"] + tile_box["height"] - 1  # under its tile
    tile_boxes = [_box(t) for t in page.locator(TILE).all()]
    for label in labels + heads.all():  # labels outside the maps
        assert not any(_overlap(_box(label), tile) for tile in tile_boxes), label.inner_text()
    for head, tile in zip(heads.all(), tile_boxes[:3]):  # each header over its column
        h = _box(head)
        assert h["y"] + h["height"] <= tile["y"] + 1
        assert abs((h["x"] + h["width"] / 2) - (tile["x"] + tile["width"] / 2)) < 4
    scroll = page.locator("#results .results-scroll")
    wide = scroll.evaluate("e => [e.scrollWidth, e.clientWidth]")
    if page.size_name == "phone":  # sideways scrolling instead of wrapping
        assert wide[0] > wide[1] and wide[1] <= SIZES["phone"][0]
        scroll.evaluate("e => e.scrollLeft = e.scrollWidth")
        page.wait_for_timeout(300)
        tile_boxes = [_box(t) for t in page.locator(TILE).all()]
        for label in labels + heads.all():  # scrolled: still no label over a map
            assert not any(_overlap(_box(label), tile) for tile in tile_boxes), label.inner_text()
        last = _box(rows[0].locator("img.tile").last)
        assert last["x"] + last["width"] <= SIZES["phone"][0]  # the last map can be seen whole
    _shot(page, "result")

    # Opacity: re-rendered tiles, same computation (no engine call, same "computed at" stamp).
    stamp = page.inner_text("#status")
    before = _tile_sources(page)
    opacity = page.locator("#opacity input[type=number]")
    opacity.fill("0.9")
    opacity.press("Enter")
    deadline = time.time() + 30
    while _tile_sources(page) == before and time.time() < deadline:
        time.sleep(0.2)
    assert _tile_sources(page) != before, "the tiles were not re-rendered"
    assert len(_tile_sources(page)) == 6
    assert page.inner_text("#status") == stamp
    assert state.ENGINE_CALLS == calls + 1

    # A re-render writes no zip: the download is prepared on request, in the new colours,
    # named after the image.
    page.wait_for_selector("#prepare-download", state="visible", timeout=30_000)
    assert page.query_selector("#download a[href*='.zip']") is None
    page.click("#prepare-download")
    page.wait_for_selector("#download a[href*='cat_and_coffee-efficientnet_lite0-explained.zip']", timeout=30_000)
    assert state.ENGINE_CALLS == calls + 1

    # A tile is a link to itself at full size.
    link = page.locator("#results td a").first
    assert link.get_attribute("href") == page.locator("#results td a img").first.get_attribute("src")


def test_example_with_preset_classes_shows_the_coffee(page):
    page.locator("#examples img").first.click()  # the composite comes first
    page.wait_for_function(f"() => document.querySelectorAll('{TILE}').length >= 9", timeout=120_000)
    page.wait_for_selector("#status >> text=computed at")
    names = [n.inner_text() for n in page.locator("#results .class-name").all()]
    assert "espresso" in names and "tabby" in names
    assert "967: espresso" in page.inner_text("#classes")  # the preset says what it is for
    assert page.locator("#examples img").count() >= 5  # thumbnails
    _shot(page, "example")


def test_an_offline_model_leaves_the_page_working(page):
    page.locator("#model input").click()
    page.get_by_role("option", name=re.compile(r"^resnet18")).click()
    page.wait_for_selector("#model-note >> text=not available", timeout=60_000)
    note = page.inner_text("#model-note")
    assert "Still using efficientnet_lite0" in note
    assert page.input_value("#model input") == "efficientnet_lite0"  # the previous model stays
    body = page.inner_text("body")
    assert "/root" not in body and ".cache" not in body and "Error" not in body
    assert page.locator(".error").count() == 0  # no red badges anywhere
    _shot(page, "offline_model", full_page=False)


def test_changing_the_model_keeps_the_choices(desktop):
    page = desktop
    _pick_methods(page, {"LayerCAM"})
    page.locator("#classes input").fill("espresso")
    page.get_by_role("option", name="967: espresso").click()
    page.locator("#model input").click()
    page.get_by_role("option", name="efficientnet_lite1").click()
    page.wait_for_function("() => !document.querySelector('#layer .pending, #methods .pending')")
    time.sleep(2)
    assert page.input_value("#model input") == "efficientnet_lite1"
    assert page.get_by_label("LayerCAM", exact=True).is_checked()
    assert not page.get_by_label("Grad-CAM", exact=True).is_checked()
    assert "967: espresso" in page.inner_text("#classes")


def test_a_tiny_image_is_explained_with_a_warning(desktop, tmp_path):
    page = desktop
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tiny)
    page.set_input_files("#input-image input[type=file]", str(tiny))
    _wait_for_toast(page, r"only 1×1 pixels")
    _pick_methods(page, {"Grad-CAM"})
    _explain(page, 4)
    assert "only 1×1 pixels" in page.inner_text("#results .results-notes")
    _shot(page, "tiny")


def test_a_slow_run_has_an_estimate_and_stops(desktop, monkeypatch):
    import threading

    from webapp import config, state

    page = desktop
    page.set_input_files("#input-image input[type=file]", str(COMPOSITE))
    page.wait_for_selector("#input-image img")
    page.get_by_label("Score-CAM · slow", exact=True).click()
    page.wait_for_selector("#estimate >> text=About", timeout=30_000)
    assert re.search(r"About \d+ s", page.inner_text("#estimate"))  # said before the run
    page.get_by_label("Score-CAM · slow", exact=True).click()
    _pick_methods(page, {"Grad-CAM"})
    _explain(page, 2 * 2)  # results to keep on screen while the next run waits

    started, stopped = threading.Event(), []

    def held(*args, progress=None, **kwargs):  # a run that lasts until it is stopped
        started.set()
        with state.ENGINE_SLOTS:
            try:
                while True:
                    progress(0.5, "waiting")
                    time.sleep(0.05)
            except BaseException as err:
                stopped.append(type(err).__name__)
                raise

    monkeypatch.setattr(state, "compute", held)
    before = _tile_sources(page)
    page.click("#run")
    page.wait_for_selector("#stop", state="visible", timeout=10_000)
    assert started.wait(30)
    assert _tile_sources(page) == before  # the old results stay while the new run works
    assert page.locator(".progress-text, .progress-level").count() <= 2  # one progress display
    _shot(page, "running", full_page=False)
    page.click("#stop")
    page.wait_for_selector("#stop", state="hidden", timeout=10_000)
    deadline = time.time() + 10  # the engine stops at its next progress report
    while not stopped and time.time() < deadline:
        time.sleep(0.1)
    assert stopped == ["ClientGone"]
    time.sleep(0.5)
    assert state.ENGINE_SLOTS._value == config.ENGINE_CONCURRENCY  # its slot is free again
    assert _tile_sources(page) == before
    _shot(page, "stopped", full_page=False)


def test_non_image_uploads_show_a_message(desktop, tmp_path):
    page = desktop
    text = tmp_path / "notes.txt"
    text.write_text("hello, I am not a picture")
    page.set_input_files("#input-image input[type=file]", str(text))
    _wait_for_toast(page, r"(?i)invalid file type|not an image")

    disguised = tmp_path / "holiday.jpg"  # passes the browser's type check, not the server's
    disguised.write_text("still not a picture")
    page.set_input_files("#input-image input[type=file]", str(disguised))
    message = _wait_for_toast(page, r"“holiday\.jpg” is not an image")
    assert "Traceback" not in message
    page.click("#run")
    _wait_for_toast(page, r"Please give an image")
    _shot(page, "error", full_page=False)


def test_the_faithfulness_table_is_whole(desktop):
    page = desktop
    page.set_input_files("#input-image input[type=file]", str(COMPOSITE))
    page.wait_for_selector("#input-image img")
    _pick_methods(page, {"Grad-CAM"})
    page.locator("#topk input[type=number]").fill("1")
    page.locator("#topk input[type=number]").press("Enter")
    _explain(page, 2)
    page.click("#faithfulness")
    page.click("#measure")
    page.wait_for_function(
        "() => document.querySelector('#faithfulness-table').innerText.includes('Egyptian cat')", timeout=180_000
    )  # its one row
    assert page.locator(".progress-text").count() == 0  # measured: no progress display left
    page.locator("#faithfulness-table").scroll_into_view_if_needed()
    table = page.locator("#faithfulness-table table").first
    heads = table.locator("th").all()
    assert len(heads) == 6
    right = max(_box(h)["x"] + _box(h)["width"] for h in heads)
    frame = _box(page.locator("#faithfulness-table"))
    assert right <= frame["x"] + frame["width"] + 1  # the last column is not cut off
    curves = _box(page.locator("#curves"))
    assert not _overlap(curves, _box(page.locator("#faithfulness-table")))
    _shot(page, "faithfulness", full_page=True)


def test_rather_than_adds_contrast_rows(desktop):
    page = desktop
    page.set_input_files("#input-image input[type=file]", str(COMPOSITE))
    page.wait_for_selector("#input-image img")
    _pick_methods(page, {"Grad-CAM"})
    page.locator("#topk input[type=number]").fill("0")
    page.locator("#classes input").fill("tabby")
    page.get_by_role("option", name="281: tabby").click()
    page.locator("#rather-than input").click()
    page.locator("#rather-than input").press_sequentially("espresso")  # a single choice filters as typed
    page.get_by_role("option", name="967: espresso").click()
    _explain(page, 4)  # tabby and "tabby rather than espresso" x (the input + Grad-CAM)
    names = [n.inner_text() for n in page.locator("#results .class-name").all()]
    assert names == ["tabby", "tabby rather than espresso"]
    assert page.locator("#results tr.contrast").count() == 1
    _shot(page, "contrast")


def test_why_not_adds_a_row_under_each_class(desktop):
    page = desktop
    page.set_input_files("#input-image input[type=file]", str(COMPOSITE))
    page.wait_for_selector("#input-image img")
    _pick_methods(page, {"Grad-CAM", "LayerCAM"})
    page.locator("#topk input[type=number]").fill("0")
    page.locator("#classes input").fill("tabby")
    page.get_by_role("option", name="281: tabby").click()
    page.locator("#rather-than input").click()
    page.locator("#rather-than input").press_sequentially("espresso")
    page.get_by_role("option", name="967: espresso").click()
    page.get_by_label("Why not?").check()
    _explain(page, 9)  # tabby, "why not" tabby, tabby rather than espresso x (the input + 2 methods)
    rows = page.locator("#results tbody tr").all()
    assert [r.locator(".class-name").inner_text() for r in rows] == ["tabby", "tabby", "tabby rather than espresso"]
    assert [r.locator(".why-not").count() for r in rows] == [0, 1, 0]
    evidence_for, against = ([_box(t) for t in r.locator("img.tile").all()] for r in rows[:2])
    assert len(evidence_for) == len(against) == 3
    for a, b in zip(evidence_for, against):  # side by side: same column, the "why not" tile right under
        assert a["width"] >= 224 and abs(a["x"] - b["x"]) < 1
        assert 0 <= b["y"] - (a["y"] + a["height"]) < 60
    sources = [t.get_attribute("src") for r in rows[:2] for t in r.locator("img.tile").all()[1:]]
    assert all("-cf_" not in s for s in sources[:2]) and all("-cf_" in s for s in sources[2:])
    _shot(page, "why_not")
