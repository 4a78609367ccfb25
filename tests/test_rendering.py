"""explainers/rendering.py: colour maps, overlays, the shared scale, grids (no torch needed)."""

import subprocess
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from PIL import Image

RENDERING = Path(__file__).resolve().parents[1] / "explainers" / "rendering.py"


def _load_rendering():
    """The module by its path, so that the engine package (and torch) stays out of these tests."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("_rendering_under_test", RENDERING)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


r = _load_rendering()


def test_importable_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import importlib.util as u\n"
        f"s = u.spec_from_file_location('rendering', {str(RENDERING)!r})\n"
        "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
        "import numpy as np\n"
        "m.overlay(m.Image.new('RGB', (8, 8)), np.ones((4, 4)))\n"
        "assert 'torch' not in sys.modules or sys.modules['torch'] is None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_colormaps_curated():
    names = r.colormaps()
    assert {"jet", "turbo", "inferno", "viridis", "magma", "gray"} <= set(names)
    names.append("mutated")
    assert "mutated" not in r.colormaps()  # a copy


@pytest.mark.parametrize("name", r.colormaps())
def test_colorize_endpoints(name):
    out = r.colorize(np.array([[0.0, 1.0], [-3.0, 7.0]], dtype=np.float32), name)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    cmap = matplotlib.colormaps[name]
    low = np.round(np.array(cmap(0.0)[:3]) * 255).astype(np.uint8)
    high = np.round(np.array(cmap(1.0)[:3]) * 255).astype(np.uint8)
    assert (out[0, 0] == low).all() and (out[0, 1] == high).all()
    assert (out[1, 0] == low).all() and (out[1, 1] == high).all()  # clipped


def test_colorize_gray_is_monotonic_and_nan_safe():
    ramp = np.linspace(0, 1, 11, dtype=np.float32)[None]
    gray = r.colorize(ramp, "gray")[0, :, 0].astype(int)
    assert gray[0] == 0 and gray[-1] == 255 and (np.diff(gray) > 0).all()
    assert (r.colorize(np.array([[np.nan]]), "gray") == 0).all()


def test_colorize_rejects_unknown_colormap_and_bad_shape():
    with pytest.raises(ValueError, match="jet"):
        r.colorize(np.zeros((2, 2)), "no-such-map")
    with pytest.raises(ValueError):
        r.colorize(np.zeros((2, 2, 2)))


def _photo(w=64, h=48):
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")


def test_overlay_opacity_ends():
    image = _photo()
    sal = np.random.default_rng(1).random((48, 64)).astype(np.float32)
    assert np.array_equal(np.asarray(r.overlay(image, sal, opacity=0.0)), np.asarray(image))
    full = r.overlay(image, sal, "inferno", opacity=1.0)
    assert full.mode == "RGB" and full.size == image.size
    assert np.array_equal(np.asarray(full), r.colorize(sal, "inferno"))
    half = np.asarray(r.overlay(image, sal, "inferno", opacity=0.5)).astype(int)
    expected = (np.asarray(image).astype(int) + r.colorize(sal, "inferno").astype(int)) / 2
    assert np.abs(half - expected).max() <= 1


def test_overlay_resizes_the_map():
    image = _photo(64, 48)
    out = r.overlay(image, np.full((7, 7), 1.0, np.float32), "jet", opacity=1.0)
    assert out.size == (64, 48)
    assert (np.asarray(out) == r.colorize(np.ones((1, 1)), "jet")[0, 0]).all()  # constant stays
    ramp = np.tile(np.linspace(0, 1, 7, dtype=np.float32), (7, 1))  # left dark, right bright
    gray = np.asarray(r.overlay(image, ramp, "gray", opacity=1.0))[..., 0].astype(int)
    assert gray[:, 0].mean() < 40 and gray[:, -1].mean() > 215
    assert (np.diff(gray[24]) >= 0).all()


def test_overlay_rejects_bad_opacity():
    with pytest.raises(ValueError):
        r.overlay(_photo(), np.zeros((48, 64)), opacity=1.5)


def test_shared_scale_keeps_ratios():
    a = np.array([[0.0, 2.0], [4.0, -1.0]], dtype=np.float32)
    b = np.array([[1.0, 1.0], [0.5, 0.0]], dtype=np.float32)
    sa, sb = r.shared_scale([a, b])
    assert sa.dtype == np.float32 and sa.shape == a.shape
    assert sa.max() == pytest.approx(1.0) and sb.max() == pytest.approx(0.25)
    assert sa[0, 1] / sb[0, 0] == pytest.approx(2.0)  # 2 : 1 stays 2 : 1
    assert sa[1, 1] == 0.0  # negative evidence clipped
    assert a[1, 1] == -1.0  # inputs untouched


def test_shared_scale_all_zero_and_empty():
    out = r.shared_scale([np.zeros((3, 3)), -np.ones((3, 3))])
    assert all((m == 0).all() for m in out)
    assert r.shared_scale([]) == []


def _solid_tiles(rows, cols, size=224):
    colours = [[(10 + 40 * i, 20 + 30 * j, 200 - 20 * (i + j)) for j in range(cols)] for i in range(rows)]
    return colours, [[Image.new("RGB", (size, size), c) for c in row] for row in colours]


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 4)])
def test_grid_layout(rows, cols):
    colours, tiles = _solid_tiles(rows, cols)
    out = r.grid(
        tiles,
        [f"{i} class number {i}\np = 0.5" for i in range(rows)],
        ["input"] + [f"Method {j}" for j in range(1, cols)],
        title="a title",
        tile_captions=[[f"{j} s" for j in range(cols)] for _ in range(rows)],
    )
    assert out.mode == "RGB"
    assert cols * 224 < out.width < cols * 224 + 320 + 20 * cols
    assert rows * 224 < out.height < rows * 224 + 120 + 60 * rows
    pixels = np.asarray(out).reshape(-1, 3)
    values, counts = np.unique(pixels, axis=0, return_counts=True)
    count = {tuple(v): c for v, c in zip(values, counts)}
    for row in colours:  # every tile is pasted whole, once
        for c in row:
            assert count.get(c) == 224 * 224
    assert count[(255, 255, 255)] > 0  # white background
    assert np.asarray(out)[0, 0].tolist() == [255, 255, 255]


def test_grid_tiles_in_order_and_empty_cells():
    colours, tiles = _solid_tiles(2, 3, size=32)
    tiles[1][2] = None
    out = np.asarray(r.grid(tiles, ["a", "b"], ["x", "y", "z"]))
    where = {}
    for i, row in enumerate(colours):
        for j, c in enumerate(row):
            ys, xs = np.nonzero((out == c).all(axis=2))
            if tiles[i][j] is None:
                assert len(ys) == 0
            else:
                where[i, j] = (ys.min(), xs.min())
    assert where[0, 0][0] == where[0, 1][0] < where[1, 0][0]
    assert where[0, 0][1] == where[1, 0][1] < where[0, 1][1] < where[0, 2][1]


def test_grid_checks_labels():
    _, tiles = _solid_tiles(2, 2, size=16)
    with pytest.raises(ValueError):
        r.grid(tiles, ["only one"], ["a", "b"])
    with pytest.raises(ValueError):
        r.grid(tiles, ["a", "b"], ["a"])
    with pytest.raises(ValueError):
        r.grid([], [], [])


def test_colorbar():
    bar = np.asarray(r.colorbar("gray", 100, 10))
    assert bar.shape == (10, 100, 3)
    assert bar[0, 0, 0] == 0 and bar[0, -1, 0] == 255  # low to high, left to right
    tall = np.asarray(r.colorbar("gray", 10, 100))
    assert tall[-1, 0, 0] == 0 and tall[0, 0, 0] == 255  # low at the bottom


def test_font_is_truetype():
    from PIL import ImageFont

    assert isinstance(r.font(16), ImageFont.FreeTypeFont)
