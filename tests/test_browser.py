"""The app in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by Playwright.

Uploads an image, picks two methods and the top-2 classes, runs, checks the tiles and the
predictions, checks that changing the opacity re-renders without re-running the engine, and
that files which are not images give a readable message. Screenshots go to artifacts/.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from servers import running_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
COMPOSITE = ROOT / "assets" / "cat_and_coffee.jpg"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing (install Debian's chromium: apt-get install -y chromium)")


@pytest.fixture(scope="module")
def server():
    import app

    with running_app(app.build_app()) as url:
        yield app, url


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(server[1])
    page.wait_for_selector("#run")
    yield page
    context.close()


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
    return [img.get_attribute("src") for img in page.query_selector_all("#results .gallery-item img")]


def test_explain_two_methods_top2_and_rerender(page, server):
    app = server[0]
    ARTIFACTS.mkdir(exist_ok=True)
    page.set_input_files("#input-image input[type=file]", str(COMPOSITE))
    page.wait_for_selector("#input-image img")

    # Exactly two methods: Grad-CAM and LayerCAM (untick the other default, Grad-CAM++).
    for title in ("Grad-CAM", "Grad-CAM++", "LayerCAM"):
        box = page.get_by_label(title, exact=True)
        if box.is_checked() != (title != "Grad-CAM++"):
            box.click()
    assert page.get_by_label("Grad-CAM", exact=True).is_checked()
    assert page.get_by_label("LayerCAM", exact=True).is_checked()
    assert not page.get_by_label("Grad-CAM++", exact=True).is_checked()
    assert page.input_value("#topk input[type=number]") == "2"

    calls = app.ENGINE_CALLS
    page.click("#run")
    page.wait_for_function(
        "() => document.querySelectorAll('#results .gallery-item').length === 6")
    page.wait_for_selector("#status >> text=computed at")
    assert app.ENGINE_CALLS == calls + 1

    # Predictions are shown; the two top classes head the tile rows.
    page.wait_for_selector("#predictions .confidence-set")
    predicted = [el.inner_text() for el in page.query_selector_all("#predictions dt")]
    assert len(predicted) >= 5
    captions = [c.inner_text() for c in page.query_selector_all("#results .caption-label")]
    maps = [c for c in captions if not c.startswith("Input")]
    assert len(maps) == 4, captions
    assert [c.split(" · ")[0] for c in maps] == ["Grad-CAM", "LayerCAM"] * 2
    assert [c.split(" · ")[1] for c in maps] == [predicted[0]] * 2 + [predicted[1]] * 2
    assert all(re.search(r"\d+\.\d% · \d+\.\d\d s$", c) for c in maps), maps
    page.screenshot(path=str(ARTIFACTS / "app_result.png"), full_page=True)

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
    assert app.ENGINE_CALLS == calls + 1

    # A re-render writes no zip: the download is prepared on request, in the new colours.
    page.wait_for_selector("#prepare-download", state="visible", timeout=30_000)
    assert page.query_selector("#download a[href*='.zip']") is None
    page.click("#prepare-download")
    page.wait_for_selector("#download a[href*='.zip']", timeout=30_000)
    page.wait_for_selector("#prepare-download", state="hidden", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "app_rerendered.png"), full_page=True)
    assert app.ENGINE_CALLS == calls + 1

    # Clicking a tile opens it large.
    page.click("#results .gallery-item:nth-child(2) button")
    page.wait_for_selector("#results .preview img")
    page.screenshot(path=str(ARTIFACTS / "app_preview.png"), full_page=False)


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
    page.screenshot(path=str(ARTIFACTS / "app_error.png"), full_page=False)
