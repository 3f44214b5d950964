"""A tiny VA Mask R-CNN (random weights saved as a checkpoint) and a small CT volume with a non-trivial grid."""
import os

import _tiny
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from volumetric_attention import get_va_cfg
from volumetric_attention.data.phantoms import make_phantom
from volumetric_attention.engine import VACheckpointer

from detectron2.modeling import build_model

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "..", "projects", "VolumetricAttention", "configs")
PHANTOM_VA = os.path.join(CONFIG_DIR, "Phantom", "mask_rcnn_R_18_FPN_GN_va_bag3.yaml")
PHANTOM_SEMSEG_VA = os.path.join(CONFIG_DIR, "Phantom", "semantic_R_18_FPN_GN_va_bag3.yaml")
# CPU-sized; score thresholds 0 so that a random model paints liver and lesion everywhere; gates that depend on the
# bag; the test volumes' spacing
TINY = _tiny.MODEL + _tiny.INPUT + _tiny.KEEP_EVERY_DETECTION + _tiny.VARYING_GATES + [
    "INPUT.CT.SLICE_SPACING", 2.0,
]


def tiny_cfg(config=PHANTOM_VA, weights="", extra=()):
    return get_va_cfg(config, TINY + ["MODEL.WEIGHTS", weights] + list(extra))


@pytest.fixture(scope="session")
def tiny_model_files(tmp_path_factory):
    """(config path, weights path) of a randomly initialised tiny phantom VA Mask R-CNN."""
    folder = tmp_path_factory.mktemp("model")
    torch.manual_seed(0)
    model = build_model(tiny_cfg())
    VACheckpointer(model, str(folder)).save("model_final")
    return PHANTOM_VA, str(folder / "model_final.pth")


def oblique_nifti(path, seed=0, shape=(14, 40, 44)):
    """Write a phantom CT whose axes are permuted and flipped, with a non-zero origin. Returns the sitk.Image."""
    hu, labels, spacing = make_phantom(seed, shape=shape, spacing=(2.5, 2.0, 2.0))
    # store as (x, z, y) on disk with the z axis flipped: a sagittal-major layout with a non-identity direction
    array = np.ascontiguousarray(hu.transpose(2, 0, 1)[:, ::-1, :]).astype(np.int16)
    image = sitk.GetImageFromArray(array)  # sitk axes (y, z, x)
    image.SetSpacing((spacing[1], spacing[0], spacing[2]))
    image.SetDirection((0, 0, 1, 1, 0, 0, 0, -1, 0))
    image.SetOrigin((-31.5, 12.25, 140.0))
    sitk.WriteImage(image, str(path))
    return image
