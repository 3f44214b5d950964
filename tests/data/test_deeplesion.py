import json
import os
from pathlib import Path

import _deeplesion_fakes as fakes
import numpy as np
import pytest

from volumetric_attention.data.cache import load_case
from volumetric_attention.data.deeplesion import parse_dl_info

from detectron2.data import DatasetCatalog, MetadataCatalog


def _fixture(root):
    # series 000001_01_01: slices 1..6, 5 mm apart, slice k is uniform HU = 100*k
    fakes.write_series(root, "000001_01_01", [np.full((32, 32), 100 * k + 32768, np.uint16) for k in range(1, 7)])
    fakes.write_series(root, "000002_01_01", [np.full((32, 32), 32768 - 50, np.uint16)] * 3)
    fakes.write_csv(root, [
        fakes.row("000001_01_01_003.png", 3, [4.5, 5.0, 12.0, 14.5], 10.0, 4, 0, (1, 6), 0.8, 1),
        fakes.row("000001_01_01_003.png", 3, [20.0, 20.0, 26.0, 27.0], 6.0, 2, 0, (1, 6), 0.8, 1),  # 2nd lesion
        fakes.row("000001_01_01_005.png", 5, [1.0, 1.0, 5.0, 5.0], 4.0, 5, 0, (1, 6), 0.8, 3),
        fakes.row("000002_01_01_002.png", 2, [1.0, 1.0, 5.0, 5.0], 4.0, -1, 1, (1, 3), 0.7, 3),    # noisy test
        fakes.row("000002_01_01_001.png", 1, [1.0, 1.0, 5.0, 5.0], 4.0, 3, 0, (1, 3), 0.7, 2),
    ])


@pytest.fixture
def tool(load_tool):
    return load_tool("prepare_deeplesion")


def test_deeplesion_prepare_and_datasets(tmp_path, monkeypatch, capsys, tool):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    src = tmp_path / "DeepLesion"
    _fixture(src)
    cases, row_errors = parse_dl_info(src / "DL_info.csv")
    assert not row_errors
    assert len(cases["000001_01_01_003"]["lesions"]) == 2 and cases["000002_01_01_002"]["noisy"]

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
    image = load_case(train[0]["case_dir"]).image[:]
    pos = np.clip(3 + 0.4 * np.arange(-4, 5), 1, 6)
    assert image.shape == (9, 32, 32) and image.dtype == np.float32
    np.testing.assert_allclose(image[:, 0, 0], 100 * pos / 1000, atol=1e-6)
    meta = json.loads((Path(train[0]["case_dir"]) / "meta.json").read_text())
    assert meta["settings"]["hu_window"] == [0.0, 1000.0] and meta["split"] == "train"

    # a missing slice file is a failure naming the file; the other cases are still prepared
    (src / "Images_png" / "000002_01_01" / "002.png").unlink()
    (src / "Images_png" / "000002_01_01" / "001.png").write_bytes(b"not a png")
    assert tool.main(args + ["--slice-spacing", "2.5"]) == 1
    err = capsys.readouterr().err
    assert "FAILED 000002_01_01_001:" in err and "001.png" in err
    assert {d["case_id"] for d in DatasetCatalog.get("deeplesion_train")} == {"000001_01_01_003"}


def test_bad_rows_are_reported_one_line_each_and_skipped(tmp_path, monkeypatch, capsys, tool):
    """A malformed, 3-number, empty, inverted or zero-width box fails its row only: the key slice keeps its valid
    rows, the other key slices are prepared, and the tool lists every failure and exits 1."""
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    src = tmp_path / "DeepLesion"
    fakes.write_series(src, "000001_01_01", [np.full((32, 32), 100 * k + 32768, np.uint16) for k in range(1, 7)])
    fakes.write_series(src, "000002_01_01", [np.full((32, 32), 32768 - 50, np.uint16)] * 3)
    key3, key5 = "000001_01_01_003.png", "000001_01_01_005.png"
    fakes.write_csv(src, [
        fakes.row(key3, 3, [4.5, 5.0, 12.0, 14.5]),                       # line 2: valid
        fakes.row(key3, 3, "4.5, 5.0, abc, 14.5"),                        # line 3: malformed
        fakes.row(key3, 3, "4.5, 5.0, 12.0"),                             # line 4: 3 numbers
        fakes.row(key3, 3, ""),                                           # line 5: empty value
        fakes.row(key3, 3, [12.0, 5.0, 4.5, 14.5]),                       # line 6: inverted (x2 < x1)
        fakes.row(key5, 5, [5.0, 1.0, 5.0, 5.0], split=3),                # line 7: zero width
        fakes.row("000002_01_01_001.png", 1, [1.0, 1.0, 5.0, 5.0], rng=(1, 3), split=2),  # line 8: valid
    ])
    csv_path = src / "DL_info.csv"
    cache = tmp_path / "cache" / "deeplesion"
    code = tool.main(["--source", str(src), "--cache", str(cache), "--slice-spacing", "2.0",
                         "--context-slices", "2"])
    err = capsys.readouterr().err
    assert code == 1
    failed = [line for line in err.splitlines() if line.startswith("FAILED ")]
    assert failed == [
        f"FAILED DL_info.csv line 3: {csv_path}: line 3, column Bounding_boxes: not a list of numbers: "
        "'4.5, 5.0, abc, 14.5'",
        f"FAILED DL_info.csv line 4: {csv_path}: line 4, column Bounding_boxes: expected 4 numbers, got 3: "
        "'4.5, 5.0, 12.0'",
        f"FAILED DL_info.csv line 5: {csv_path}: line 5, column Bounding_boxes: expected 4 numbers, got 0: ''",
        f"FAILED DL_info.csv line 6: {csv_path}: line 6, column Bounding_boxes: inverted box (x1, y1, x2, y2) = "
        "(12, 5, 4.5, 14.5); x2 > x1 and y2 > y1 are required",
        f"FAILED DL_info.csv line 7: {csv_path}: line 7, column Bounding_boxes: empty box (x1, y1, x2, y2) = "
        "(5, 1, 5, 5); x2 > x1 and y2 > y1 are required",
    ]
    assert "2 prepared, 0 already done, 5 failed" in err
    assert "failed cases: DL_info.csv line 3, DL_info.csv line 4" in err
    train = DatasetCatalog.get("deeplesion_train")
    assert [d["case_id"] for d in train] == ["000001_01_01_003"]
    assert [a["bbox"] for a in train[0]["annotations"]] == [[4.5, 5.0, 12.0, 14.5]]
    assert [d["case_id"] for d in DatasetCatalog.get("deeplesion_val")] == ["000002_01_01_001"]
    assert DatasetCatalog.get("deeplesion_test") == []
    index = json.loads((cache / "index.json").read_text())
    assert [r["row"] for r in index["bad_rows"]] == [f"DL_info.csv line {n}" for n in range(3, 8)]


@pytest.mark.parametrize("column,value,reason", [
    ("Slice_range", "7, 1", "key slice 3 outside [7, 1]"),
    ("Spacing_mm_px_", "0.8, 0.8", "expected 3 numbers, got 2: '0.8, 0.8'"),
    ("Train_Val_Test", "4", "expected 1 (train), 2 (val) or 3 (test), got 4"),
    ("File_name", "scan.png", "expected <patient>_<study>_<series>_<slice>.png, got 'scan.png'"),
])
def test_other_bad_columns_name_line_and_column(tmp_path, column, value, reason):
    good = fakes.row("000001_01_01_003.png", 3, [4.5, 5.0, 12.0, 14.5])
    bad = list(good)
    bad[fakes.COLUMNS.index(column)] = value
    fakes.write_csv(tmp_path, [good, bad])
    cases, errors = parse_dl_info(tmp_path / "DL_info.csv")
    assert errors == [(3, f"{tmp_path / 'DL_info.csv'}: line 3, column {column}: {reason}")]
    assert list(cases) == ["000001_01_01_003"] and len(cases["000001_01_01_003"]["lesions"]) == 1


def test_missing_column_refuses_the_file(tmp_path, capsys, tool):
    (tmp_path / "DL_info.csv").write_text("File_name,Bounding_boxes\n000001_01_01_003.png,\"1, 2, 3, 4\"\n")
    code = tool.main(["--source", str(tmp_path), "--cache", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: {tmp_path / 'DL_info.csv'}: missing column(s) Lesion_diameters_Pixel_, ")


def test_prepared_through_symlinks_and_a_cycle(tmp_path, monkeypatch, capsys, tool):
    """$VA_DATASETS/DeepLesion as a link to shared storage, Images_png and a series folder as links, a link cycle
    inside Images_png: every key slice is found and prepared."""
    monkeypatch.setenv("VA_DATASETS", str(tmp_path / "datasets"))
    store = tmp_path / "shared storage"
    _fixture(store / "DeepLesion real")
    images = store / "DeepLesion real" / "Images_png"
    elsewhere = store / "series kept elsewhere"
    elsewhere.mkdir()
    (images / "000002_01_01").rename(elsewhere / "000002_01_01")
    os.symlink(elsewhere / "000002_01_01", images / "000002_01_01")
    os.symlink(images, images / "loop")
    pngs = store / "pngs"
    images.rename(pngs)
    os.symlink(pngs, images)
    (tmp_path / "datasets").mkdir()
    os.symlink(store / "DeepLesion real", tmp_path / "datasets" / "DeepLesion")

    assert tool.main(["--context-slices", "2"]) == 0  # the default --source $VA_DATASETS/DeepLesion
    assert "3 prepared, 0 already done, 0 failed" in capsys.readouterr().err
    assert [d["case_id"] for d in DatasetCatalog.get("deeplesion_val")] == ["000002_01_01_001"]
    assert len(DatasetCatalog.get("deeplesion_train")[0]["annotations"]) == 2
