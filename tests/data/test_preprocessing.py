import numpy as np
import pytest

from volumetric_attention.data.preprocessing import SliceResampler, preprocess_volume, window


def test_window():
    hu = np.array([-1000, -200, 50, 300, 2000], np.int16)
    np.testing.assert_allclose(window(hu, -200, 300), [0, 0, 0.5, 1, 1])


@pytest.mark.parametrize("z0,sz,tz", [(10, 2.5, 1.5), (17, 3.0, 1.0), (9, 1.5, 1.5), (13, 5.0, 2.0)])
def test_labels_round_trip_exact_when_cache_is_finer(z0, sz, tz):
    rng = np.random.default_rng(z0)
    labels = rng.integers(0, 3, size=(z0, 4, 3)).astype(np.uint8)
    r = SliceResampler(z0, sz, tz)
    cache = r.to_cache(labels, order=0)
    assert cache.shape[0] == int(np.floor((z0 - 1) * sz / tz + 1e-6)) + 1
    back = r.to_original(cache)
    assert back.shape == labels.shape and back.dtype == np.uint8
    np.testing.assert_array_equal(back, labels)


def test_coarser_cache_still_gives_z0_slices():
    labels = np.repeat(np.arange(20, dtype=np.uint8) % 3, 4).reshape(20, 2, 2)
    r = SliceResampler(20, 0.8, 1.5)
    back = r.to_original(r.to_cache(labels, order=0))
    assert back.shape == labels.shape
    # independently: original slice j takes the cache slice nearest in mm, which took its nearest original slice
    for j in range(20):
        k = int(np.floor(j * 0.8 / 1.5 + 0.5))
        src = int(np.floor(k * 1.5 / 0.8 + 0.5))
        np.testing.assert_array_equal(back[j], labels[src])
        assert abs(src - j) * 0.8 <= 1.5


def test_linear_interpolation_and_preprocess():
    hu = np.stack([np.full((2, 2), v, np.float32) for v in (0.0, 100.0, 200.0, 300.0)])  # 4 slices, 3 mm
    image, r = preprocess_volume(hu, (3.0, 1.0, 1.0), (0.0, 300.0), 1.5)
    assert r.num_cache_slices == 7
    np.testing.assert_allclose(image[:, 0, 0], np.arange(7) * 50.0 / 300.0, atol=1e-6)
    with pytest.raises(ValueError, match="NaN"):
        preprocess_volume(np.full((4, 2, 2), np.nan, np.float32), (1, 1, 1), (0, 1), 1.0)
