import pytest

from volumetric_attention import add_va_config
from volumetric_attention.config import expand_pixel_stats, get_va_cfg

from detectron2.config import get_cfg


def test_every_key_has_a_comment():
    import inspect

    import volumetric_attention.config as config_module

    lines = inspect.getsource(config_module.add_va_config).splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("_C.") and "CN()" not in line:
            assert lines[i - 1].strip().startswith("#"), f"key without a comment: {line.strip()}"


def test_pixel_stats_tiled_to_bag_channels():
    cfg = get_va_cfg(opts=["MODEL.VA.BAG_SIZE", 5])
    assert len(cfg.MODEL.PIXEL_MEAN) == 15
    assert list(cfg.MODEL.PIXEL_MEAN[3:6]) == list(cfg.MODEL.PIXEL_MEAN[:3])
    baseline = get_va_cfg(opts=["MODEL.VA.ENABLED", False])
    assert len(baseline.MODEL.PIXEL_STD) == 3


def test_pixel_stats_wrong_length_is_an_error():
    cfg = get_cfg()
    add_va_config(cfg)
    cfg.MODEL.PIXEL_MEAN = [1.0, 2.0]
    with pytest.raises(ValueError, match="PIXEL_MEAN has 2 values"):
        expand_pixel_stats(cfg)


def test_config_key_typo_is_rejected():
    with pytest.raises(AssertionError, match="Non-existent key: MODEL.VA.BAGSIZE"):
        get_va_cfg(opts=["MODEL.VA.BAGSIZE", 3])
