"""The Grad-CAM paper's box rule, IoU, pointing game, mass inside, and the crop geometry."""

import numpy as np
import pytest
from PIL import Image

import models
from explainers import localisation as loc
from explainers.diagnose.geometry import CropGeometry


def test_box_of_the_largest_region_above_15_percent_of_the_peak():
    saliency = np.zeros((20, 30), dtype=np.float32)
    saliency[2:5, 3:6] = 1.0  # the peak, 9 pixels
    saliency[10:16, 12:25] = 0.2  # 78 pixels at 20 % of the peak: the largest region
    saliency[16, 0:30] = 0.1  # under 15 %: not kept; touches the region's last row
    assert loc.box_from_map(saliency) == (12, 10, 25, 16)
    assert loc.box_from_map(saliency, threshold=0.5) == (3, 2, 6, 5)
    assert loc.box_from_map(saliency, threshold=0.05) == (0, 10, 30, 17)  # the row joins the region
    assert loc.box_from_map(np.zeros((4, 4))) is None


def test_diagonal_pixels_connect_with_8_neighbours_only():
    mask = np.zeros((6, 6), dtype=bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # a diagonal of 3
    mask[4:6, 4] = True  # a column of 2
    assert loc.largest_component_box(mask, 8) == (0, 0, 3, 3)
    assert loc.largest_component_box(mask, 4) == (4, 4, 5, 6)


def test_regions_that_merge_below_are_one_region():
    mask = np.zeros((5, 7), dtype=bool)
    mask[0:3, 0] = mask[0:3, 6] = True  # two arms ...
    mask[3, 0:7] = True  # ... joined by a bar: a U of 13 pixels
    mask[4, 3] = True
    assert loc.largest_component_box(mask) == (0, 0, 7, 5)


def test_iou_and_area():
    assert loc.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert loc.iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert loc.iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert loc.area((3, 3, 1, 1)) == 0.0


def test_pointing_game_hit_with_tolerance():
    boxes = [(10, 10, 20, 20)]
    assert loc.points_inside((15, 15), boxes)
    assert loc.points_inside((34, 15), boxes, tolerance=15) and not loc.points_inside((36, 15), boxes, 15)
    assert not loc.points_inside((21, 15), boxes, tolerance=0)
    saliency = np.zeros((8, 8))
    saliency[5, 2] = 1
    assert loc.peak(saliency) == (2.5, 5.5)


def test_mass_inside_and_the_centre():
    saliency = np.ones((10, 10))
    saliency[0, 0] = 11.0  # 10 extra units in the top-left pixel: 110 in all
    mask = loc.region_mask([(0, 0, 5, 5)], (10, 10))
    assert mask.sum() == 25
    assert loc.mass_inside(saliency, mask) == pytest.approx(35 / 110)
    assert np.isnan(loc.mass_inside(np.zeros((3, 3)), mask[:3, :3]))
    centre = loc.centre_box((100, 200), 0.5)
    assert loc.area(centre) == pytest.approx(0.5 * 100 * 200)
    assert (centre[0] + centre[2]) / 2 == pytest.approx(100) and (centre[1] + centre[3]) / 2 == pytest.approx(50)
    assert loc.mass_inside(np.ones((100, 200)), loc.region_mask([centre], (100, 200))) == pytest.approx(0.5, abs=0.01)


@pytest.mark.parametrize("size", [(400, 300), (300, 400), (256, 256), (1000, 333)])
def test_boxes_map_between_the_photo_and_the_model_input(size):
    preprocessing = models.Preprocessing(256, (224, 224))
    width, height = size
    photo = np.zeros((height, width, 3), dtype=np.uint8)
    original = (width * 0.45, height * 0.35, width * 0.55, height * 0.6)  # inside every crop
    x0, y0, x1, y1 = (int(v) for v in original)
    photo[y0:y1, x0:x1] = 255
    crop = np.asarray(preprocessing.crop(Image.fromarray(photo)))[..., 0] > 127
    rows, columns = np.flatnonzero(crop.any(1)), np.flatnonzero(crop.any(0))
    seen = (columns[0], rows[0], columns[-1] + 1, rows[-1] + 1)  # the rectangle as the model sees it
    geometry = CropGeometry.of(preprocessing, size)
    back = geometry.to_original(seen)
    pixel = 1 / min(geometry.scale_x, geometry.scale_y)
    assert np.allclose(back, (x0, y0, x1, y1), atol=pixel + 1)
    assert np.allclose(geometry.to_input((x0, y0, x1, y1)), seen, atol=1.5)
    assert np.allclose(geometry.to_original(geometry.to_input(original)), original, atol=1e-6)
    assert geometry.point_to_original((0, 0)) == (geometry.left / geometry.scale_x, geometry.top / geometry.scale_y)
