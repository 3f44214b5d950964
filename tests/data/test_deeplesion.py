import csv
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog

from volumetric_attention.data.deeplesion import parse_dl_info

ROOT = Path(__file__).resolve().parents[2]
COLUMNS = ["File_name", "Patient_index", "Study_index", "Series_ID", "Key_slice_index", "Measurement_coordinates",
           "Bounding_boxes", "Lesion_diameters_Pixel_", "Normalized_lesion_location", "Coarse_lesion_type",
           "Possibly_noisy", "Slice_range", "Spacing_mm_px_", "Image_size", "DICOM_windows", "Patient_gender",
           "Patient_age", "Train_Val_Test"]


def _row(file_name, key, box, diam, ltype, noisy, rng, spacing, split):
    p, s, se = file_name.split("_")[:3]
    return [file_name, int(p), int(s), int(se), key, "1, 2, 3, 4", ", ".join(map(str, box)), f"{diam}, {diam / 2}",
            "0.5, 0.5, 0.5", ltype, noisy, f"{rng[0]}, {rng[1]}", f"{spacing}, {spacing}, {spacing * 0 + 5.0}",
            "32, 32", "-175, 275", "F", 50, split]


def _fixture(root):
    # series 000001_01_01: slices 1..6, 5 mm apart, slice k is uniform HU = 100*k
    series = root / "Images_png" / "000001_01_01"
    series.mkdir(parents=True)
    for k in range(1, 7):
        cv2.imwrite(str(series / f"{k:03d}.png"), np.full((32, 32), 100 * k + 32768, np.uint16))
    other = root / "Images_png" / "000002_01_01"
    other.mkdir(parents=True)
    for k in range(1, 4):
        cv2.imwrite(str(other / f"{k:03d}.png"), np.full((32, 32), 32768 - 50, np.uint16))
    rows = [
        _row("000001_01_01_003.png", 3, [4.5, 5.0, 12.0, 14.5], 10.0, 4, 0, (1, 6), 0.8, 1),
        _row("000001_01_01_003.png", 3, [20.0, 20.0, 26.0, 27.0], 6.0, 2, 0, (1, 6), 0.8, 1),  # 2nd lesion
        _row("000001_01_01_005.png", 5, [1.0, 1.0, 5.0, 5.0], 4.0, 5, 0, (1, 6), 0.8, 3),
        _row("000002_01_01_002.png", 2, [1.0, 1.0, 5.0, 5.0], 4.0, -1, 1, (1, 3), 0.7, 3),    # noisy test
        _row("000002_01_01_001.png", 1, [1.0, 1.0, 5.0, 5.0], 4.0, 3, 0, (1, 3), 0.7, 2),
    ]
    with open(root / "DL_info.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        w.writerows(rows)


def test_deeplesion_prepare_and_datasets(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    src = tmp_path / "DeepLesion"
    _fixture(src)
    cases = parse_dl_info(src / "DL_info.csv")
    assert len(cases["000001_01_01_003"]["lesions"]) == 2 and cases["000002_01_01_002"]["noisy"]

    spec = importlib.util.spec_from_file_location("_tool_prepare_deeplesion", ROOT / "tools" / "prepare_deeplesion.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    cache = tmp_path / "cache" / "deeplesion"
    args = ["--source", str(src), "--cache", str(cache), "--hu-window", "0", "1000", "--slice-spacing", "2.0",
            "--context-slices", "4"]
    assert tool.main(args) == 0

    train = DatasetCatalog.get("deeplesion_train")
    assert len(train) == 1 and train[0]["slice_index"] == 4 and train[0]["num_slices"] == 9
    anns = train[0]["annotations"]
    assert [a["bbox"] for a in anns] == [[4.5, 5.0, 12.0, 14.5], [20.0, 20.0, 26.0, 27.0]]
    assert [a["lesion_type"] for a in anns] == [4, 2] and all(a["category_id"] == 0 for a in anns)
    np.testing.assert_allclose([a["diameter_mm"] for a in anns], [8.0, 4.8])
    assert "segmentation" not in anns[0]
    assert {d["case_id"] for d in DatasetCatalog.get("deeplesion_val")} == {"000002_01_01_001"}
    assert {d["case_id"] for d in DatasetCatalog.get("deeplesion_test")} == {"000001_01_01_005"}  # noisy left out
    assert MetadataCatalog.get("deeplesion_test").thing_classes == ["lesion"]

    # neighbours: 2 mm steps over 5 mm slices -> positions 3 + 0.4*j, clamped to [1, 6], linear between files
    image = np.load(Path(train[0]["case_dir"]) / "image.npy").astype(np.float32)
    pos = np.clip(3 + 0.4 * np.arange(-4, 5), 1, 6)
    np.testing.assert_allclose(image[:, 0, 0], 100 * pos / 1000, atol=1e-3)
    meta = json.loads((Path(train[0]["case_dir"]) / "meta.json").read_text())
    assert meta["settings"]["hu_window"] == [0.0, 1000.0] and meta["split"] == "train"

    # a missing slice file is a failure naming the file; the other cases are still prepared
    (src / "Images_png" / "000002_01_01" / "002.png").unlink()
    (src / "Images_png" / "000002_01_01" / "001.png").write_bytes(b"not a png")
    assert tool.main(args + ["--slice-spacing", "2.5"]) == 1
    err = capsys.readouterr().err
    assert "FAILED 000002_01_01_001:" in err and "001.png" in err
    assert {d["case_id"] for d in DatasetCatalog.get("deeplesion_train")} == {"000001_01_01_003"}
