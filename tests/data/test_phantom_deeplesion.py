"""The synthetic DeepLesion (data/phantom_deeplesion.py) against what tools/prepare_deeplesion.py expects: a tiny set
is written, prepared by the unchanged tool, and the registered deeplesion_* dataset dicts are checked against the
phantoms' lesion labels."""
import csv
import json
from collections import defaultdict

import cv2
import numpy as np
import pytest
from scipy import ndimage

from volumetric_attention.data.cache import load_case
from volumetric_attention.data.deeplesion import SPLITS
from volumetric_attention.data.phantom_deeplesion import (
    DL_INFO_COLUMNS,
    LOOKALIKES_FILE,
    MIN_DIAMETER_MM,
    recist_axes,
    write_deeplesion_phantoms,
)
from volumetric_attention.data.phantoms import make_phantom

from detectron2.data import DatasetCatalog

CONTEXT, SPACING = 4, 2.0  # the DeepLesion configs' CONTEXT_SLICES and SLICE_SPACING


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """5 series of 64 x 64 slices, 40-60 mm long; half of each split's key slices flagged noisy."""
    root = tmp_path_factory.mktemp("va_datasets")
    out = root / "DeepLesion"
    write_deeplesion_phantoms(out, num_series=5, seed=0, size=64, length_mm=(40.0, 60.0), noisy_share=0.5)
    with open(out / "DL_info.csv", newline="") as f:
        reader = csv.DictReader(f)
        header, rows = reader.fieldnames, list(reader)
    plans = json.loads((out / "phantoms.json").read_text())["series"]
    return root, out, header, rows, plans


def _numbers(text):
    return [float(v) for v in text.split(",")]


def _labels(plan):
    hu, labels, _ = make_phantom(plan["phantom_seed"], shape=plan["shape"], spacing=plan["spacing_zyx"],
                                 profile=plan["profile"])
    return hu, labels


def _label_boxes(labels_hw, value=2):
    """XYXY_ABS boxes ([x0, y0, x1 + 1, y1 + 1]) of the 4-connected cross-sections where ``labels_hw == value``."""
    cross, _ = ndimage.label(labels_hw == value)
    return [[float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)]
            for ys, xs in ndimage.find_objects(cross)]


def _key_slices(rows):
    """{File_name: [rows]}."""
    out = defaultdict(list)
    for r in rows:
        out[r["File_name"]].append(r)
    return out


def test_layout_columns_and_slices_follow_deeplesion(synthetic):
    _, out, header, rows, plans = synthetic
    assert header == DL_INFO_COLUMNS and len(header) == 18
    keys = _key_slices(rows)
    assert rows and max(len(v) for v in keys.values()) >= 2  # a key slice with several lesions
    for r in rows:
        series = f"{int(r['Patient_index']):06d}_{int(r['Study_index']):02d}_{int(r['Series_ID']):02d}"
        assert r["File_name"] == f"{series}_{int(r['Key_slice_index']):03d}.png"
        plan = plans[series]
        z_count = plan["shape"][0]
        assert _numbers(r["Slice_range"]) == [1, z_count]
        assert _numbers(r["Spacing_mm_px_"]) == pytest.approx(plan["spacing_zyx"][::-1], rel=1e-5)
        assert int(r["Train_Val_Test"]) == plan["split"]
        assert int(r["Coarse_lesion_type"]) == (-1 if plan["split"] == 1 else 4)
        assert len(_numbers(r["Measurement_coordinates"])) == 8 and len(_numbers(r["DICOM_windows"])) == 2
        long_px, short_px = _numbers(r["Lesion_diameters_Pixel_"])
        assert long_px * plan["spacing_zyx"][2] >= MIN_DIAMETER_MM and 0 <= short_px <= long_px
        # the series holds more than the slices a key slice's context reaches
        assert z_count * plan["spacing_zyx"][0] > 2 * CONTEXT * SPACING
    assert len({p["spacing_zyx"][0] for p in plans.values()}) > 1  # slice intervals vary by series
    assert {p["split"] for p in plans.values()} == {1, 2, 3}

    # slices: 16-bit PNGs numbered from 001, HU + 32768, every slice of the series
    series, plan = next(iter(plans.items()))
    hu, _ = _labels(plan)
    files = sorted(p.name for p in (out / "Images_png" / series).iterdir())
    assert files == [f"{k:03d}.png" for k in range(1, plan["shape"][0] + 1)]
    png = cv2.imread(str(out / "Images_png" / series / "002.png"), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint16 and png.shape == hu.shape[1:]
    np.testing.assert_array_equal(png.astype(np.int64) - 32768, np.round(hu[1]).astype(np.int64))


def test_boxes_are_the_lesion_labels_and_noisy_ones_are_off(synthetic):
    _, _, _, rows, plans = synthetic
    labels = {s: _labels(p)[1] for s, p in plans.items()}
    noisy = 0
    for name, key_rows in _key_slices(rows).items():
        series, key = name[:-8], int(name[-7:-4])
        truth = _label_boxes(labels[series][key - 1])
        boxes = [_numbers(r["Bounding_boxes"]) for r in key_rows]
        if key_rows[0]["Possibly_noisy"] == "1":
            # each edge moved by up to 20 % of the box's size (small boxes may round back onto the label's)
            size = np.array([[t[2] - t[0], t[3] - t[1]] * 2 for t in truth])
            for b in boxes:
                assert (np.abs(np.array(truth) - b) <= 0.2 * size + 0.5).all(axis=1).any()
            noisy += sum(b not in truth for b in boxes)
            continue
        # every annotated box is a lesion cross-section; cross-sections left out are below the minimum diameter
        assert all(b in truth for b in boxes)
        spacing_x = plans[series]["spacing_zyx"][2]
        for t in truth:
            if t not in boxes:
                x0, y0, x1, y1 = (int(v) for v in t)
                mask = np.zeros(labels[series].shape[1:], bool)
                mask[y0:y1, x0:x1] = (labels[series][key - 1] == 2)[y0:y1, x0:x1]
                long_axis, _ = recist_axes(mask)
                assert np.linalg.norm(long_axis[1] - long_axis[0]) * spacing_x < MIN_DIAMETER_MM
    assert noisy >= 2  # half of each split's key slices are flagged; most of their boxes are off


def test_lookalikes_are_the_vessel_sections_of_each_key_slice(synthetic):
    _, out, _, rows, plans = synthetic
    lookalikes = json.loads((out / LOOKALIKES_FILE).read_text())
    keys = _key_slices(rows)
    assert set(lookalikes) == set(keys)
    sections = 0
    for name, boxes in lookalikes.items():
        series, key = name[:-8], int(name[-7:-4])
        plan = plans[series]
        _, labels, _, vessels = make_phantom(plan["phantom_seed"], shape=plan["shape"], spacing=plan["spacing_zyx"],
                                             profile=plan["profile"], with_vessels=True)
        assert boxes == _label_boxes(vessels[key - 1].astype(np.uint8), value=1)
        lesion_boxes = _label_boxes(labels[key - 1])
        assert not any(b in lesion_boxes for b in boxes)
        sections += len(boxes)
    assert sections >= len(lookalikes)  # vessels run through the liver: about one section per key slice or more


def test_recist_axes_of_an_ellipse():
    mask = np.zeros((40, 50), np.uint8)
    cv2.ellipse(mask, (25, 20), (15, 6), 0, 0, 360, 1, -1)  # axes 31 and 13 px wide, long axis along x
    long_axis, short_axis = recist_axes(mask.astype(bool))
    assert np.linalg.norm(long_axis[1] - long_axis[0]) == pytest.approx(30.0, abs=0.5)
    assert np.linalg.norm(short_axis[1] - short_axis[0]) == pytest.approx(12.0, abs=1.0)
    assert abs(np.dot(long_axis[1] - long_axis[0], short_axis[1] - short_axis[0])) < 0.15 * 30 * 12


def test_prepared_by_the_unchanged_tool_into_deeplesion_datasets(synthetic, load_tool, monkeypatch):
    root, out, _, rows, plans = synthetic
    monkeypatch.setenv("VA_DATASETS", str(root))
    args = ["--source", str(out), "--hu-window", "-1024", "3071", "--slice-spacing", str(SPACING),
            "--context-slices", str(CONTEXT)]
    assert load_tool("prepare_deeplesion").main(args) == 0

    keys = _key_slices(rows)
    for split_id, split in SPLITS.items():
        expected = {n[:-4] for n, r in keys.items() if int(r[0]["Train_Val_Test"]) == split_id
                    and not (split == "test" and r[0]["Possibly_noisy"] == "1")}
        dicts = DatasetCatalog.get(f"deeplesion_{split}")
        assert expected and {d["case_id"] for d in dicts} == expected, split
        for d in dicts:
            key_rows = keys[d["case_id"] + ".png"]
            assert d["slice_index"] == CONTEXT and d["num_slices"] == 2 * CONTEXT + 1
            assert [a["bbox"] for a in d["annotations"]] == [_numbers(r["Bounding_boxes"]) for r in key_rows]
            meta = load_case(d["case_dir"]).meta
            plan = plans[d["case_id"][:-4]]
            assert meta["original_spacing"] == pytest.approx(plan["spacing_zyx"], rel=1e-5)
            assert meta["spacing"][0] == SPACING and meta["noisy"] == (key_rows[0]["Possibly_noisy"] == "1")
    # the official convention: noisy key slices of the test split are not tested
    noisy_test = {n[:-4] for n, r in keys.items() if r[0]["Train_Val_Test"] == "3" and r[0]["Possibly_noisy"] == "1"}
    assert noisy_test and not noisy_test & {d["case_id"] for d in DatasetCatalog.get("deeplesion_test")}
    assert any(meta_noisy for meta_noisy in (load_case(d["case_dir"]).meta["noisy"]
                                             for d in DatasetCatalog.get("deeplesion_train")))


def test_make_phantoms_deeplesion_layout_writes_prepares_and_guards(tmp_path, load_tool, monkeypatch):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    tool = load_tool("make_phantoms")
    small = ["--layout", "deeplesion", "--num-cases", "3", "--size", "48", "--slices", "12", "--slice-spacing", "2"]
    assert tool.main(small) == 0
    assert (tmp_path / "DeepLesion" / "DL_info.csv").is_file()
    assert DatasetCatalog.get("deeplesion_train")
    # prepared as tools/prepare_deeplesion.py prepares them: its defaults (the HU window), the same settings
    assert load_tool("prepare_deeplesion").main(["--source", str(tmp_path / "DeepLesion"), "--cache",
                                                 str(tmp_path / "by_tool"), "--slice-spacing", "2"]) == 0
    settings = [json.loads((tmp_path / c / "index.json").read_text())["settings"]
                for c in ("cache/deeplesion", "by_tool")]
    assert settings[0] == settings[1] and settings[0]["hu_window"] == [-1024.0, 3071.0]
    # a DL_info.csv it did not write (a real DeepLesion) is refused, and so is a cache of another source
    real = tmp_path / "real"
    real.mkdir()
    (real / "DL_info.csv").write_text(",".join(DL_INFO_COLUMNS) + "\n")
    assert tool.main(small + ["--out", str(real), "--cache", str(tmp_path / "other_cache")]) == 2
    assert tool.main(small + ["--out", str(tmp_path / "other")]) == 2
    assert (real / "DL_info.csv").read_text() == ",".join(DL_INFO_COLUMNS) + "\n"
