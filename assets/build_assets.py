"""Rebuild the example images in this folder from their (public domain / CC0) sources.

Not used at runtime. Sources: matplotlib's bundled sample data and scikit-image's bundled data
folder (install scikit-image anywhere, e.g. a scratch virtualenv, and pass its data folder):

    python assets/build_assets.py /path/to/site-packages/skimage/data

See LICENSES.md for each file's origin and licence.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib
from PIL import Image

HERE = Path(__file__).resolve().parent
MAX_SIDE = 640
QUALITY = 90


def _shrink(img: Image.Image, max_side: int = MAX_SIDE) -> Image.Image:
    img = img.convert("RGB")
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.LANCZOS)
    return img


def _save(img: Image.Image, name: str) -> None:
    _shrink(img).save(HERE / name, "JPEG", quality=QUALITY, optimize=True)


def _composite(left: Image.Image, right: Image.Image, cell: int = 320) -> Image.Image:
    """Two square photos side by side, centred on a square light-grey canvas.

    Square on purpose: classifiers centre-crop their input, so a wide strip would lose both
    objects' outer halves; here the centre crop keeps nearly all of each photo.
    """
    out = Image.new("RGB", (2 * cell, 2 * cell), (236, 236, 236))
    for i, part in enumerate((left, right)):
        out.paste(part.convert("RGB").resize((cell, cell), Image.LANCZOS), (i * cell, cell // 2))
    return out


def main(skimage_data: Path) -> None:
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    _save(Image.open(mpl / "grace_hopper.jpg"), "grace_hopper.jpg")
    cat = Image.open(skimage_data / "chelsea.png")
    coffee = Image.open(skimage_data / "coffee.png")
    _save(cat, "cat.jpg")
    _save(coffee, "coffee.jpg")
    _save(Image.open(skimage_data / "rocket.jpg"), "rocket.jpg")
    _save(Image.open(skimage_data / "astronaut.png"), "astronaut.jpg")
    # Square crops around the cat's face and the cup, then side by side.
    _save(_composite(cat.crop((50, 0, 350, 300)), coffee.crop((90, 0, 480, 390))), "cat_and_coffee.jpg")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(Path(sys.argv[1]))
