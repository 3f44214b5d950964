import json
import os

import numpy as np
import pytest
import SimpleITK as sitk

from volumetric_attention.data.cache import CacheError, load_case
from volumetric_attention.data.lits import assign_splits, discover_lits_cases

from detectron2.data import DatasetCatalog, MetadataCatalog


def _write(path, array, spacing=(1.0, 1.0, 2.0), origin=(0.0, 0.0, 0.0), direction=None):
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction:
        img.SetDirection(direction)
    sitk.WriteImage(img, str(path))


def _case(folder, k, z=8, seg=True, **seg_kw):
    hu = np.full((z, 16, 16), -100, np.int16)
    hu[:, 3:13, 3:13] = 60
    label = np.zeros((z, 16, 16), np.uint8)
    label[1:z - 1, 3:13, 3:13] = 1
    label[3:5, 5:8, 5:8] = 2
    _write(folder / f"volume-{k}.nii.gz", hu)
    if seg:
        _write(folder / f"segmentation-{k}.nii.gz", seg_kw.pop("label", label), **seg_kw)
    return hu, label


def test_discovery_official_and_msd_and_split(tmp_path):
    (tmp_path / "Training Batch 1").mkdir()
    (tmp_path / "Training Batch 2").mkdir()
    for k in range(8):
        batch = tmp_path / f"Training Batch {1 + k // 4}"
        (batch / f"volume-{k}.nii").touch()
        (batch / f"segmentation-{k}.nii").touch()
    (tmp_path / "test-volume-0.nii").touch()
    msd = tmp_path / "Task03_Liver"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (msd / sub).mkdir(parents=True)
    for k in (0, 1, 2, 3):
        (msd / "imagesTr" / f"liver_{k}.nii.gz").touch()
        (msd / "labelsTr" / f"liver_{k}.nii.gz").touch()
    (msd / "imagesTs" / "liver_140.nii.gz").touch()
    (msd / "._liver_5.nii.gz").touch()  # hidden files are ignored

    cases = discover_lits_cases(tmp_path)
    by_id = {c["case_id"]: c for c in cases}
    assert set(by_id) == {f"volume-{k}" for k in range(8)} | {"test-volume-0"} | {f"liver_{k}" for k in range(4)} \
        | {"liver_140"}
    assert by_id["volume-5"]["label"].endswith("segmentation-5.nii") and by_id["volume-5"]["labeled"]
    assert by_id["liver_2"]["label"].endswith(os.path.join("labelsTr", "liver_2.nii.gz"))
    assert not by_id["liver_140"]["labeled"] and not by_id["test-volume-0"]["labeled"]

    splits = assign_splits(cases)
    labeled = [c for c in cases if c["labeled"]]
    n_val = sum(splits[c["case_id"]] == "val" for c in labeled)
    assert n_val == len(labeled) // 4 and len(labeled) == 12
    assert splits["test-volume-0"] == splits["liver_140"] == "test"
    assert assign_splits(list(reversed(cases))) == splits  # order of discovery does not matter


def test_prepare_bad_inputs_reported_others_prepared(tmp_path, capsys, load_tool):
    src = tmp_path / "LiTS"
    src.mkdir()
    _case(src, 0)
    _case(src, 1, seg=False)                                              # missing segmentation
    _case(src, 2, label=np.zeros((8, 16, 15), np.uint8))                  # size mismatch
    _case(src, 3, spacing=(1.0, 1.0, 3.0))                                # spacing mismatch
    _case(src, 4, origin=(0.0, 5.0, 0.0))                                 # origin mismatch
    _case(src, 5, direction=(1, 0, 0, 0, -1, 0, 0, 0, -1))                # direction mismatch
    _case(src, 6, label=np.full((8, 16, 16), 3, np.uint8))                # label outside {0,1,2}
    nan = np.zeros((8, 16, 16), np.float32)
    nan[2, 2, 2] = np.nan
    _case(src, 7)
    _write(src / "volume-7.nii.gz", nan)                                  # NaN voxels
    _case(src, 8)
    data = (src / "volume-8.nii.gz").read_bytes()
    (src / "volume-8.nii.gz").write_bytes(data[: len(data) // 3])         # truncated
    _case(src, 9)
    _write(src / "volume-9.nii.gz", np.zeros((16, 16), np.int16))         # 2D image
    _case(src, 10, z=2)                                                   # too few slices
    cache = tmp_path / "cache"

    rc = load_tool("prepare_lits").main(["--source", str(src), "--cache", str(cache), "--workers", "2"])
    err = capsys.readouterr().err
    assert rc == 1
    failed = {line.split(":")[0][len("FAILED "):]: line for line in err.splitlines() if line.startswith("FAILED ")}
    assert set(failed) == {f"volume-{k}" for k in range(1, 11)}, err
    expect = {1: ("volume-1.nii.gz", "missing segmentation"), 2: ("segmentation-2", "size"),
              3: ("segmentation-3", "spacing"), 4: ("segmentation-4", "origin"), 5: ("segmentation-5", "direction"),
              6: ("segmentation-6", "labels outside"), 7: ("volume-7", "NaN"), 8: ("volume-8", "truncated"),
              9: ("volume-9", "2D"), 10: ("volume-10", "slices")}
    for k, (file_part, reason) in expect.items():
        assert file_part in failed[f"volume-{k}"] and reason in failed[f"volume-{k}"], failed[f"volume-{k}"]
    assert "failed cases:" in err and "volume-10" in err.splitlines()[-1]
    index = json.loads((cache / "index.json").read_text())
    assert [c["case_id"] for c in index["cases"]] == ["volume-0"]
    case = load_case(cache / "volume-0")
    assert case.image.dtype == np.float16 and case.label_original.shape == (8, 16, 16)


def _meta_mtime(cache, case_id):
    return os.stat(cache / case_id / "meta.json").st_mtime_ns


def test_idempotent_rebuild_on_other_settings_and_no_half_written_reads(tmp_path, monkeypatch, capsys, load_tool):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    src = tmp_path / "LiTS"
    src.mkdir()
    for k in range(4):
        _case(src, k, z=10 + k)
    (src / "test-volume-0.nii.gz").write_bytes((src / "volume-0.nii.gz").read_bytes())
    cache = tmp_path / "cache" / "lits"
    prepare = load_tool("prepare_lits").main
    assert prepare(["--source", str(src), "--cache", str(cache), "--slice-spacing", "1.0"]) == 0
    first = {k: _meta_mtime(cache, f"volume-{k}") for k in range(4)}

    # an interrupted run leaves a temp entry behind; nothing reads it and the next run removes it
    stale = cache / ".tmp-volume-1-deadbeef"
    stale.mkdir()
    (stale / "image.npy").write_bytes(b"garbage")
    with pytest.raises(CacheError, match="half-written"):
        load_case(stale)
    # a case folder without meta.json (not complete) is an error, never read, and is redone
    os.remove(cache / "volume-2" / "meta.json")
    with pytest.raises(CacheError, match="incomplete"):
        load_case(cache / "volume-2")

    assert prepare(["--source", str(src), "--cache", str(cache), "--slice-spacing", "1.0"]) == 0
    assert "3 prepared" not in capsys.readouterr().err
    assert not stale.exists()
    assert _meta_mtime(cache, "volume-0") == first[0] and _meta_mtime(cache, "volume-3") == first[3]
    assert _meta_mtime(cache, "volume-2") != first[2]

    dicts = DatasetCatalog.get("lits_train")
    assert {d["case_id"] for d in dicts} == {"volume-0", "volume-1", "volume-2"}
    assert {d["case_id"] for d in DatasetCatalog.get("lits_val")} == {"volume-3"}
    test = DatasetCatalog.get("lits_test")
    assert {d["case_id"] for d in test} == {"test-volume-0"} and "annotations" not in test[0]
    assert len({d["image_id"] for d in dicts}) == len(dicts)
    d = next(x for x in dicts if x["case_id"] == "volume-1" and x["slice_index"] == 6)
    assert d["num_slices"] == 11 * 2 - 1 and d["height"] == 16 and d["file_name"].endswith("image.npy")
    assert [a["category_id"] for a in d["annotations"]] == [0, 1]
    assert MetadataCatalog.get("lits_train").cache_root == str(tmp_path / "cache" / "lits")

    # other preprocessing settings: every case is rebuilt, not reused
    assert prepare(["--source", str(src), "--cache", str(cache), "--slice-spacing", "1.0",
                    "--hu-window", "-100", "200"]) == 0
    assert all(_meta_mtime(cache, f"volume-{k}") != first[k] for k in (0, 3))
    meta = json.loads((cache / "volume-0" / "meta.json").read_text())
    assert meta["settings"]["hu_window"] == [-100.0, 200.0]
    assert json.loads((cache / "index.json").read_text())["settings"]["hu_window"] == [-100.0, 200.0]


def test_missing_cache_tells_what_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    with pytest.raises(CacheError, match="prepare_deeplesion.py"):
        DatasetCatalog.get("deeplesion_train")
    with pytest.raises(CacheError, match="make_phantoms.py"):
        DatasetCatalog.get("phantom_val")


def test_both_layouts_prepared_through_symlinks_and_cycles(tmp_path, capsys, load_tool):
    """Data kept elsewhere and linked into the source folder is found; link cycles neither hang nor duplicate."""
    store = tmp_path / "shared storage"
    official = store / "lits batch"
    official.mkdir(parents=True)
    _case(official, 0)
    _case(official, 1)
    msd = store / "msd" / "Task03_Liver"
    (msd / "imagesTr").mkdir(parents=True)
    labels = store / "msd labels v2"  # labelsTr is itself a link to a folder of another name
    labels.mkdir()
    hu, label = _case(tmp_path, 99)
    _write(msd / "imagesTr" / "liver_0.nii.gz", hu)
    _write(labels / "liver_0.nii.gz", label)
    os.symlink(labels, msd / "labelsTr")
    os.symlink(official, official / "loop")  # a cycle inside the linked data

    src = tmp_path / "datasets" / "LiTS"
    src.mkdir(parents=True)
    os.symlink(official, src / "Training Batch 1")
    os.symlink(msd, src / "Task03_Liver")
    os.symlink(src, src / "again")  # a cycle back to the source root
    os.symlink(official, src / "same batch twice")

    cases = discover_lits_cases(src)
    assert [(c["case_id"], os.path.relpath(c["image"], src), c["label"] and os.path.relpath(c["label"], src))
            for c in cases] == [
        ("liver_0", os.path.join("Task03_Liver", "imagesTr", "liver_0.nii.gz"),
         os.path.join("Task03_Liver", "labelsTr", "liver_0.nii.gz")),
        ("volume-0", os.path.join("Training Batch 1", "volume-0.nii.gz"),
         os.path.join("Training Batch 1", "segmentation-0.nii.gz")),
        ("volume-1", os.path.join("Training Batch 1", "volume-1.nii.gz"),
         os.path.join("Training Batch 1", "segmentation-1.nii.gz")),
    ]
    cache = tmp_path / "cache"
    assert load_tool("prepare_lits").main(["--source", str(src), "--cache", str(cache)]) == 0
    assert "3 prepared, 0 already done, 0 failed" in capsys.readouterr().err
    assert load_case(cache / "liver_0").label_original.shape == (8, 16, 16)
