"""Turn one slice's model output into a label slice (0 background, 1 liver, 2 lesion).

Shared by the LiTS evaluator and the volume predictor, so that both build 3D label maps the same way.

Liver and lesion are predicted separately by Mask R-CNN ("liver" and "lesion" instances). In the ground truth the liver
contains its lesions, so the predicted liver mask is the union of the liver-instance masks, lesions included. The paper
removes false lesions outside the liver with "the logical AND of the predicted liver and lesion masks": a lesion pixel
is kept only where the liver mask also covers it. This needs the liver mask *before* lesions are painted over it, which
is why the AND is an option of :func:`instances_to_label_slice` rather than a function of a finished label slice.
:func:`restrict_lesion_to_liver` applies the same AND to separate boolean masks of any shape (2D slice or 3D volume).

A semantic-segmentation output is an exclusive per-pixel argmax: a lesion pixel is never also a liver pixel, and the
"liver mask" there is the set of pixels labelled liver or lesion, so the AND cannot remove anything and is not applied.
"""
import numpy as np
import torch

__all__ = [
    "BACKGROUND",
    "LIVER",
    "LESION",
    "instances_to_label_slice",
    "sem_seg_to_label_slice",
    "output_to_label_slice",
    "restrict_lesion_to_liver",
    "compose_label_slice",
]

BACKGROUND, LIVER, LESION = 0, 1, 2


def _to_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def restrict_lesion_to_liver(liver_mask, lesion_mask):
    """The paper's logical AND: lesion pixels/voxels kept only where the liver mask covers them.

    Args:
        liver_mask: bool array of any shape, e.g. (H, W) or (Z, H, W); the liver including its lesions.
        lesion_mask: bool array of the same shape.
    Returns:
        bool array of the same shape: ``lesion_mask & liver_mask``.
    """
    liver_mask = np.asarray(liver_mask, dtype=bool)
    lesion_mask = np.asarray(lesion_mask, dtype=bool)
    if liver_mask.shape != lesion_mask.shape:
        raise ValueError(f"liver mask {liver_mask.shape} and lesion mask {lesion_mask.shape} differ in shape")
    return lesion_mask & liver_mask


def compose_label_slice(liver_mask, lesion_mask, lesion_in_liver=False):
    """Paint boolean masks into labels: liver -> 1, lesion -> 2 (lesion painted over liver).

    Args:
        liver_mask, lesion_mask: bool arrays of the same shape (H, W) or (Z, H, W).
        lesion_in_liver: apply :func:`restrict_lesion_to_liver` first.
    Returns:
        np.uint8 array of the same shape.
    """
    liver_mask = np.asarray(liver_mask, dtype=bool)
    lesion_mask = np.asarray(lesion_mask, dtype=bool)
    if lesion_in_liver:
        lesion_mask = restrict_lesion_to_liver(liver_mask, lesion_mask)
    labels = np.zeros(liver_mask.shape, dtype=np.uint8)
    labels[liver_mask] = LIVER
    labels[lesion_mask] = LESION
    return labels


def instances_to_label_slice(
    instances, height, width, score_thresh=0.5, lesion_in_liver=False, liver_class=0, lesion_class=1
):
    """Label slice from Mask R-CNN instances.

    Args:
        instances: detectron2 ``Instances`` at the original image size (H, W) with ``pred_masks`` [K, H, W]
            (bool, or float probabilities thresholded at 0.5), ``pred_classes`` [K] and ``scores`` [K].
        height, width: H, W of the output slice; must equal the masks' size.
        score_thresh: instances with ``scores < score_thresh`` are dropped.
        lesion_in_liver: keep a lesion pixel only where the union of liver masks covers it (paper's AND).
        liver_class, lesion_class: class indices of liver and lesion in ``pred_classes``
            (thing_classes ``["liver", "lesion"]`` gives 0 and 1).
    Returns:
        np.uint8 array (H, W): 0 background, 1 liver, 2 lesion.
    """
    height, width = int(height), int(width)
    if len(instances) == 0:
        return np.zeros((height, width), dtype=np.uint8)
    if not instances.has("pred_masks"):
        raise ValueError("instances have no pred_masks; a label slice needs a mask model (Mask R-CNN)")
    masks = _to_numpy(instances.pred_masks)
    if masks.shape[1:] != (height, width):
        raise ValueError(f"pred_masks are {masks.shape[1:]}, expected ({height}, {width}); "
                         "outputs must be at the original image size")
    if masks.dtype != bool:
        masks = masks >= 0.5
    classes = _to_numpy(instances.pred_classes)
    keep = _to_numpy(instances.scores) >= score_thresh
    liver = masks[keep & (classes == liver_class)].any(axis=0)
    lesion = masks[keep & (classes == lesion_class)].any(axis=0)
    return compose_label_slice(liver, lesion, lesion_in_liver=lesion_in_liver)


def sem_seg_to_label_slice(sem_seg):
    """Label slice from a semantic-segmentation output: per-pixel argmax over classes.

    Args:
        sem_seg: Tensor or array [3, H, W] of logits or probabilities for (background, liver, lesion).
    Returns:
        np.uint8 array (H, W).
    """
    sem_seg = _to_numpy(sem_seg)
    if sem_seg.ndim != 3 or sem_seg.shape[0] != 3:
        raise ValueError(f"sem_seg must be [3, H, W] (background, liver, lesion), got {sem_seg.shape}")
    return sem_seg.argmax(axis=0).astype(np.uint8)


def output_to_label_slice(output, score_thresh=0.5, lesion_in_liver=False, height=None, width=None):
    """Label slice from one model output dict (detectron2 conventions).

    ``{"instances": ...}`` with ``pred_masks`` goes through :func:`instances_to_label_slice`; otherwise
    ``{"sem_seg": [3, H, W]}`` through :func:`sem_seg_to_label_slice`. When both are present the instances win.

    Args:
        output: the model's output for one image.
        height, width: output size (H, W) when the instances may be empty; defaults to ``instances.image_size``.
    Returns:
        np.uint8 array (H, W).
    """
    instances = output.get("instances")
    if instances is not None and (instances.has("pred_masks") or "sem_seg" not in output):
        h, w = instances.image_size
        return instances_to_label_slice(
            instances, height or h, width or w, score_thresh=score_thresh, lesion_in_liver=lesion_in_liver
        )
    if "sem_seg" in output:
        return sem_seg_to_label_slice(output["sem_seg"])
    raise ValueError(f"cannot make a label slice from an output with keys {sorted(output)}; "
                     "expected 'instances' (with pred_masks) or 'sem_seg'")
