"""Empty splits and caches of other settings are refused from index.json, before any model is built."""
import pytest

from volumetric_attention import get_va_cfg
from volumetric_attention.data.cache import make_settings, write_index
from volumetric_attention.data.dataset_checks import DatasetCheckError, check_datasets, datasets_of


@pytest.fixture
def lits_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VA_DATASETS", str(tmp_path))
    root = tmp_path / "cache" / "lits"

    def write(splits, slice_spacing=1.5):
        cases = [{"case_id": f"case{i}", "split": s} for i, s in enumerate(splits)]
        write_index(root, cases, make_settings((-200.0, 300.0), slice_spacing))
        return root / "index.json"

    return write


def _cfg(*opts):
    return get_va_cfg(None, ["DATASETS.TRAIN", "('lits_train',)", "DATASETS.TEST", "('lits_val',)",
                             "INPUT.CT.SLICE_SPACING", 1.5, *opts])


def test_prepared_datasets_pass(lits_cache):
    lits_cache(["train", "train", "train", "val"])
    check_datasets(_cfg(), datasets_of(_cfg()))


def test_empty_val_split_names_the_dataset_and_what_to_do(lits_cache):
    index = lits_cache(["train", "train", "train"])
    with pytest.raises(DatasetCheckError) as e:
        check_datasets(_cfg(), datasets_of(_cfg()))
    assert str(e.value) == (
        f"dataset lits_val (DATASETS.TEST) is empty: no case of split 'val' in {index} (cases per split: train 3); "
        "prepare more cases (every 4th labeled LiTS case goes to val) or set DATASETS.TEST to other datasets, e.g. "
        "DATASETS.TEST \"('lits_train',)\" or \"()\" to skip evaluation")
    # the suggested override is accepted and passes
    check_datasets(_cfg("DATASETS.TEST", "('lits_train',)"), datasets_of(_cfg("DATASETS.TEST", "('lits_train',)")))


def test_empty_train_split_is_refused_and_eval_only_skips_it(lits_cache):
    lits_cache(["val"])
    with pytest.raises(DatasetCheckError, match=r"^dataset lits_train \(DATASETS.TRAIN\) is empty: .* set "
                                                r"DATASETS.TRAIN to other datasets, e.g. DATASETS.TRAIN "
                                                r"\"\('lits_val',\)\"$"):
        check_datasets(_cfg(), datasets_of(_cfg()))
    check_datasets(_cfg(), datasets_of(_cfg(), train=False))  # --eval-only reads DATASETS.TEST only


@pytest.mark.parametrize("first", [-1, 4])
def test_train_first_cases_beyond_the_split_is_refused_before_the_model(lits_cache, first):
    index = lits_cache(["train", "train", "train", "val"])
    cfg = _cfg("DATASETS.TRAIN_FIRST_CASES", first)
    with pytest.raises(DatasetCheckError) as e:
        check_datasets(cfg, datasets_of(cfg))
    assert str(e.value) == (f"dataset lits_train (DATASETS.TRAIN): DATASETS.TRAIN_FIRST_CASES {first} must be "
                            f"between 0 (every case) and the 3 cases of split 'train' in {index}")
    for first in (0, 3):  # every case, and exactly the split's
        cfg = _cfg("DATASETS.TRAIN_FIRST_CASES", first)
        check_datasets(cfg, datasets_of(cfg))


def test_cache_of_other_settings_is_one_line_naming_both_values(lits_cache):
    index = lits_cache(["train", "val"], slice_spacing=1.5)
    cfg = _cfg("INPUT.CT.SLICE_SPACING", 2.0)
    with pytest.raises(DatasetCheckError) as e:
        check_datasets(cfg, datasets_of(cfg))
    message = str(e.value)
    assert "\n" not in message
    assert message.startswith(f"dataset lits_train (DATASETS.TRAIN): {index} was prepared with other settings than "
                              "INPUT.CT (slice_spacing cached 1.5 vs config 2.0); re-run python tools/prepare_lits.py")
    assert message.endswith("--config-file <this config>, or use the cache's settings: INPUT.CT.SLICE_SPACING 1.5")


def test_missing_cache_names_the_prepare_command(lits_cache, tmp_path):
    with pytest.raises(DatasetCheckError, match=r"^dataset lits_train \(DATASETS.TRAIN\): .*index.json: cache index "
                                                r"not found; run: python tools/prepare_lits.py --source"):
        check_datasets(_cfg(), datasets_of(_cfg()))


def test_datasets_the_project_does_not_register_are_left_to_detectron2(lits_cache):
    check_datasets(_cfg(), [("DATASETS.TEST", "my_own_dataset")])
