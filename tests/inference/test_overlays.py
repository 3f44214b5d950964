import cv2
import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from volumetric_attention.data.volume_io import case_name, read_volume, write_label_volume
from volumetric_attention.inference.overlays import draw_slice_overlay, slices_that_matter

from .conftest import oblique_nifti


def test_overlay_pngs_and_montage_are_written(tmp_path, load_tool):
    ct = tmp_path / "case.v2.nii.gz"
    oblique_nifti(ct)
    hu, geometry = read_volume(ct)
    labels = np.zeros(hu.shape, np.uint8)
    labels[5:9, 10:30, 10:30] = 1  # liver
    labels[6:8, 15:20, 15:20] = 2  # lesion inside it
    pred = tmp_path / "pred.nii.gz"
    write_label_volume(labels, geometry, pred)
    out = tmp_path / "overlays"
    visualize = load_tool("visualize")
    assert visualize.main(["--volume", str(ct), "--prediction", str(pred), "--ground-truth", str(pred),
                           "--output", str(out), "--count", "3", "--scale", "1"]) == 0
    assert case_name(ct) == "case.v2"
    pngs = sorted(p.name for p in out.glob("*.png"))
    chosen = slices_that_matter(labels, labels, 3)
    assert pngs == sorted([f"case.v2_z{z:03d}.png" for z in chosen] + ["case.v2_montage.png"])
    assert set(chosen) <= {5, 6, 7, 8} and {6, 7} <= set(chosen)  # lesion slices first
    image = cv2.imread(str(out / "case.v2_z006.png"))[:, :, ::-1]  # RGB
    assert image.shape[:2] == hu.shape[1:]
    red = (image[..., 0] > image[..., 1] + 40) & (image[..., 0] > image[..., 2] + 40)
    green = (image[..., 1] > image[..., 0] + 40) & (image[..., 1] > image[..., 2] + 40)
    assert red.sum() > 50 and green.sum() > 5, "liver drawn red, lesion green"
    assert cv2.imread(str(out / "case.v2_montage.png")).size > 0


def test_label_map_on_another_grid_is_refused(tmp_path, load_tool):
    ct = tmp_path / "ct.nii.gz"
    oblique_nifti(ct)
    wrong = tmp_path / "wrong.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 6, 7), np.uint8)), str(wrong))
    assert load_tool("visualize").main(["--volume", str(ct), "--prediction", str(wrong), "--output",
                                        str(tmp_path / "o")]) == 1


def _band(mask, other, scale):
    """The pixels of ``mask`` that touch ``other`` (4-neighbours), as output pixels at ``scale``."""
    return np.kron(mask & ndimage.binary_dilation(other), np.ones((scale, scale), bool))


def test_ground_truth_outlines_include_holes():
    scale, square = 2, ndimage.generate_binary_structure(2, 2)
    gt = np.zeros((64, 64), np.uint8)
    gt[8:56, 8:56] = 1
    gt[20:30, 20:30] = 0  # a vessel: a hole in the liver
    gt[36:50, 36:50] = 2
    gt[40:46, 40:46] = 1  # a ring-shaped lesion (liver inside it)
    gt[12, 50] = 2  # a one-pixel lesion
    hu = np.zeros(gt.shape, np.float32)
    plain = draw_slice_overlay(hu, scale=scale).astype(int)
    image = draw_slice_overlay(hu, ground_truth=gt, scale=scale).astype(int)
    drawn = np.abs(image - plain).sum(axis=2) > 30

    liver, lesion = gt >= 1, gt == 2
    hole = ndimage.binary_fill_holes(liver) & ~liver
    ring_inside = ndimage.binary_fill_holes(lesion) & ~lesion
    dot = np.zeros(gt.shape, bool)
    dot[12, 50] = True
    boundaries = {  # output pixels along each boundary, and the channel (red 0, green 1) of its outline colour
        "liver outer": (_band(liver, ~liver & ~hole, scale), 0),
        "liver hole": (_band(liver, hole, scale), 0),
        "lesion outer": (_band(lesion & ~dot, ~lesion & ~ring_inside, scale), 1),
        "ring inside": (_band(lesion, ring_inside, scale), 1),
        "one-pixel lesion": (_band(dot, ~dot, scale), 1),
    }
    near_drawn = ndimage.binary_dilation(drawn, square)
    for name, (band, channel) in boundaries.items():
        # the outline follows the whole boundary: nearly every boundary pixel has a drawn pixel at most 1 px away
        assert (near_drawn & band).sum() >= 0.8 * band.sum(), name
        colours = image[drawn & ndimage.binary_dilation(band, square)]
        assert len(colours) and (colours[:, channel] > colours[:, 1 - channel]).mean() > 0.9, name
    # and every drawn pixel lies on a boundary of the masks (within 1 px: the line is antialiased; 2 px around the
    # one-pixel lesion, whose square runs along the pixel's edges rather than through its centre)
    on_boundary = ndimage.binary_dilation(np.logical_or.reduce([b for b, _ in boundaries.values()]), square)
    on_boundary |= ndimage.binary_dilation(boundaries["one-pixel lesion"][0], square, iterations=2)
    assert drawn.sum() > 400 and not (drawn & ~on_boundary).any()


def _case(depth=100, size=32):
    return np.zeros((depth, size, size), np.uint8)


def test_chosen_slices_spread_over_the_lesion_z_extent():
    """A lesion on z 30..70 that grows with z: the picks cover its whole extent, not its 6 largest slices."""
    gt = _case()
    gt[20:80, 2:30, 2:30] = 1
    for z in range(30, 71):
        r = 2 + (z - 30) // 5  # 2..10 pixels: the largest slices are 65..70
        gt[z, 16 - r:16 + r, 16 - r:16 + r] = 2
    chosen = slices_that_matter(None, gt, 6)
    assert len(chosen) == 6 and all(30 <= z <= 70 for z in chosen)
    assert min(chosen) <= 37 and max(chosen) >= 64  # one pick per sixth of the 41 lesion slices
    assert min(np.diff(chosen)) >= 5


def test_a_disagreement_is_picked_in_its_part_of_the_lesion():
    gt = _case()
    gt[20:80, 2:30, 2:30] = 1
    gt[30:71, 10:20, 10:20] = 2
    pred = gt.copy()
    pred[45, 10:20, 10:20] = 1  # the lesion missed on one slice
    pred[62, 10:14, 10:20] = 1  # and partly on another
    chosen = slices_that_matter(pred, gt, 6)
    assert {45, 62} <= set(chosen)
    assert min(chosen) <= 37 and max(chosen) >= 64


def test_without_lesions_slices_spread_over_the_liver():
    gt = _case()
    for z in range(10, 51):  # the liver is largest around z 30
        r = 14 - abs(z - 30) // 2
        gt[z, 16 - r:16 + r, 16 - r:16 + r] = 1
    chosen = slices_that_matter(gt, gt, 6)
    assert len(chosen) == 6 and all(10 <= z <= 50 for z in chosen)
    assert min(chosen) <= 17 and max(chosen) >= 43 and min(np.diff(chosen)) >= 5


def test_few_lesion_slices_are_all_kept_and_the_liver_fills_the_rest():
    gt = _case()
    gt[10:61, 2:30, 2:30] = 1
    gt[40:42, 10:14, 10:14] = 2
    chosen = slices_that_matter(None, gt, 6)
    assert len(chosen) == 6 and {40, 41} <= set(chosen) and all(10 <= z <= 60 for z in chosen)
    assert min(chosen) <= 20 and max(chosen) >= 50
    # a volume with nothing labelled still gives slices, spread over it
    assert slices_that_matter(_case(12), None, 4) == [1, 4, 7, 10]
    assert slices_that_matter(_case(3), None, 6) == [0, 1, 2]
