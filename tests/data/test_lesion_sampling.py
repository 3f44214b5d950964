"""DATALOADER.LESION_SLICE_SHARE: repeat factors, the sampled share of lesion slices (dicts and slice groups)."""
import itertools
from pathlib import Path

import _tiny
import pytest

import volumetric_attention
from volumetric_attention import get_va_cfg
from volumetric_attention.data.lits import prepare_lits
from volumetric_attention.data.phantoms import write_phantom_dataset
from volumetric_attention.data.samplers import ResumableRepeatFactorTrainingSampler, ResumableTrainingSampler
from volumetric_attention.data.sampling import lesion_share_repeat_factors
from volumetric_attention.engine import VATrainer

from detectron2.data.build import get_detection_dataset_dicts

VA_CONFIG = (Path(volumetric_attention.__file__).parents[1] / "configs" / "Phantom" /
             "mask_rcnn_R_18_FPN_GN_va_bag3.yaml")


def test_repeat_factors_give_the_share_in_expectation_and_keep_the_epoch_length():
    holds = [True] * 3 + [False] * 17
    factors = lesion_share_repeat_factors(holds, 0.4)
    assert factors[:3].tolist() == pytest.approx([0.4 / 0.15] * 3)
    assert factors[3:].tolist() == pytest.approx([0.6 / 0.85] * 17)
    assert float(factors[:3].sum() / factors.sum()) == pytest.approx(0.4)
    assert float(factors.sum()) == pytest.approx(20.0)
    # a share below the natural one samples the lesion slices less often
    assert lesion_share_repeat_factors(holds, 0.05)[0] < 1.0
    # every item a lesion (DeepLesion key slices): nothing to change
    assert lesion_share_repeat_factors([True] * 4, 0.3).tolist() == [1.0] * 4


def test_repeat_factors_reject_a_share_out_of_range_and_data_without_lesions():
    with pytest.raises(ValueError, match=r"LESION_SLICE_SHARE must be in \[0, 1\], got 1.5"):
        lesion_share_repeat_factors([True, False], 1.5)
    with pytest.raises(ValueError, match="no training slice holds a lesion"):
        lesion_share_repeat_factors([False, False], 0.5)


@pytest.fixture(scope="module")
def phantom_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("lesion_share")
    write_phantom_dataset(root / "phantom", 3, seed=1, shape=(16, 48, 48), spacing=(2.0, 7.0, 7.0))
    result = prepare_lits(root / "phantom", root / "cache" / "phantom", (-200.0, 300.0), 2.0, 1)
    assert not result.failed
    return root


def _lesion_share_of_stream(sampler, holds, n=4000):
    indices = list(itertools.islice(iter(sampler), n))
    return sum(holds[i] for i in indices) / n


@pytest.mark.parametrize("targets,group_size", [("instances", 1), ("sem_seg", 1), ("sem_seg", 2)])
def test_trainer_samples_lesion_items_at_the_configured_share(phantom_root, monkeypatch, targets, group_size):
    monkeypatch.setenv("VA_DATASETS", str(phantom_root))
    base = _tiny.MODEL + _tiny.INPUT + _tiny.TRAIN + ["INPUT.CT.SLICE_SPACING", 2.0, "DATASETS.TEST", "()",
                                                      "INPUT.CT.TARGETS", [targets], "SEED", 3,
                                                      "DATALOADER.SHARED_BAG_TARGETS", group_size]
    dicts = get_detection_dataset_dicts(["phantom_train"], filter_empty=False)
    lesion_slices = {(d["case_id"], d["slice_index"]) for d in dicts if any(a["category_id"] == 1
                                                                            for a in d["annotations"])}
    natural = len(lesion_slices) / len(dicts)
    share = 0.3 if natural > 0.6 else 0.9  # far from the natural share, so that the sampler must act
    assert 0.0 < natural < 1.0 and abs(share - natural) > 0.2

    off = VATrainer.build_train_loader(get_va_cfg(str(VA_CONFIG), base + ["DATALOADER.LESION_SLICE_SHARE", 0.0]))
    assert type(off.resumable_sampler) is ResumableTrainingSampler

    loader = VATrainer.build_train_loader(get_va_cfg(str(VA_CONFIG), base + ["DATALOADER.LESION_SLICE_SHARE", share]))
    sampler = loader.resumable_sampler
    assert isinstance(sampler, ResumableRepeatFactorTrainingSampler)
    # the sampled items: dicts, or groups of G dicts (a group holds a lesion when a member does)
    members = [[d] for d in dicts] if group_size == 1 else _groups(dicts, group_size)
    holds = [any((d["case_id"], d["slice_index"]) in lesion_slices for d in group) for group in members]
    assert len(holds) == len(sampler._int_part)
    assert _lesion_share_of_stream(sampler, holds) == pytest.approx(share, abs=0.03)
    batch = next(iter(loader))
    assert len(batch) == 2 and all(targets in d for d in batch)


def _groups(dicts, group_size):
    from volumetric_attention.data import make_slice_groups

    return make_slice_groups(dicts, dicts, group_size)


def test_lesion_share_refuses_another_sampler_and_a_share_out_of_range(phantom_root, monkeypatch):
    monkeypatch.setenv("VA_DATASETS", str(phantom_root))
    opts = _tiny.MODEL + _tiny.INPUT + _tiny.TRAIN + ["DATASETS.TEST", "()", "DATALOADER.LESION_SLICE_SHARE", 0.5]
    cfg = get_va_cfg(str(VA_CONFIG), opts + ["DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler"])
    with pytest.raises(ValueError, match="LESION_SLICE_SHARE > 0 is a sampler of its own"):
        VATrainer.build_train_loader(cfg)
    with pytest.raises(ValueError, match=r"LESION_SLICE_SHARE must be in \[0, 1\], got -0.2"):
        VATrainer.build_train_loader(get_va_cfg(str(VA_CONFIG), opts + ["DATALOADER.LESION_SLICE_SHARE", -0.2]))
