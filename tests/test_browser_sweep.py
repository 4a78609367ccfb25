"""The "Which layer?" view in a real browser (headless Chromium driven by Playwright) at desktop
(1400x1000) and phone (390x844) size: a sweep of the example photo with the default methods and
layers, one row per method and one column per layer, maps at least 160 px wide with their scores
under them (outside the maps), the recommended layer marked, the table scrolling sideways on the
phone; and a class set ("all dogs (118 classes)") picked in the classes box, swept and named.
Screenshots go to artifacts/sweep_<size>.png and artifacts/sweep_class_set.png.
"""

from __future__ import annotations

import os
import re

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from browser_pages import ARTIFACTS, ROOT, SIZES, needs_chromium, open_page  # noqa: E402
from browser_pages import box as _box  # noqa: E402
from servers import running_app  # noqa: E402

EXAMPLE = ROOT / "assets" / "cat_and_coffee.jpg"  # the first example
TILE = "#sweep-results img.sweep-tile"
STEPS = 5  # the fewest the app uses: enough to rank, quick on a shared CPU

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def server():
    """The app with the sweep's scores at their fewest steps."""
    import app
    from webapp import sweep_view

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sweep_view, "STEP_CHOICES", (STEPS,))
        with running_app(app.build_app()) as url:
            yield url


def test_a_sweep_of_the_example(page):
    page.set_input_files("#input-image input[type=file]", str(EXAMPLE))
    page.wait_for_selector("#input-image img")
    page.locator("#sweep-view-button").click()
    layers = page.locator("#sweep-layers .token").all()  # the default sweep's layers, chosen
    assert 6 <= len(layers) <= 8
    page.wait_for_selector("#sweep-estimate >> text=About")  # said before it runs
    page.locator("#sweep-run").click()
    page.wait_for_selector("#sweep-status >> text=computed at", timeout=180_000)

    methods = [th.inner_text() for th in page.locator("#sweep-results th.sweep-method").all()]
    assert methods == ["Grad-CAM", "Grad-CAM++", "LayerCAM"]  # the page's default methods
    columns = page.locator("#sweep-results th.sweep-layer code").all()
    assert len(columns) == len(layers)
    assert page.locator("#sweep-results th.sweep-recommended").count() == 1
    assert "Recommended layer" in page.inner_text("#sweep-results .sweep-verdict")
    assert page.locator(TILE).count() == 1 + len(methods) * len(layers)  # the input, then the maps

    for row in page.locator("#sweep-results tbody tr").all():
        cells = row.locator("td:has(.sweep-scores)").all()
        assert len(cells) == len(layers)
        assert row.locator("td.sweep-best").count() == 1  # each method's best map is marked
        for cell in cells:
            tile, scores = _box(cell.locator("img.sweep-tile")), _box(cell.locator(".sweep-scores"))
            assert tile["width"] >= 160 and tile["height"] >= 160
            assert scores["y"] >= tile["y"] + tile["height"] - 1  # under the map, not over it
            assert "del " in cell.inner_text() and "ins " in cell.inner_text()

    table, scroller = _box(page.locator("#sweep-results table")), _box(page.locator("#sweep-results .sweep-scroll"))
    width = SIZES[page.size_name][0]
    assert scroller["x"] + scroller["width"] <= width + 1  # the page does not widen ...
    if page.size_name == "phone":
        assert table["width"] > scroller["width"]  # ... the table scrolls sideways instead
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#sweep-view").screenshot(path=str(ARTIFACTS / f"sweep_{page.size_name}.png"))


@pytest.fixture
def desktop(browser, server):
    """The app's page at desktop size only."""
    context, opened = open_page(browser, server, "desktop")
    yield opened
    context.close()


def test_a_class_set_picked_in_the_classes_box_is_swept_and_named(desktop):
    page = desktop
    page.set_input_files("#input-image input[type=file]", str(EXAMPLE))
    page.wait_for_selector("#input-image img")
    for title in ("Grad-CAM++", "LayerCAM"):  # Grad-CAM alone: the fewest maps
        if page.get_by_label(title, exact=True).is_checked():
            page.get_by_label(title, exact=True).click()
    page.locator("#classes input").click()
    page.locator("#classes input").press_sequentially("all dogs")
    page.get_by_role("option", name="all dogs (118 classes)", exact=True).click()
    page.locator("#sweep-view-button").click()
    page.locator("#sweep-run").click()
    page.wait_for_selector("#sweep-status >> text=computed at", timeout=180_000)

    status = page.inner_text("#sweep-status")
    assert re.search(r"maps of all dogs \(118 classes\) \(\d+\.\d%\)", status), status
    methods = [th.inner_text() for th in page.locator("#sweep-results th.sweep-method").all()]
    assert methods == ["Grad-CAM"]
    assert page.locator("#sweep-results th.sweep-recommended").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#sweep-view").screenshot(path=str(ARTIFACTS / "sweep_class_set.png"))
