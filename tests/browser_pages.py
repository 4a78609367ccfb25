"""What the real-browser tests share: Debian's Chromium (/usr/bin/chromium) driven by Playwright,
the app served once per test module, pages at desktop (1400x1000) and phone (390x844) size, and
the geometry of what a page shows.

A test module takes the fixtures by importing them: `from browser_pages import browser, page,
server  # noqa: F401` (each module gets its own server and browser)."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from servers import running_app  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
SIZES = {"desktop": (1400, 1000), "phone": (390, 844)}
PAGE_TIMEOUT_MS = 120_000  # a shared 2-core machine: a run can take a minute

needs_chromium = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason=f"{CHROMIUM} is missing (install Debian's chromium: apt-get install -y chromium)",
)


def open_page(browser, url: str, size: str, timeout_ms: int = PAGE_TIMEOUT_MS):  # noqa: ANN201
    """A new context's page at ``size`` ("desktop" or "phone") on the app at ``url``, once its
    Explain button is there: (context, page); page.size_name is ``size``."""
    width, height = SIZES[size]
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.goto(url)
    page.wait_for_selector("#run")
    page.size_name = size
    return context, page


def open_tab(page, elem_id: str) -> None:  # noqa: ANN001 - a Playwright page
    """Open the tab whose elem_id is ``elem_id`` by its button in the tab bar (the bars wrap on a
    phone rather than hide tabs, so every button is there)."""
    page.locator(f"#{elem_id}-button").click()


def box(element) -> dict:  # noqa: ANN001 - a Playwright element or locator
    """The element's bounding box (x, y, width, height); it must be rendered."""
    found = element.bounding_box()
    assert found is not None
    return found


def overlap(a: dict, b: dict) -> bool:
    """Whether two boxes overlap by more than a pixel."""
    return (
        a["x"] < b["x"] + b["width"] - 1
        and b["x"] < a["x"] + a["width"] - 1
        and a["y"] < b["y"] + b["height"] - 1
        and b["y"] < a["y"] + a["height"] - 1
    )


@pytest.fixture(scope="module")
def server():
    """The app (app.build_app()) served on a free local port: its URL."""
    import app

    with running_app(app.build_app()) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium."""
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield chromium
        chromium.close()


@pytest.fixture(params=list(SIZES))
def page(request, browser, server):
    """The app's page, once at desktop and once at phone size."""
    context, opened = open_page(browser, server, request.param)
    yield opened
    context.close()
