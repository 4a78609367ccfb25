"""The app in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright,
at desktop (1400x1000) and phone (390x844) size.

Every numbered point of issue 10 runs at both sizes: the results view asserted from the page's
layout (tiles at least 224 px wide, labels outside the maps, one row per class with the input at
its head, sideways scrolling instead of wrapping on the phone) and re-rendered without the engine
(1), a model that cannot be loaded (2), model changes that keep the choices (3), the estimate and
the Stop button (4), "why not" and "…rather than" rows beside the class rows (5), the examples'
preset classes, the Explain button above the fold, skipped methods and the tiny-image warning said
next to the maps (6), the download's name and the whole faithfulness table (7). Also: the page's
tabs are all in view and leave the maps as they were, a class set ("all dogs") gets its row, and
files that are not images get readable messages. Screenshots go to artifacts/.
"""

from __future__ import annotations

import os
import re
import time

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from browser_pages import ARTIFACTS, ROOT, SIZES, needs_chromium, open_page, open_tab  # noqa: E402
from browser_pages import box as _box  # noqa: E402
from browser_pages import overlap as _overlap  # noqa: E402
from PIL import Image  # noqa: E402

COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"
TILE = "#results img.tile"

pytestmark = needs_chromium


@pytest.fixture
def desktop(browser, server):
    context, page = open_page(browser, server, "desktop")
    yield page
    context.close()


def _shot(page, name: str, full_page: bool = True) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"app_{name}_{page.size_name}.png"), full_page=full_page)


def _shot_maps(page, name: str) -> None:
    """A screenshot of the results column alone (on the phone, a full page is mostly inputs)."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#results-column").screenshot(path=str(ARTIFACTS / f"app_{name}_maps_{page.size_name}.png"))


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


def _explain(page, n_tiles: int) -> None:
    page.click("#run")
    page.wait_for_function(
        f"() => document.querySelectorAll('{TILE}').length === {n_tiles} && "
        "[...document.querySelectorAll('{TILE}')].every(i => i.complete && i.naturalWidth > 0)".replace("{TILE}", TILE)
    )
    page.wait_for_selector("#status >> text=computed at")
    page.wait_for_selector("#stop", state="hidden")  # the run is over: the page holds still


def _outside_the_maps(page, labels: list) -> None:
    """No label (a locator) covers any map on the page."""
    tiles = [_box(t) for t in page.locator(TILE).all()]
    for label in labels:
        assert not any(_overlap(_box(label), tile) for tile in tiles), label.inner_text()


def _check_table(page, columns: list[str]) -> list:
    """The results table's layout, asserted from the page: the column headers (``columns``, "input"
    first) each over its column, every map at least 224 px wide and high, each row on one line in
    column order with each map's time under it, no label over a map; on the phone the table
    scrolls sideways instead of wrapping, and scrolled to its end, its last map is whole and no
    label covers a map either. Returns the rows."""
    heads = page.locator("#results th.method").all()
    assert [h.inner_text().strip() for h in heads] == columns
    rows = page.locator("#results tbody tr").all()
    labels = list(heads)
    for row in rows:
        tiles = [_box(t) for t in row.locator("img.tile").all()]
        assert all(b["width"] >= 224 and b["height"] >= 224 for b in tiles)  # big maps
        assert len({round(b["y"]) for b in tiles}) == 1  # one row: no wrapping
        assert [b["x"] for b in tiles] == sorted(b["x"] for b in tiles)
        times = row.locator(".time").all()
        assert len(times) == len(tiles) - 1  # one per map, none for the input
        for time_box, tile_box in zip(map(_box, times), tiles[1:]):
            assert time_box["y"] >= tile_box["y"] + tile_box["height"] - 1  # under its tile
        labels += [row.locator("th.row"), *times]
    _outside_the_maps(page, labels)
    for head, tile in zip(heads, rows[0].locator("img.tile").all()):  # each header over its column
        h, t = _box(head), _box(tile)
        assert h["y"] + h["height"] <= t["y"] + 1
        assert abs((h["x"] + h["width"] / 2) - (t["x"] + t["width"] / 2)) < 4
    if page.size_name == "phone":  # sideways scrolling instead of wrapping
        scroll = page.locator("#results .results-scroll")
        wide = scroll.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert wide[0] > wide[1] and wide[1] <= SIZES["phone"][0]
        scroll.evaluate("e => e.scrollLeft = e.scrollWidth")
        page.wait_for_timeout(300)
        _outside_the_maps(page, labels)  # scrolled: still no label over a map
        last = _box(rows[0].locator("img.tile").last)
        assert last["x"] + last["width"] <= SIZES["phone"][0]  # the last map can be seen whole
        scroll.evaluate("e => e.scrollLeft = 0")
    return rows


SCROLL_TO_THE_END = """t => {
    for (let e = t.parentElement; e && e.id !== 'faithfulness-table'; e = e.parentElement) {
        if (e.scrollWidth > e.clientWidth && ['auto', 'scroll'].includes(getComputedStyle(e).overflowX)) {
            e.scrollLeft = e.scrollWidth;
            return true;
        }
    }
    return false;
}"""  # scrolls the faithfulness table's frame to its last column; true if it had to


def _choose_class(page, box: str, typed: str, option: str) -> None:
    """Pick ``option`` in the class picker ``box`` (#classes, #rather-than) by typing ``typed``."""
    page.locator(f"{box} input").click()
    page.locator(f"{box} input").press_sequentially(typed)  # a single choice filters as typed
    page.get_by_role("option", name=option, exact=True).click()


def _set_top_k(page, k: int) -> None:
    page.locator("#topk input[type=number]").fill(str(k))
    page.locator("#topk input[type=number]").press("Enter")


def _upload_composite(page) -> None:
    page.set_input_files("#input-image input[type=file]", str(COMPOSITE))
    page.wait_for_selector("#input-image img")


def test_results_view_layout_and_rerender(page, server):
    from webapp import state

    run = _box(page.locator("#run"))  # the Explain button is above the fold
    assert run["y"] + run["height"] <= SIZES[page.size_name][1]
    _upload_composite(page)
    _pick_methods(page, {"Grad-CAM", "LayerCAM"})
    assert page.input_value("#topk input[type=number]") == "2"
    calls = state.ENGINE_CALLS
    _explain(page, 6)  # 2 classes x (the input + 2 methods)
    assert state.ENGINE_CALLS == calls + 1

    rows = _check_table(page, ["input", "Grad-CAM", "LayerCAM"])
    predicted = [el.inner_text() for el in page.query_selector_all("#predictions dt")]
    assert len(rows) == 2 and len(predicted) >= 5
    for row, name in zip(rows, predicted):
        header = row.locator("th.row")
        assert header.locator(".class-name").inner_text() == name  # the class heads its row
        assert re.fullmatch(r"\d+\.\d%", header.locator(".chance").inner_text())
        assert len(row.locator("img.tile").all()) == 3
    _shot(page, "result")
    _shot_maps(page, "result")

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


def test_every_tab_is_in_view(page):
    for elem_id in ("image-view", "dataset-view", "maps-view", "sweep-view", "attack-view"):
        tab = page.locator(f"#{elem_id}-button")
        assert tab.count() == 1 and tab.is_visible(), elem_id
        box = _box(tab)
        assert box["x"] >= 0 and box["x"] + box["width"] <= SIZES[page.size_name][0], elem_id
    assert page.get_by_role("button", name="More tabs").filter(visible=True).count() == 0
    _shot(page, "tabs", full_page=False)


def _explain_the_top_class_with_grad_cam(page) -> None:
    _upload_composite(page)
    _pick_methods(page, {"Grad-CAM"})
    _set_top_k(page, 1)
    _explain(page, 2)


def test_switching_tabs_leaves_the_maps_as_they_were(page):
    _explain_the_top_class_with_grad_cam(page)
    before, stamp = _tile_sources(page), page.inner_text("#status")
    open_tab(page, "sweep-view")
    page.wait_for_selector(TILE, state="hidden")  # the maps belong to the "Maps" tab
    open_tab(page, "maps-view")
    page.wait_for_selector(TILE, state="visible")
    assert _tile_sources(page) == before and page.inner_text("#status") == stamp
    _check_table(page, ["input", "Grad-CAM"])


def test_example_with_preset_classes_shows_the_coffee(page):
    page.locator("#examples img").first.click()  # the composite comes first
    page.wait_for_function(f"() => document.querySelectorAll('{TILE}').length >= 9", timeout=120_000)
    page.wait_for_selector("#status >> text=computed at")
    page.wait_for_selector("#stop", state="hidden")  # the run is over: the page holds still
    names = [n.inner_text() for n in page.locator("#results .class-name").all()]
    assert "espresso" in names and "tabby" in names
    assert "967: espresso" in page.inner_text("#classes")  # the preset says what it is for
    assert page.locator("#examples img").count() >= 5  # thumbnails
    _check_table(page, ["input", "Grad-CAM", "Grad-CAM++", "LayerCAM"])
    _shot(page, "example")
    _shot_maps(page, "example")


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


def test_changing_the_model_keeps_the_choices(page):
    _pick_methods(page, {"LayerCAM"})
    _choose_class(page, "#classes", "espresso", "967: espresso")
    page.locator("#model input").click()
    page.get_by_role("option", name="efficientnet_lite1").click()
    page.wait_for_function("() => !document.querySelector('#layer .pending, #methods .pending')")
    time.sleep(2)
    assert page.input_value("#model input") == "efficientnet_lite1"
    assert page.get_by_label("LayerCAM", exact=True).is_checked()
    assert not page.get_by_label("Grad-CAM", exact=True).is_checked()
    assert "967: espresso" in page.inner_text("#classes")
    _shot(page, "model_changed", full_page=False)


def test_a_tiny_image_is_explained_with_a_warning(page, tmp_path):
    tiny = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (200, 30, 30)).save(tiny)
    page.set_input_files("#input-image input[type=file]", str(tiny))
    _wait_for_toast(page, r"only 1×1 pixels")
    _pick_methods(page, {"Grad-CAM"})
    _explain(page, 4)
    assert "only 1×1 pixels" in page.inner_text("#results .results-notes")
    _shot(page, "tiny")
    _shot_maps(page, "tiny")


def test_skipped_methods_are_said_next_to_the_maps(page):
    _upload_composite(page)
    _pick_methods(page, {"Grad-CAM"})
    page.get_by_label("Attention Rollout (n/a)", exact=True).click()  # not for a CNN
    _set_top_k(page, 1)
    _explain(page, 2)
    notes = page.locator("#results .results-notes")
    assert re.search(r"Skipped: Attention Rollout \(.*vision transformer", notes.inner_text())
    note, table = _box(notes), _box(page.locator("#results table"))
    assert note["y"] + note["height"] <= table["y"] + 1  # right above the maps, in their column
    assert note["x"] >= _box(page.locator("#results-column"))["x"]
    _check_table(page, ["input", "Grad-CAM"])


def test_a_slow_run_has_an_estimate_and_stops(page, monkeypatch):
    import threading

    from webapp import config, state

    _upload_composite(page)
    page.get_by_label("Score-CAM · slow", exact=True).click()
    page.wait_for_selector("#estimate >> text=About", timeout=30_000)
    assert re.search(r"About \d+ s", page.inner_text("#estimate"))  # said before the run
    estimate, run = _box(page.locator("#estimate")), _box(page.locator("#run"))
    assert 0 <= estimate["y"] - (run["y"] + run["height"]) < 80  # right under the Explain button
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
                    time.sleep(0.2)  # few progress updates: the page stays responsive on a busy machine
            except BaseException as err:
                stopped.append(type(err).__name__)
                raise

    monkeypatch.setattr(state, "compute", held)
    before = _tile_sources(page)
    page.click("#run")
    page.wait_for_selector("#stop", state="visible", timeout=10_000)
    stop, run = _box(page.locator("#stop")), _box(page.locator("#run"))
    assert abs(stop["y"] - run["y"]) < 4 and not _overlap(stop, run)  # beside the Explain button
    assert stop["x"] + stop["width"] <= SIZES[page.size_name][0]
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


def test_fast_maps_come_first_and_the_slow_ones_fill_in(page, monkeypatch):
    import threading

    import explainers
    from webapp import state

    real, gate = state.compute, threading.Event()

    def gated(image, model, layer, methods, *args, **kwargs):  # the slow run waits for the test
        if any(explainers.method_info(m).slow for m in methods):
            assert gate.wait(60)
        return real(image, model, layer, methods, *args, **kwargs)

    monkeypatch.setattr(state, "compute", gated)
    _upload_composite(page)
    _pick_methods(page, {"Grad-CAM"})
    page.get_by_label("SmoothGrad · slow", exact=True).click()
    _set_top_k(page, 1)
    page.click("#run")
    page.wait_for_selector("#status >> text=still computing: SmoothGrad")
    _check_table(page, ["input", "Grad-CAM"])  # the fast maps, at once
    _shot_maps(page, "streaming")
    gate.set()
    page.wait_for_function(f"() => document.querySelectorAll('{TILE}').length === 3", timeout=120_000)
    page.wait_for_selector("#status >> text=computed at")
    assert "still computing" not in page.inner_text("#status")
    _check_table(page, ["input", "Grad-CAM", "SmoothGrad"])  # the slow one filled in


def test_non_image_uploads_show_a_message(page, tmp_path):
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
    page.wait_for_selector("#stop", state="hidden", timeout=10_000)  # the failed run leaves no Stop button
    _shot(page, "error", full_page=False)


def test_the_faithfulness_table_is_whole(page):
    _explain_the_top_class_with_grad_cam(page)
    page.click("#faithfulness")
    page.click("#measure")
    page.wait_for_function(
        "() => document.querySelector('#faithfulness-table').innerText.includes('Egyptian cat')", timeout=180_000
    )  # its one row
    page.wait_for_function("() => !document.querySelector('.progress-text')", timeout=10_000)  # none left
    page.locator("#faithfulness-table").scroll_into_view_if_needed()
    table = page.locator("#faithfulness-table table").first
    heads = table.locator("th").all()
    assert len(heads) == 6
    frame = _box(page.locator("#faithfulness-table"))
    assert frame["x"] >= 0 and frame["x"] + frame["width"] <= SIZES[page.size_name][0]  # the table is in the page
    scrolled = table.evaluate(SCROLL_TO_THE_END)
    assert scrolled == (page.size_name == "phone")  # the phone scrolls the table sideways; the desktop needs not
    last = _box(heads[-1])
    assert frame["x"] <= last["x"] and last["x"] + last["width"] <= frame["x"] + frame["width"] + 1  # not cut off
    curves = _box(page.locator("#curves"))
    assert not _overlap(curves, _box(page.locator("#faithfulness-table")))
    _shot(page, "faithfulness", full_page=True)


def test_rather_than_adds_contrast_rows(page):
    _upload_composite(page)
    _pick_methods(page, {"Grad-CAM"})
    _set_top_k(page, 0)
    _choose_class(page, "#classes", "tabby", "281: tabby")
    _choose_class(page, "#rather-than", "espresso", "967: espresso")
    _explain(page, 4)  # tabby and "tabby rather than espresso" x (the input + Grad-CAM)
    names = [n.inner_text() for n in page.locator("#results .class-name").all()]
    assert names == ["tabby", "tabby rather than espresso"]
    assert page.locator("#results tr.contrast").count() == 1
    _check_table(page, ["input", "Grad-CAM"])
    _shot(page, "contrast")
    _shot_maps(page, "contrast")


def test_why_not_adds_a_row_under_each_class(page):
    _upload_composite(page)
    _pick_methods(page, {"Grad-CAM", "LayerCAM"})
    _set_top_k(page, 0)
    _choose_class(page, "#classes", "tabby", "281: tabby")
    _choose_class(page, "#rather-than", "espresso", "967: espresso")
    page.get_by_label("Why not?").check()
    _explain(page, 9)  # tabby, "why not" tabby, tabby rather than espresso x (the input + 2 methods)
    rows = _check_table(page, ["input", "Grad-CAM", "LayerCAM"])
    assert [r.locator(".class-name").inner_text() for r in rows] == ["tabby", "tabby", "tabby rather than espresso"]
    assert [r.locator(".why-not").count() for r in rows] == [0, 1, 0]
    evidence_for, against = ([_box(t) for t in r.locator("img.tile").all()] for r in rows[:2])
    assert len(evidence_for) == len(against) == 3
    for a, b in zip(evidence_for, against):  # side by side: same column, the "why not" tile right under
        assert a["width"] >= 224 and abs(a["x"] - b["x"]) < 1
        assert 0 <= b["y"] - (a["y"] + a["height"]) < 60
    captions = [t.get_attribute("alt") for r in rows[:2] for t in r.locator("img.tile").all()[1:]]
    assert all("(why not)" not in c for c in captions[:2]) and all("(why not)" in c for c in captions[2:])
    _shot(page, "why_not")
    _shot_maps(page, "why_not")


def test_a_class_set_gets_its_own_row(desktop):
    page = desktop
    _upload_composite(page)
    _pick_methods(page, {"Grad-CAM"})
    _set_top_k(page, 1)
    _choose_class(page, "#classes", "all dogs", "all dogs (118 classes)")
    _explain(page, 4)  # the top class and the 118 dog breeds as one x (the input + Grad-CAM)
    rows = _check_table(page, ["input", "Grad-CAM"])
    assert rows[1].locator(".class-name").inner_text() == "dog"
    assert re.fullmatch(r"\d+\.\d%", rows[1].locator(".chance").inner_text())  # the set's summed probability
    assert rows[1].locator(".class-index").inner_text() == "118 classes"
    assert " · dog · " in rows[1].locator("img.tile").last.get_attribute("alt")  # the set's map
    _shot(page, "class_set")
    _shot_maps(page, "class_set")
