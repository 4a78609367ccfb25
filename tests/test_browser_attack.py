"""The "Does noise fool it?" view in a real browser: headless Chromium (Debian's /usr/bin/chromium)
driven by Playwright, at desktop (1400x1000) and phone (390x844) size.

An attack aimed at espresso on the cat-and-coffee photo: the clean, adversarial and difference
images, the predictions before and after, and the maps table (per class a row on the clean and a
row on the adversarial image, one column per method) with tiles at least 160 px wide, the labels
outside the maps and sideways scrolling on a phone; the adversarial PNG to download. Screenshots
go to artifacts/attack_<size>.png.
"""

from __future__ import annotations

import os
import re

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from browser_pages import ARTIFACTS, ROOT, SIZES, needs_chromium, open_tab  # noqa: E402
from browser_pages import box as _box  # noqa: E402
from browser_pages import overlap as _overlap  # noqa: E402

COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"
VIEW = "#attack-results"
TILE = f"{VIEW} img.attack-tile"
N_TILES = 3 + 2 * 2 * 3  # clean, adversarial, difference; 2 classes x 2 images x (image + 2 methods)

pytestmark = needs_chromium


def _attack_espresso(page) -> None:
    """Upload the photo, keep Grad-CAM and LayerCAM, aim at espresso with the default budget."""
    page.set_input_files("#input-image input[type=file]", str(COMPOSITE))
    page.wait_for_selector("#input-image img")
    for title in ("Grad-CAM", "Grad-CAM++", "LayerCAM"):
        box = page.get_by_label(title, exact=True)
        if box.is_checked() != (title in ("Grad-CAM", "LayerCAM")):
            box.click()
    open_tab(page, "attack-view")
    target = page.locator("#attack-target input")
    target.click()
    target.fill("")
    target.press_sequentially("espresso", delay=20)  # typed: the list filters as one types
    page.get_by_role("option", name="967: espresso").click()
    assert page.input_value("#attack-epsilon input[type=number]") == "2"
    page.click("#attack-run")
    page.wait_for_function(
        f"() => document.querySelectorAll('{TILE}').length === {N_TILES} && "
        f"[...document.querySelectorAll('{TILE}')].every(i => i.complete && i.naturalWidth > 0)"
    )


def test_attack_view_layout(page):
    _attack_espresso(page)
    status = page.inner_text("#attack-status")
    assert re.search(r"→ espresso \(\d+\.\d%\)", status) and "at most 2 of 255 levels" in status
    figures = [page.locator(f"#attack-{key}") for key in ("clean", "adversarial", "difference")]
    assert "Adversarial (≤ 2 levels)" in figures[1].inner_text() and "espresso" in figures[1].inner_text()
    predictions = page.locator(f"{VIEW} .attack-predictions tbody tr")
    assert predictions.count() == 3 and "espresso" in predictions.first.inner_text()

    heads = page.locator(f"{VIEW} .attack-table th.method")
    assert [h.inner_text().strip() for h in heads.all()] == ["image", "Grad-CAM", "LayerCAM"]
    rows = page.locator(f"{VIEW} .attack-table tbody tr").all()
    assert len(rows) == 4
    assert [r.locator(".which").inner_text() for r in rows] == [
        "on the clean image",
        "on the adversarial image",
    ] * 2
    assert rows[2].locator(".class-name").inner_text() == "espresso"
    tiles = [_box(t) for t in page.locator(f"{VIEW} .attack-table img.attack-tile").all()]
    assert all(t["width"] >= 160 and t["height"] >= 160 for t in tiles)
    labels = [*heads.all(), *page.locator(f"{VIEW} .attack-table th.row").all(), *page.locator(f"{VIEW} .time").all()]
    for row in rows:  # one line per row: no wrapping
        boxes = [_box(t) for t in row.locator("img.attack-tile").all()]
        assert len(boxes) == 3 and len({round(b["y"]) for b in boxes}) == 1
    for label in labels:  # the labels are outside the maps
        assert not any(_overlap(_box(label), tile) for tile in tiles), label.inner_text()
    figure_boxes = [_box(f.locator("img")) for f in figures]
    assert all(b["width"] >= 160 for b in figure_boxes)
    for caption in page.locator(f"{VIEW} figcaption").all():
        assert not any(_overlap(_box(caption), b) for b in figure_boxes)
    scroll = page.locator(f"{VIEW} .attack-table").locator("xpath=..")
    wide = scroll.evaluate("e => [e.scrollWidth, e.clientWidth]")
    link = page.locator("#attack-download a[href*='cat_and_coffee_adversarial.png']")
    assert link.count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"attack_{page.size_name}.png"), full_page=True)
    if page.size_name == "desktop":
        assert wide[0] <= wide[1]  # the whole table fits on a desktop
        return
    assert wide[0] > wide[1] and wide[1] <= SIZES["phone"][0]  # sideways scrolling instead of wrapping
    body = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert body[0] <= body[1]  # the page itself does not scroll sideways
    scroll.evaluate("e => e.scrollLeft = e.scrollWidth")
    page.wait_for_timeout(300)
    last = _box(rows[0].locator("img.attack-tile").last)
    assert 0 <= last["x"] and last["x"] + last["width"] <= SIZES["phone"][0]  # the last map, whole
    rows[0].scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "attack_phone_scrolled.png"))
