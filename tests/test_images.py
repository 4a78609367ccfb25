"""models.open_image, the one loader of the app and the command line: limits, orientation, bit depth,
and hostile files (EXIF and TIFF tag bombs, FIFOs, thin strips) refused quickly in little memory.

Every file is built here; no binary is stored in the repository.
"""

import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, PngImagePlugin, TiffImagePlugin

import models
from explainers import cli
from models import preprocessing, tiff_directory

ROOT = Path(__file__).resolve().parents[1]
ORIENTATION = 0x0112
PICTURE = Image.fromarray(np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8))


# ---------------------------------------------------------------------------- building files


def saved(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def directory(entries: list[tuple[int, int, int, int]], order: str = "<") -> bytes:
    """One IFD: its entries (tag, type, count, value: a SHORT in place, else a LONG or an offset)."""
    out = struct.pack(order + "H", len(entries))
    for tag, kind, count, value in entries:
        short = kind == 3 and count == 1
        field = struct.pack(order + "HH", value, 0) if short else struct.pack(order + "L", value)
        out += struct.pack(order + "HHL", tag, kind, count) + field
    return out + struct.pack(order + "L", 0)


def header(order: str = "<") -> bytes:
    """A TIFF header whose IFD0 follows it, at offset 8."""
    return (b"II*\0" if order == "<" else b"MM\0*") + struct.pack(order + "L", 8)


def shared(tags: int, offset: int, size: int, kind: int = 7) -> list[tuple[int, int, int, int]]:
    """`tags` entries whose values are all the same `size` bytes at `offset` (UNDEFINED or SHORT)."""
    return [(0xC000 + i, kind, size // (2 if kind == 3 else 1), offset) for i in range(tags)]


def exif_block(orientation: int | None = None, tags: int = 0, size: int = 0, order: str = "<", kind: int = 7) -> bytes:
    """Raw EXIF (TIFF-structured): the orientation, then `tags` entries sharing one `size`-byte block."""
    first = [] if orientation is None else [(ORIENTATION, 3, 1, orientation)]
    offset = 8 + 6 + 12 * (len(first) + tags)
    return header(order) + directory(first + shared(tags, offset, size, kind), order) + b"\xff" * size


def tiff_bomb(in_exif_directory: bool, tags: int = 1000, size: int = 1_000_000) -> bytes:
    """An 8×4 gray TIFF whose IFD0, or its Exif directory, holds `tags` entries sharing one block."""
    count0 = 8 + (1 if in_exif_directory else tags)
    block = 8 + 6 + 12 * count0
    pixels = block + size
    entries = [
        (256, 3, 1, 8),
        (257, 3, 1, 4),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, pixels),
        (278, 3, 1, 4),
        (279, 4, 1, 32),
    ]
    bomb = shared(tags, block, size)
    if in_exif_directory:
        return (
            header()
            + directory(entries + [(0x8769, 4, 1, pixels + 32)])
            + bytes(size)
            + bytes(range(32))
            + directory(bomb)
        )
    return header() + directory(entries + bomb) + bytes(size) + bytes(range(32))


def tiff_with_numbers(count: int) -> bytes:
    """An 8×4 gray TIFF whose Exif directory holds one tag of `count` SHORTs, all in the file:
    nothing is overclaimed, but PIL turns each SHORT into a Python number on load."""
    ifd0_end = 8 + 2 + 12 * 9 + 4
    pixels, exif = ifd0_end, ifd0_end + 32
    entries = [
        (256, 3, 1, 8),
        (257, 3, 1, 4),
        (258, 3, 1, 8),
        (259, 3, 1, 1),
        (262, 3, 1, 1),
        (273, 4, 1, pixels),
        (278, 3, 1, 4),
        (279, 4, 1, 32),
        (0x8769, 4, 1, exif),
    ]
    values = exif + 2 + 12 + 4
    return (
        header() + directory(entries) + bytes(range(32)) + directory([(0x9286, 3, count, values)]) + b"\x01\x02" * count
    )


def segment(code: int, payload: bytes) -> bytes:
    return bytes([0xFF, code]) + struct.pack(">H", len(payload) + 2) + payload


def camera_jpeg(segments: list[bytes]) -> bytes:
    """A small JPEG with these segments after SOI and no JFIF header: PIL then reads its dpi from
    the EXIF while opening it, as for a camera's file."""
    data = saved(Image.new("RGB", (8, 4), (200, 30, 30)), "JPEG")
    jfif = 4 + struct.unpack(">H", data[4:6])[0]
    return data[:2] + b"".join(segments) + data[jfif:]


def split_exif(block: bytes, chunk: int = 60_000) -> list[bytes]:
    """EXIF over several APP1 segments (PIL joins them), with the junk PIL skips between them."""
    return [
        b"\xff\x00\x42\xff" + segment(0xE1, b"Exif\0\0" + block[i : i + chunk]) for i in range(0, len(block), chunk)
    ]


def png_claiming(width: int, height: int) -> bytes:
    """A PNG signature and IHDR claiming width × height, and one tiny IDAT: pixels never there."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


# ---------------------------------------------------------------------------- measuring

_MEASURE = """
import json, resource, sys, time
import models

def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

models.open_image(sys.argv[1])  # warm-up: plugins imported, first buffers allocated
before = peak_mb()
for path in sys.argv[2:]:
    started = time.perf_counter()
    try:
        outcome = list(models.open_image(path).size)
    except models.ImageError as error:
        outcome = str(error)
    print(json.dumps({"name": path.rsplit("/", 1)[-1], "outcome": outcome,
                      "seconds": time.perf_counter() - started, "extra_mb": peak_mb() - before}))
"""


def measured(folder: Path, files: dict[str, bytes]) -> dict[str, dict]:
    """Open each file in a fresh interpreter: outcome (size or message), seconds, and the growth
    of its peak RSS since the warm-up (MB, cumulative, so the largest is the last)."""
    warm_up = folder / "warm_up.png"
    PICTURE.save(warm_up)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    run = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(warm_up), *(str(folder / n) for n in files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"),
    )
    assert run.returncode == 0, run.stderr
    return {row["name"]: row for row in map(json.loads, run.stdout.splitlines())}


# ---------------------------------------------------------------------------- hostile metadata


def test_tag_bombs_cost_milliseconds_and_megabytes(tmp_path):
    """Each file is ~1 MB (the MPF one 65 KB); PIL alone takes 1-2 GB on each (measured: PNG EXIF
    via getexif/exif_transpose 1.9 GB; TIFF IFD0 1.9 GB; TIFF Exif directory 0.96 GB on load;
    JPEG EXIF 0.96 GB and JPEG MPF 1.7 GB inside Image.open itself)."""
    bomb = exif_block(orientation=6, tags=1000, size=1_000_000)
    results = measured(
        tmp_path,
        {
            "exif_bomb.png": saved(Image.new("RGB", (8, 4)), "PNG", exif=bomb),
            "ifd0_bomb.tif": tiff_bomb(in_exif_directory=False),
            "exif_directory_bomb.tif": tiff_bomb(in_exif_directory=True),
            "exif_bomb.jpg": camera_jpeg(split_exif(bomb)),
            "mpf_bomb.jpg": camera_jpeg([segment(0xE2, b"MPF\0" + exif_block(tags=2700, size=32_000, kind=3))]),
            "strip.png": saved(Image.new("L", (2, 20_000)), "PNG"),
        },
    )
    assert results["exif_bomb.png"]["outcome"] == [4, 8]  # opened, and its orientation 6 applied
    for name in ("ifd0_bomb.tif", "exif_directory_bomb.tif", "exif_bomb.jpg", "mpf_bomb.jpg"):
        assert f"“{name}” could not be read safely" in results[name]["outcome"]
        assert "claims more data than the file holds" in results[name]["outcome"]
    assert "too long and thin" in results["strip.png"]["outcome"]
    assert max(row["extra_mb"] for row in results.values()) < 100
    assert max(row["seconds"] for row in results.values()) < 2


def test_metadata_with_millions_of_numbers_is_refused_cheaply(tmp_path):
    """5 million SHORTs in a 10 MB TIFF's Exif directory: about 240 MB once PIL has read them
    (a 25 MB upload would be 600 MB); 100,000 of them are still a picture."""
    results = measured(
        tmp_path, {"few_numbers.tif": tiff_with_numbers(100_000), "many_numbers.tif": tiff_with_numbers(5_000_000)}
    )
    assert results["few_numbers.tif"]["outcome"] == [8, 4]
    assert "could not be read safely" in results["many_numbers.tif"]["outcome"]
    assert results["many_numbers.tif"]["extra_mb"] < 60


def test_exif_bomb_orientation_is_applied_like_a_plain_exif():
    bomb = saved(PICTURE, "PNG", exif=exif_block(orientation=6, tags=1000, size=1_000_000))
    plain = saved(PICTURE, "PNG", exif=exif_block(orientation=6))
    assert np.array_equal(np.asarray(models.open_image(bomb)), np.asarray(models.open_image(plain)))
    assert models.open_image(bomb).size == (6, 10)


def test_orientation_beyond_the_first_max_exif_bytes_is_ignored_not_refused():
    far = models.MAX_EXIF_BYTES + 8
    block = b"II*\0" + struct.pack("<L", far) + bytes(far - 8) + directory([(ORIENTATION, 3, 1, 6)])
    data = saved(PICTURE, "PNG", exif=block)
    assert ImageOps.exif_transpose(Image.open(io.BytesIO(data))).size == (6, 10)  # PIL reads it
    assert models.open_image(data).size == (10, 6)  # the documented limit: opened, not turned


def test_genuine_metadata_is_not_refused(tmp_path):
    exif = Image.Exif()
    exif.update(
        {
            0x010F: "Canon",
            0x0110: "EOS 5D",
            0x0132: "2024:05:01 10:00:00",
            ORIENTATION: 8,
            0x011A: 300.0,
            0x011B: 300.0,
            0x0128: 2,
        }
    )
    exif.get_ifd(0x8769).update(
        {0x9003: "2024:05:01 10:00:00", 0x927C: bytes(range(256)) * 40, 0x829A: 0.004, 0x9286: b"ASCII\0\0\0a comment"}
    )
    exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 30.0), 3: "E", 4: (2.0, 21.0, 5.0)})
    for fmt, kwargs in [
        ("JPEG", {}),
        ("PNG", {}),
        ("WEBP", {"lossless": True}),
        ("TIFF", {}),
        ("TIFF", {"compression": "tiff_lzw"}),
    ]:
        data = saved(PICTURE, fmt, exif=exif, **kwargs)
        assert models.open_image(data).size == (6, 10), fmt
    mpo = saved(PICTURE, "MPO", save_all=True, append_images=[PICTURE.transpose(Image.Transpose.ROTATE_180)])
    with Image.open(io.BytesIO(mpo)) as first:
        assert first.format == "MPO" and first.n_frames == 2
        assert np.array_equal(np.asarray(models.open_image(mpo)), np.asarray(first.convert("RGB")))
    for photo in sorted((ROOT / "assets").glob("*.jpg")):
        assert models.open_image(photo).mode == "RGB"


def test_directory_reader_knows_every_type_pil_reads():
    pil = {kind: size for kind, (size, _) in TiffImagePlugin.ImageFileDirectory_v2._load_dispatch.items()}
    assert tiff_directory.UNIT_BYTES == pil


# ---------------------------------------------------------------------------- orientation


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
@pytest.mark.parametrize("order", ["<", ">"])
@pytest.mark.parametrize("value", range(1, 9))
def test_orientation_matches_pil_exif_transpose(fmt, order, value):
    data = saved(
        PICTURE, fmt, exif=exif_block(orientation=value, order=order), **({"lossless": True} if fmt == "WEBP" else {})
    )
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB"))
    assert np.array_equal(np.asarray(models.open_image(data)), expected)
    assert np.array_equal(np.asarray(models.to_rgb(Image.open(io.BytesIO(data)))), expected)


@pytest.mark.parametrize("value", [3, 6, 8])
def test_xmp_and_raw_profile_orientations_match_pil(value):
    xmp = f'<x:xmpmeta><rdf:Description tiff:Orientation="{value}"/></x:xmpmeta>'
    itxt, raw_profile, overridden = (PngImagePlugin.PngInfo() for _ in range(3))
    itxt.add_itxt("XML:com.adobe.xmp", xmp)
    block = b"Exif\0\0" + exif_block(orientation=value)
    raw_profile.add_text("Raw profile type exif", f"\nexif\n{len(block):8d}\n{block.hex()}")
    overridden.add_itxt("XML:com.adobe.xmp", xmp)
    cases = [
        saved(PICTURE, "PNG", pnginfo=itxt),
        saved(PICTURE, "JPEG", xmp=xmp.encode()),
        saved(PICTURE, "PNG", pnginfo=raw_profile),
        saved(PICTURE, "PNG", pnginfo=overridden, exif=exif_block(orientation=1)),
    ]  # EXIF wins
    for data in cases:
        expected = ImageOps.exif_transpose(Image.open(io.BytesIO(data))).convert("RGB")
        assert np.array_equal(np.asarray(models.open_image(data)), np.asarray(expected))
    assert models.open_image(cases[0]).size == ((10, 6) if value == 3 else (6, 10))
    assert models.open_image(cases[-1]).size == (10, 6)


def test_an_opened_image_is_not_turned_twice():
    upright = models.open_image(saved(PICTURE, "PNG", exif=exif_block(orientation=6)))
    assert not {"exif", "xmp", "XML:com.adobe.xmp"} & set(upright.info)
    assert np.array_equal(np.asarray(models.to_rgb(upright)), np.asarray(upright))


# ---------------------------------------------------------------------------- bit depth


def test_sixteen_bit_png_keeps_its_range_in_open_image_and_the_cli(tmp_path):
    ramp = np.linspace(0, 65535, 48 * 64).round().astype(np.uint16).reshape(48, 64)
    path = tmp_path / "ramp16.png"
    Image.fromarray(ramp).save(path)
    pixels = np.asarray(models.open_image(path))
    assert np.array_equal(pixels[..., 0], np.rint(ramp / 257.0).astype(np.uint8))  # 65535 -> 255
    assert (pixels == pixels[..., :1]).all() and (pixels[..., 0] < 128).mean() == pytest.approx(0.5, abs=0.01)
    assert np.array_equal(np.asarray(cli.load_image(path)), pixels)  # was 99.6 % white in the CLI


def test_float_tiff_maps_to_0_255(tmp_path):
    unit = np.linspace(0.0, 1.0, 40 * 30, dtype=np.float32).reshape(30, 40)
    unit[0, 0] = np.nan
    Image.fromarray(unit).save(tmp_path / "unit.tif")
    pixels = np.asarray(models.open_image(tmp_path / "unit.tif"))[..., 0]
    expected = np.rint(np.nan_to_num(unit) * 255)
    assert pixels[0, 0] == 0 and pixels.max() == 255 and np.array_equal(pixels, expected)
    wide = np.linspace(0.0, 200.0, 40 * 30, dtype=np.float32).reshape(30, 40)  # not 0..1: as is
    assert np.array_equal(np.asarray(models.to_rgb(Image.fromarray(wide)))[..., 0], np.rint(wide))


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_depth_strips_give_the_whole_image_result(monkeypatch, mode):
    monkeypatch.setattr(preprocessing, "_STRIP_PIXELS", 100)  # 37 wide: 2 rows a strip, 12 strips
    rng = np.random.default_rng(1)
    if mode == "F":
        values = rng.random((23, 37)).astype(np.float32)
        values[-1, -1] = 3.0  # the largest value, in the last strip, decides the scale for all
        expected = np.rint(np.clip(values, 0, 255))
    else:
        values = rng.integers(-1000 if mode == "I" else 0, 70_000 if mode == "I" else 65536, (23, 37))
        values = values.astype(np.int32 if mode == "I" else np.uint16)
        expected = np.rint(np.clip(values, 0, 65535) / 257.0)
    image = Image.fromarray(values, mode)
    assert np.array_equal(np.asarray(models.to_rgb(image))[..., 0], expected.astype(np.uint8))


def test_a_large_sixteen_bit_image_stays_within_its_memory_bound(tmp_path):
    """36 MP: the decoded 16-bit source (72 MB) + the 8-bit gray (36 MB) + RGB (144 MB, PIL keeps
    4 bytes a pixel) = 252 MB; the former whole-image float64 conversion took 1.1 GB."""
    rows = np.arange(6000, dtype=np.uint32)
    ramp = ((rows[None, :] * 10 + rows[:, None]) % 65536).astype(np.uint16)
    results = measured(tmp_path, {"big16.png": saved(Image.fromarray(ramp), "PNG", compress_level=1)})
    assert results["big16.png"]["outcome"] == [6000, 6000]
    assert results["big16.png"]["extra_mb"] < 320


# ---------------------------------------------------------------------------- paths and limits


def test_a_fifo_is_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    outcome: dict[str, str] = {}

    def attempt() -> None:
        try:
            models.open_image(fifo)
        except models.ImageError as error:
            outcome["error"] = str(error)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout=1.0)
    if thread.is_alive():  # blocked waiting for a writer: release it, then fail
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=5)
        pytest.fail("open_image blocked on a FIFO")
    assert outcome["error"] == "“pipe.png” is not a regular file."


def test_paths_that_are_no_image_file_get_short_reasons_without_the_path(tmp_path):
    folder = tmp_path / "holiday.png"
    folder.mkdir()
    cases = [
        (folder, "“holiday.png” is a directory, not an image."),
        (tmp_path / "missing.png", "“missing.png” was not found."),
        ("/dev/null", "“null” is not a regular file."),
    ]
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.png"
        PICTURE.save(locked)
        locked.chmod(0)
        cases.append((locked, "“locked.png” cannot be read: permission denied."))
    for path, message in cases:
        with pytest.raises(models.ImageError) as info:
            models.open_image(path)
        assert str(info.value) == message and str(tmp_path) not in str(info.value)
        with pytest.raises(cli.BadImage, match=re.escape(message)):
            cli.load_image(Path(path))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"just some text, renamed .png\n" * 20, "“x.png” is not an image this app can read"),
        (b"", "“x.png” is not an image this app can read"),
        ((ROOT / "assets" / "cat.jpg").read_bytes()[:3000], "“x.png” could not be read; the file may be"),
        (png_claiming(8000, 6000), "“x.png” is 8000×6000 pixels (48 megapixels); the limit is 40 megapi"),
        (png_claiming(50_000, 50_000), "“x.png” is too large to open safely (over 40 megapixels)"),
        (png_claiming(4000, 3), "“x.png” is 4000×3 pixels: too long and thin"),
    ],
)
def test_refusals_name_the_display_name(tmp_path, data, message):
    path = tmp_path / "upload-3f9a"
    path.write_bytes(data)
    for source in (path, data):
        with pytest.raises(models.ImageError) as info:
            models.open_image(source, name="x.png")
        assert str(info.value).startswith(message) and str(tmp_path) not in str(info.value)


def test_sizes_are_refused_from_the_header_before_any_pixel_is_decoded(tmp_path, monkeypatch):
    strip = tmp_path / "strip.png"
    Image.new("L", (2, 20_000)).save(strip)
    assert strip.stat().st_size < 3000
    huge = tmp_path / "huge.png"
    huge.write_bytes(png_claiming(8000, 6000))

    def decode(image):
        raise AssertionError("pixels decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", decode)
    for path, message in (
        (strip, "“strip.png” is 2×20000 pixels: too long and thin"),
        (huge, "“huge.png” is 8000×6000 pixels (48 megapixels)"),
    ):
        with pytest.raises(models.ImageError, match=re.escape(message)):
            models.open_image(path)
        with pytest.raises(cli.BadImage, match=re.escape(message)):
            cli.load_image(path)


def test_small_images_animations_and_bytes_are_accepted():
    assert models.open_image(saved(Image.new("RGB", (1, 1), (9, 8, 7)), "PNG")).getpixel((0, 0)) == (9, 8, 7)
    frames = [Image.new("P", (40, 30), i) for i in (1, 2, 3)]
    gif = saved(frames[0], "GIF", save_all=True, append_images=frames[1:])
    first = Image.open(io.BytesIO(gif)).convert("RGB").getpixel((0, 0))
    assert models.open_image(gif).getpixel((0, 0)) == first
    with pytest.raises(models.ImageError, match="^“image” is not an image"):
        models.open_image(b"nothing")
