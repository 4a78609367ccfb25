"""Hostile and odd images: each gives a correct explanation or a clear message, never a traceback,
and the app keeps serving. Checked through the handler functions and through the running server
(gradio_client). The corpus is generated here; no binary is stored in the repository.
"""

from __future__ import annotations

import io
import os
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402
from results_page import picture, tiles_of  # noqa: E402
from servers import running_app  # noqa: E402
from test_images import camera_jpeg, exif_block, saved, segment  # noqa: E402

import app  # noqa: E402
from webapp import config, errors, handlers, values  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOOD = ROOT / "assets" / "cat.jpg"
FAST = ["gradcam"]
RED, BLUE = (255, 0, 0), (0, 0, 255)


@pytest.fixture(scope="module")
def server_url():
    """The app on 127.0.0.1 (a free port), in this process."""
    with running_app(app.build_app()) as url:
        yield url


@pytest.fixture(scope="module")
def client(server_url):
    from gradio_client import Client

    return Client(server_url, verbose=False)


def api_explain(client, path: Path, **kwargs):
    """One /explain call through the HTTP API (gradio_client uploads the file first)."""
    from gradio_client import handle_file

    return client.predict(
        image=handle_file(str(path)),
        methods=kwargs.pop("methods", FAST),
        top_k=kwargs.pop("top_k", 1),
        api_name="/explain",
        **kwargs,
    )


# ---------------------------------------------------------------------------- the corpus


def _save(image: Image.Image, path: Path, **kwargs) -> Path:
    image.save(path, **kwargs)
    return path


def two_colours(size: tuple[int, int] = (64, 64)) -> Image.Image:
    """Red top half, blue bottom half."""
    image = Image.new("RGB", size, BLUE)
    image.paste(RED, (0, 0, size[0], size[1] // 2))
    return image


def exif_rotated(path: Path) -> Path:
    """Red-on-top picture stored rotated, with EXIF Orientation 6 ("rotate 90° clockwise to view")."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(two_colours((64, 96)).transpose(Image.Transpose.ROTATE_90), path, format="JPEG", exif=exif, quality=95)


def png_with_size(width: int, height: int) -> bytes:
    """A valid PNG signature + IHDR claiming width x height, and one tiny IDAT: a decompression bomb's
    header (the pixels are never there)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _animated_gif(path: Path) -> Path:
    frames = [Image.new("P", (40, 30), i) for i in (1, 2, 3)]
    return _save(frames[0], path, save_all=True, append_images=frames[1:], duration=50, loop=0)


def _sixteen_bit(path: Path) -> Path:
    ramp = np.linspace(0, 65535, 48 * 32, dtype=np.uint16).reshape(32, 48)
    return _save(Image.fromarray(ramp), path)


def _palette(path: Path, transparent: bool) -> Path:
    """Palette image: index 0 (red) on top, index 1 (blue) below; index 0 transparent if asked."""
    image = Image.new("P", (64, 64), 1)
    image.putpalette([*RED, *BLUE])
    image.paste(0, (0, 0, 64, 32))
    return _save(image, path, transparency=0) if transparent else _save(image, path)


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# name -> (builder, error pattern or None for "is explained")
CORPUS: dict[str, tuple[Callable[[Path], Path], str | None]] = {
    "empty.png": (lambda p: _bytes(p, b""), "not an image"),
    "notes.png": (lambda p: _bytes(p, b"just some text, renamed .png\n" * 20), "not an image"),
    "truncated.jpg": (lambda p: _bytes(p, GOOD.read_bytes()[:3000]), "damaged or cut short"),
    "bomb.png": (lambda p: _bytes(p, png_with_size(50_000, 50_000)), "megapixels"),
    "over_limit.png": (lambda p: _bytes(p, png_with_size(8_000, 6_000)), r"8000×6000 pixels.*limit"),
    "strip.png": (lambda p: _save(Image.new("RGB", (4_000, 3)), p), "too long and thin"),
    "one_pixel.png": (lambda p: _save(Image.new("RGB", (1, 1), RED), p), None),
    "sixteen_bit.png": (_sixteen_bit, None),
    "cmyk.jpg": (lambda p: _save(two_colours().convert("CMYK"), p, format="JPEG"), None),
    "rgba.png": (lambda p: _save(Image.new("RGBA", (50, 40), (0, 255, 0, 128)), p), None),
    "palette.png": (lambda p: _palette(p, transparent=False), None),
    "palette_transparent.png": (lambda p: _palette(p, transparent=True), None),
    "grayscale.jpg": (lambda p: _save(two_colours().convert("L"), p), None),
    "animated.gif": (_animated_gif, None),
    "exif_rotated.jpg": (exif_rotated, None),
    "panorama.jpg": (lambda p: _save(Image.open(GOOD).resize((2_000, 120)), p), None),
    "thin_strip.png": (lambda p: _save(Image.new("L", (2, 20_000)), p), "too long and thin"),
    # 1 MB of EXIF whose 1,000 tags all point at the same 1 MB (1.9 GB in PIL's EXIF reader)
    "exif_bomb.png": (
        lambda p: _bytes(p, saved(two_colours(), "PNG", exif=exif_block(orientation=6, tags=1000, size=1_000_000))),
        None,
    ),
    # 65 KB whose MPF index claims 2,700 × 32 KB (1.7 GB inside PIL's Image.open)
    "mpf_bomb.jpg": (
        lambda p: _bytes(p, camera_jpeg([segment(0xE2, b"MPF\0" + exif_block(tags=2700, size=32_000, kind=3))])),
        "could not be read safely",
    ),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    return {name: build(folder / name) for name, (build, _) in CORPUS.items()}


# ---------------------------------------------------------------------------- handlers


@pytest.mark.parametrize("name", CORPUS)
def test_handler_explains_or_says_why(name, corpus):
    expected = CORPUS[name][1]
    payload = {"path": str(corpus[name]), "orig_name": name, "url": None}
    if expected is None:
        result = handlers.explain_image(payload, methods=FAST, top_k=1)[-1]
        tile = next(iter(result.tiles.values()))
        assert result.crop.mode == "RGB" and result.crop.size == (224, 224)
        assert np.isfinite(tile.map).all() and 0 <= tile.map.min() <= tile.map.max() <= 1
    else:
        with pytest.raises(gr.Error, match=expected) as info:
            handlers.explain_image(payload, methods=FAST, top_k=1)
        assert name in str(info.value) and "Traceback" not in str(info.value)
    # the next good request still works
    assert handlers.explain_image(str(GOOD), methods=FAST, top_k=1)[-1].tiles


def test_exif_rotated_photo_is_explained_upright(corpus):
    result = handlers.explain_image(str(corpus["exif_rotated.jpg"]), methods=FAST, top_k=1)[-1]
    crop = np.asarray(result.crop, dtype=float)
    top, bottom = crop[:80].mean(axis=(0, 1)), crop[-80:].mean(axis=(0, 1))
    assert top[0] > 200 and top[2] < 60, top  # red on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom  # blue below


def test_sixteen_bit_and_transparency_keep_their_content(corpus):
    ramp = np.asarray(values.load_image(str(corpus["sixteen_bit.png"])), dtype=float)
    assert ramp[..., 0].min() < 10 and ramp[..., 0].max() > 245  # scaled, not clipped to white
    clear = values.load_image(str(corpus["palette_transparent.png"]))
    assert clear.getpixel((0, 0)) == (255, 255, 255)  # the transparent colour is shown on white
    assert clear.getpixel((0, 63)) == BLUE


def test_bomb_is_refused_before_its_pixels_are_decoded(corpus):
    tracemalloc.start()
    try:
        for name in ("bomb.png", "over_limit.png"):
            with pytest.raises(errors.UserError, match="megapixels"):
                values.load_image(str(corpus[name]))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5_000_000  # 50 000² RGB pixels would be 7.5 GB; 8000×6000 would be 144 MB


def test_pasted_images_are_bounded(monkeypatch):
    monkeypatch.setattr(config, "MAX_FILE_BYTES", 1000)
    with pytest.raises(errors.UserError, match="larger than"):
        values.load_image({"path": None, "url": "data:image/png;base64," + "A" * 2000})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"top_k": "many"}, "whole number from 0 to 10"),
        ({"top_k": 2.5}, "whole number"),
        ({"top_k": 11}, "whole number"),
        ({"top_k": float("nan")}, "whole number"),
        ({"colormap": "rainbow-unicorn"}, "Unknown colormap"),
        ({"opacity": 7}, "opacity must be a number from 0 to 1"),
        ({"opacity": "x"}, "opacity"),
        ({"classes": {"a": 1}}, "must be a list"),
        ({"classes": ["tabby"] * 11}, "at most 10"),
        ({"classes": "x," * 100_000}, "at most 10"),
        ({"methods": ["gradcam"] * 100, "top_k": 1}, None),
        ({"counterfactual": "false"}, None),
        ({"counterfactual": "FALSE", "shared_scale": "0"}, None),
        ({"counterfactual": "maybe"}, "must be true or false"),
        ({"shared_scale": [1]}, "must be true or false"),
        ({"methods": "gradcam"}, None),
        ({"methods": [1, 2]}, "list of names"),
        ({"layer": "x" * 10_000}, "no layer “x{80}…”"),
    ],
)
def test_odd_api_values_get_messages(kwargs, message):
    kwargs = {"methods": FAST, **kwargs}
    if message is None:  # duplicates are explained once; "false" is False
        result = handlers.explain_image(str(GOOD), **kwargs)[-1]
        assert result.methods == FAST and result.counterfactual is False
        return
    with pytest.raises(gr.Error, match=message):
        handlers.explain_image(str(GOOD), **kwargs)


# ---------------------------------------------------------------------------- the running server


def test_server_explains_or_says_why_and_keeps_serving(client, corpus):
    for name, (_, expected) in CORPUS.items():
        if expected is None:
            view, predictions, *_ = api_explain(client, corpus[name])
            assert len(tiles_of(view)) == 2 and predictions["confidences"], name
        else:
            with pytest.raises(Exception, match=expected) as info:
                api_explain(client, corpus[name])
            assert "Traceback" not in str(info.value), name
        view, *_ = api_explain(client, GOOD)  # the next good request still works
        assert len(tiles_of(view)) == 2


def test_server_shows_the_exif_photo_upright(client, corpus):
    view, *_ = api_explain(client, corpus["exif_rotated.jpg"])
    crop = np.asarray(picture(tiles_of(view)[0]), dtype=float)  # the input tile
    assert crop[:80, :, 0].mean() > 200 and crop[-80:, :, 2].mean() > 200


def test_server_refuses_uploads_over_the_size_limit(client, tmp_path):
    big = tmp_path / "big.png"
    _save(Image.new("RGB", (16, 16)), big)
    with open(big, "ab") as f:  # a valid PNG followed by junk, just over the limit
        f.truncate(config.MAX_FILE_BYTES + 1024)
    with pytest.raises(Exception, match="(?i)file size|too large|exceeds|413"):
        api_explain(client, big)
    assert len(tiles_of(api_explain(client, GOOD)[0])) == 2


def test_upload_endpoint_enforces_the_limit(server_url):
    import httpx

    def upload(size: int) -> int:
        files = {"files": ("x.png", io.BytesIO(b"\0" * size), "image/png")}
        return httpx.post(server_url + "gradio_api/upload", files=files, timeout=60).status_code

    assert upload(1000) == 200
    assert upload(config.MAX_FILE_BYTES + 1024) == 413
