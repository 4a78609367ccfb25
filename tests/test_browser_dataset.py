"""The "Diagnose a dataset" view in a real browser (headless Chromium, as tests/test_browser.py),
at desktop (1400x1000) and phone (390x844) size: the example dataset and an uploaded zip diagnosed,
the report in its sandboxed frame (pictures inlined, sorting script running, no server path), the
misclassified images those the model gets wrong, the download offered, a bad zip answered with a
message, and nothing wider than a phone's screen. Screenshots go to artifacts/.
"""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import torch  # noqa: E402
from browser_pages import ARTIFACTS, ROOT, SIZES, needs_chromium, open_page, open_tab  # noqa: E402
from PIL import Image  # noqa: E402

import models  # noqa: E402

FRAME = "#dataset-report iframe"

pytestmark = needs_chromium


def _open(browser, server, size: str):
    context, page = open_page(browser, server, size, timeout_ms=180_000)
    open_tab(page, "dataset-view")
    page.wait_for_selector("#dataset-run")
    return context, page


def _shot(page, name: str, size: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"dataset_{name}_{size}.png"), full_page=True)


def _mistakes(members: dict[str, bytes]) -> set[str]:
    """The files the app's default model gets wrong (their folder is the class name)."""
    classifier = models.load("efficientnet_lite0")
    wrong = set()
    for name, data in members.items():
        with torch.no_grad():
            logits = classifier.module(classifier.preprocess(models.open_image(data)).to(classifier.device))
        if classifier.labels[int(logits.argmax())] != name.split("/")[0].replace("_", " "):
            wrong.add(name)
    return wrong


def _wait_for_report(page) -> None:
    page.wait_for_selector(FRAME)
    page.frame_locator(FRAME).locator("h1").wait_for()
    page.wait_for_function(
        "() => !document.querySelector('#dataset-stop') || "
        "document.querySelector('#dataset-stop').offsetParent === null"
    )


def _frame_checks(page, scratch_root: Path) -> list[str]:
    """The frame's attributes and pictures checked; returns the misclassified files it lists."""
    frame_element = page.locator(FRAME)
    assert frame_element.get_attribute("sandbox") == "allow-scripts"
    assert frame_element.get_attribute("src") is None
    srcdoc = frame_element.get_attribute("srcdoc")
    assert str(scratch_root) not in srcdoc and "/tmp/" not in srcdoc and 'src="overlays/' not in srcdoc
    frame = page.frame_locator(FRAME)
    images = frame.locator("img")
    assert images.count() > 0
    assert all(images.nth(i).evaluate("i => i.src.startsWith('data:')") for i in range(images.count()))
    rows = frame.locator("#misclassified tbody tr")
    return [rows.nth(i).locator("td").nth(1).inner_text() for i in range(rows.count())]


def test_the_example_dataset_in_a_desktop_browser(browser, server):
    from webapp import dataset_example, files

    context, page = _open(browser, server, "desktop")
    try:
        page.click("#dataset-example")
        page.wait_for_selector("#dataset-stop", state="visible")  # the job is claimed: Stop is offered
        _wait_for_report(page)
        expected = _mistakes(dataset_example.example_members())
        shown = _frame_checks(page, files.scratch_folder().root)
        assert set(shown) == expected and len(shown) == len(expected)
        assert f"{len(expected)}</b> misclassified" in page.inner_html("#dataset-summary")
        assert "Diagnosed 10 images" in page.inner_text("#dataset-status")
        assert page.locator("#dataset-download a").count() >= 1  # the results' zip

        frame = page.frame_locator(FRAME)
        confidence = frame.locator("#misclassified th", has_text="Confidence")
        values = frame.locator("#misclassified tbody tr td:first-child")
        before = [values.nth(i).get_attribute("data-value") for i in range(values.count())]
        assert before == sorted(before, key=float, reverse=True)  # most confident first
        confidence.click()  # the report's own script runs in the sandbox
        after = [values.nth(i).get_attribute("data-value") for i in range(values.count())]
        assert after == sorted(before, key=float)
        box = page.locator(FRAME).bounding_box()
        assert box is not None and box["width"] > 700 and box["height"] >= 800 * 0.85
        _shot(page, "example", "desktop")
    finally:
        context.close()


def _photo_zip(path: Path) -> dict[str, bytes]:
    """A zip of pictures made here: the example photos, shrunk and recoloured, as ImageNet-style
    flat names (label before the first "_")."""
    members = {}
    for stem, label in (("cat", "tabby"), ("coffee", "espresso"), ("rocket", "missile")):
        photo = Image.open(ROOT / "assets" / f"{stem}.jpg").convert("RGB").reduce(2)
        for variant, picture in (("a", photo), ("b", photo.convert("L").convert("RGB"))):
            buffer = io.BytesIO()
            picture.save(buffer, "PNG")
            members[f"{label}_{stem}_{variant}.png"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as packed:
        for name, data in members.items():
            packed.writestr(name, data)
    return {f"{name.split('_')[0]}/{name}": data for name, data in members.items()}


def test_an_uploaded_zip_and_a_bad_one_on_a_phone(browser, server, tmp_path):
    from webapp import files

    bad = tmp_path / "not_a_zip.zip"
    bad.write_bytes(b"these are not the images you are looking for")
    good = tmp_path / "photos.zip"
    members = _photo_zip(good)
    context, page = _open(browser, server, "phone")
    try:
        page.set_input_files("#dataset-zip input[type=file]", str(bad))
        page.wait_for_selector("#dataset-zip >> text=not_a_zip.zip")
        page.click("#dataset-run")
        toast = page.locator(".toast-body").first
        toast.wait_for()
        assert "not a readable zip archive" in toast.inner_text()
        assert "/tmp" not in toast.inner_text() and "Traceback" not in toast.inner_text()
        page.wait_for_selector("#dataset-stop", state="hidden")  # the job is over: Stop goes
        _shot(page, "bad_zip", "phone")
        page.locator(".toast-close").first.click()

        page.locator("#dataset-zip button[aria-label='Clear']").first.click()
        page.wait_for_selector("#dataset-zip >> text=Click to Upload")
        page.set_input_files("#dataset-zip input[type=file]", str(good))
        page.wait_for_selector("#dataset-zip >> text=photos.zip")
        page.click("#dataset-run")
        _wait_for_report(page)
        expected = {name.split("/", 1)[1] for name in _mistakes(members)}
        shown = _frame_checks(page, files.scratch_folder().root)
        assert set(shown) == expected
        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= SIZES["phone"][0]  # nothing wider than the screen
        box = page.locator(FRAME).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= SIZES["phone"][0]
        _shot(page, "upload", "phone")
        page.locator(FRAME).scroll_into_view_if_needed()  # a full-page shot leaves the frame blank
        page.screenshot(path=str(ARTIFACTS / "dataset_upload_frame_phone.png"))
    finally:
        context.close()
