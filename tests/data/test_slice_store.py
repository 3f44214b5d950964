"""DeepLesion's slice store: lossless source slices shared per series, interpolated on read exactly as before."""
import json
import os

import _deeplesion_fakes as fakes
import numpy as np
import pytest

from volumetric_attention.data.bag import PIXEL_SCALE, make_bag_array
from volumetric_attention.data.cache import CacheError, load_case, make_settings, write_case, write_index
from volumetric_attention.data.mapper import VolumetricDatasetMapper
from volumetric_attention.data.slice_store import decode_slice, encode_slice, read_slice

from detectron2.data import DatasetCatalog

HU_WINDOW = (-1024.0, 3071.0)


@pytest.fixture
def prepare(load_tool):
    """``prepare(src, cache, *extra)``: tools/prepare_deeplesion.py with the settings of these tests."""
    tool = load_tool("prepare_deeplesion")
    return lambda src, cache, *extra: tool.main(["--source", str(src), "--cache", str(cache), "--hu-window",
                                                 *map(str, HU_WINDOW), "--slice-spacing", "2.0", "--context-slices",
                                                 "4", *extra])


def _expected_stack(values, key, slice_mm, context=4, spacing=2.0):
    """Independent reference: positions key + j * 2 mm / slice_mm (1-based files), clamped to the series, linear
    between the two nearest files in float64 HU, then the window."""
    hu = values.astype(np.float64) - 32768
    pos = np.clip(key + np.arange(-context, context + 1) * spacing / slice_mm, 1, len(values))
    out = []
    for p in pos:
        lo = int(np.floor(p + 1e-9))
        w = p - lo
        s = hu[lo - 1] if w < 1e-9 else (1 - w) * hu[lo - 1] + w * hu[lo]
        out.append(np.clip((s - HU_WINDOW[0]) / (HU_WINDOW[1] - HU_WINDOW[0]), 0, 1))
    return np.stack(out)


def test_slice_codec_is_lossless_and_rejects_damaged_files(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(0, 65536, size=(17, 23), dtype=np.uint16)
    values[0, :3] = (0, 65535, 32768)
    data = encode_slice(values)
    np.testing.assert_array_equal(decode_slice(data), values)
    with pytest.raises(ValueError, match=r"^bad\.slice: not a complete slice-store file; re-run tools/prepare_"):
        decode_slice(data[:-1], "bad.slice")
    with pytest.raises(ValueError, match=r"^m\.slice: truncated slice file"):
        decode_slice(data[:5], "m.slice")
    with pytest.raises(ValueError, match="slice-store file missing; re-run tools/prepare_deeplesion.py"):
        read_slice(tmp_path / "000.slice")


def test_series_store_is_shared_and_interpolated_exactly(tmp_path, monkeypatch, prepare):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    src, cache = tmp_path / "DeepLesion", tmp_path / "cache" / "deeplesion"
    thick = fakes.noisy_series(1, 12)  # 5 mm: positions key + 0.4 j
    thin = fakes.noisy_series(2, 20)   # 1.25 mm: positions key + 1.6 j
    fakes.write_series(src, "000001_01_01", thick)
    fakes.write_series(src, "000002_01_01", thin)
    fakes.write_csv(src, [
        fakes.row("000001_01_01_004.png", 4, [1, 1, 9, 9], rng=(1, 12), slice_mm=5.0),
        fakes.row("000001_01_01_006.png", 6, [2, 2, 9, 9], rng=(1, 12), slice_mm=5.0),   # overlaps key 4
        fakes.row("000001_01_01_012.png", 12, [2, 2, 9, 9], rng=(1, 12), slice_mm=5.0),  # clamped at the end
        fakes.row("000002_01_01_010.png", 10, [3, 3, 9, 9], rng=(1, 20), slice_mm=1.25),
    ])
    assert prepare(src, cache) == 0

    # each needed source slice is stored once per series, losslessly, and nothing else
    stored = sorted(os.listdir(cache / "series" / "000001_01_01"))
    # key 4: 2.4..5.6 -> files 2..6; key 6: 4.4..7.6 -> 4..8; key 12: 10.4..12 -> 10..12
    assert stored == [f"{i:03d}.slice" for i in (2, 3, 4, 5, 6, 7, 8, 10, 11, 12)]
    for name in stored:
        np.testing.assert_array_equal(read_slice(cache / "series" / "000001_01_01" / name), thick[int(name[:3]) - 1])
    assert not (cache / "000001_01_01_004" / "image.npy").exists()

    dicts = {d["case_id"]: d for d in DatasetCatalog.get("deeplesion_train")}
    for case_id, values, key, mm in (("000001_01_01_004", thick, 4, 5.0), ("000001_01_01_006", thick, 6, 5.0),
                                     ("000001_01_01_012", thick, 12, 5.0), ("000002_01_01_010", thin, 10, 1.25)):
        case = load_case(dicts[case_id]["case_dir"])
        expected = _expected_stack(values, key, mm)
        np.testing.assert_allclose(case.image[:], expected, atol=2e-7, rtol=0)
        np.testing.assert_allclose(case.image[np.array([8, 0, 8])], expected[[8, 0, 8]], atol=2e-7, rtol=0)
        np.testing.assert_allclose(case.image[4], expected[4], atol=2e-7, rtol=0)
        assert case.image.shape == (9, 32, 32) and dicts[case_id]["slice_index"] == 4

    # the mapper's bag is the bag of the reference stack (N = 3 reaches the whole 9-slice stack)
    mapper = VolumetricDatasetMapper(True, augmentations=[], bag_size=3, hu_window=HU_WINDOW, slice_spacing=2.0)
    out = mapper(dicts["000001_01_01_006"])
    reference = make_bag_array(_expected_stack(thick, 6, 5.0), 4, 3)
    np.testing.assert_allclose(out["image"].permute(1, 2, 0).numpy(), reference, atol=2e-7 * PIXEL_SCALE, rtol=0)
    assert out["instances"].gt_boxes.tensor.tolist() == [[2.0, 2.0, 9.0, 9.0]]


def test_old_float16_cache_is_refused_in_one_line_and_rebuilt(tmp_path, monkeypatch, prepare):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    src, cache = tmp_path / "DeepLesion", tmp_path / "cache" / "deeplesion"
    fakes.write_series(src, "000001_01_01", fakes.noisy_series(3, 6))
    fakes.write_csv(src, [fakes.row("000001_01_01_003.png", 3, [1, 1, 9, 9])])
    # a cache entry as the earlier prepare step wrote it: interpolated slices in a float16 image.npy
    old_settings = make_settings(HU_WINDOW, 2.0, context_slices=4)
    meta = {"source": {"series_dir": str(src / "Images_png" / "000001_01_01"), "key_slice": 3, "slice_range": [1, 6]},
            "settings": old_settings, "split": "train", "labeled": True, "num_slices": 9, "height": 32, "width": 32,
            "target_slices": [4], "classes": ["lesion"]}
    write_case(cache, "000001_01_01_003", {"image": np.zeros((9, 32, 32), np.float16)}, meta, {"4": []})
    write_index(cache, [{"case_id": "000001_01_01_003", "split": "train"}], old_settings)

    with pytest.raises(CacheError) as e:
        DatasetCatalog.get("deeplesion_train")
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"{cache / '000001_01_01_003'}: DeepLesion cache entry in an older format")
    assert "re-run tools/prepare_deeplesion.py" in message

    assert prepare(src, cache) == 0  # the settings differ (no slice store): the entry is rebuilt
    (record,) = DatasetCatalog.get("deeplesion_train")
    assert not (cache / "000001_01_01_003" / "image.npy").exists()
    assert json.loads((cache / "000001_01_01_003" / "meta.json").read_text())["slice_store"]["series"] == \
        "000001_01_01"
    assert load_case(record["case_dir"]).image[:].shape == (9, 32, 32)
