import numpy as np
import pycocotools.mask as mask_util
from scipy import ndimage

from volumetric_attention.data.instances import volume_instances


def test_instance_count_equals_connected_components():
    rng = np.random.default_rng(3)
    label = np.zeros((5, 40, 40), np.uint8)
    label[:, 5:30, 5:30] = 1
    label[:, 33:38, 33:38] = 1                                    # a second liver piece
    blobs = ndimage.binary_dilation(rng.random((5, 40, 40)) > 0.985, iterations=1)
    label[blobs & (label == 1)] = 2
    anns = volume_instances(label)
    for z in range(5):
        got = anns.get(z, [])
        n_liver = ndimage.label(label[z] >= 1)[1]
        n_lesion = ndimage.label(label[z] == 2)[1]
        assert sum(a["category_id"] == 0 for a in got) == n_liver
        assert sum(a["category_id"] == 1 for a in got) == n_lesion
        union = {0: np.zeros((40, 40), bool), 1: np.zeros((40, 40), bool)}
        for a in got:
            m = mask_util.decode({"size": a["segmentation"]["size"],
                                  "counts": a["segmentation"]["counts"].encode()}).astype(bool)
            ys, xs = np.nonzero(m)
            assert a["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert isinstance(a["segmentation"]["counts"], str)
            union[a["category_id"]] |= m
        np.testing.assert_array_equal(union[0], label[z] >= 1)  # liver instance includes its lesions
        np.testing.assert_array_equal(union[1], label[z] == 2)
