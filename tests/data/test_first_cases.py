"""DATASETS.TRAIN_FIRST_CASES: training (and the collapse check) on the first K cases of a split."""
import pytest

from volumetric_attention import get_va_cfg
from volumetric_attention.data import first_cases
from volumetric_attention.engine.trainer import run_dataset_dicts

from detectron2.data import DatasetCatalog


def _dicts(cases=("volume-2", "volume-0", "volume-10", "volume-1"), slices=3):
    """Cases in the split's order, which is neither the names' sorted nor their numeric order."""
    return [{"case_id": c, "slice_index": z, "image_id": 10 * i + z}
            for i, c in enumerate(cases) for z in range(slices)]


def test_first_cases_keeps_whole_cases_in_the_split_order():
    dicts = _dicts()
    kept = first_cases(dicts, 3, "split")
    assert [(d["case_id"], d["slice_index"]) for d in kept] == [
        (c, z) for c in ("volume-2", "volume-0", "volume-10") for z in range(3)]
    assert first_cases(dicts, 0, "split") == dicts and first_cases(dicts, 4, "split") == dicts


def test_too_few_cases_or_a_negative_count_stops_with_one_line_naming_the_dataset():
    with pytest.raises(ValueError, match=r"^DATASETS.TRAIN_FIRST_CASES 5: my_train has only 4 cases$"):
        first_cases(_dicts(), 5, "my_train")
    with pytest.raises(ValueError, match=r"^DATASETS.TRAIN_FIRST_CASES -1: must be 0 \(every case of my_train\) or "
                                         r"more$"):
        first_cases(_dicts(), -1, "my_train")


@pytest.fixture
def registered():
    names = ["_first_cases_train", "_first_cases_val"]
    for name in names:
        DatasetCatalog.register(name, _dicts)
    yield names
    for name in names:
        DatasetCatalog.remove(name)


def test_the_run_limits_its_training_datasets_only(registered):
    train, val = registered
    cfg = get_va_cfg(opts=["DATASETS.TRAIN", (train,), "DATASETS.TEST", (val,), "DATASETS.TRAIN_FIRST_CASES", 2])
    assert {d["case_id"] for d in run_dataset_dicts(cfg, train)} == {"volume-2", "volume-0"}
    assert len(run_dataset_dicts(cfg, val)) == 12  # held-out cases stay whole
    everything = get_va_cfg(opts=["DATASETS.TRAIN", (train,), "DATASETS.TEST", (val,)])
    assert len(run_dataset_dicts(everything, train)) == 12
