import json
import subprocess
import sys

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from _bag_checks import (
    ShiftedContextLoop,
    assert_all_features_differ,
    assert_outputs_differ,
    assert_same_features,
    assert_same_outputs,
    recorded_backbone_outputs,
    recorded_model_outputs,
)

from volumetric_attention.data.bag import make_bag_array
from volumetric_attention.data.preprocessing import preprocess_volume
from volumetric_attention.data.volume_io import read_volume
from volumetric_attention.inference import VolumePredictor
from volumetric_attention.inference import volume_predictor as volume_predictor_module
from volumetric_attention.inference.case_loop import target_batches
from volumetric_attention.inference.slice_labels import output_to_label_slice

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultPredictor
from detectron2.utils.visualizer import Visualizer

from .conftest import PHANTOM_SEMSEG_VA, TINY, oblique_nifti, tiny_cfg

ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ct_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("ct") / "oblique case.nii.gz"  # a space in the name on purpose
    oblique_nifti(path)
    return path


def _predict(predictor, ct_path):
    """(prediction, the backbone's and the model's outputs per target, in the loop's order) of one volume."""
    with recorded_backbone_outputs(predictor.model) as features, recorded_model_outputs(predictor.model) as outputs:
        prediction = predictor(ct_path)
    return prediction, features, outputs


def test_cached_and_naive_predictions_are_equal(tiny_model_files, ct_path, monkeypatch):
    config, weights = tiny_model_files
    cfg = tiny_cfg(config, weights)
    cached, cached_features, cached_outputs = _predict(VolumePredictor(cfg, progress=False), ct_path)
    naive, naive_features, naive_outputs = _predict(
        VolumePredictor(cfg, use_feature_cache=False, progress=False), ct_path)
    assert (cached.labels > 0).any(), "a random model with score threshold 0 should paint something"
    assert_same_features(cached_features, naive_features)
    assert_same_outputs(cached_outputs, naive_outputs)  # every slice's instance scores and boxes
    np.testing.assert_allclose(cached.lesion_score, naive.lesion_score, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(cached.labels, naive.labels)
    # 14 slices of 2.5 mm resampled to 2 mm -> 17 cache slices; bag of 3 images 3 slices apart
    num_slices = 17
    assert naive.backbone_images == num_slices * 3
    # one image per slice and one extra image clamped at each end, each computed once
    assert cached.backbone_images == num_slices + 2
    # negative control: with context images one slice off, the same comparisons see the difference
    monkeypatch.setattr(volume_predictor_module, "CaseLoop", ShiftedContextLoop)
    _, shifted_features, shifted_outputs = _predict(
        VolumePredictor(cfg, use_feature_cache=False, progress=False), ct_path)
    assert_all_features_differ(shifted_features, naive_features)
    assert_outputs_differ(shifted_outputs, naive_outputs)


def test_semantic_fpn_cache_matches_naive(ct_path, tmp_path, monkeypatch):
    from volumetric_attention.engine import VACheckpointer

    from detectron2.modeling import build_model

    torch.manual_seed(1)
    cfg = tiny_cfg(PHANTOM_SEMSEG_VA)
    VACheckpointer(build_model(cfg), str(tmp_path)).save("semseg")
    cfg = tiny_cfg(PHANTOM_SEMSEG_VA, str(tmp_path / "semseg.pth"))
    cached, cached_features, cached_outputs = _predict(VolumePredictor(cfg, progress=False), ct_path)
    naive, naive_features, naive_outputs = _predict(
        VolumePredictor(cfg, use_feature_cache=False, progress=False), ct_path)
    assert_same_features(cached_features, naive_features)
    assert_same_outputs(cached_outputs, naive_outputs)  # every slice's logits
    # the lesion score is the lesion class's softmax probability: the logits agree, not just their argmax. Float
    # rounding alone moves it by up to about 1.5e-5 (measured with seeds 1-4), a shifted bag by more than 1e-3 (below)
    np.testing.assert_allclose(cached.lesion_score, naive.lesion_score, atol=1e-4, rtol=0)
    np.testing.assert_array_equal(cached.labels, naive.labels)
    assert cached.backbone_images < naive.backbone_images
    monkeypatch.setattr(volume_predictor_module, "CaseLoop", ShiftedContextLoop)
    shifted, shifted_features, shifted_outputs = _predict(
        VolumePredictor(cfg, use_feature_cache=False, progress=False), ct_path)
    assert_all_features_differ(shifted_features, naive_features)
    assert_outputs_differ(shifted_outputs, naive_outputs)
    assert np.abs(shifted.lesion_score - naive.lesion_score).max() > 1e-3


def test_predict_cli_writes_labels_on_the_input_grid(tiny_model_files, ct_path, tmp_path):
    config, weights = tiny_model_files
    bad = tmp_path / "truncated.nii.gz"
    bad.write_bytes(ct_path.read_bytes()[:300])
    out = tmp_path / "out ü"
    cmd = [sys.executable, str(ROOT / "tools" / "predict.py"), "--config-file", config, "--weights", weights,
           "--output", str(out), "--no-progress", "--input", str(ct_path), str(bad), "--opts", *map(str, TINY)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    # the truncated file fails on its own line; the good case is still written; the exit status says so
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"error: {bad}:" in proc.stderr
    assert "1 of 2 cases failed" in proc.stderr
    written = sitk.ReadImage(str(out / "oblique case.nii.gz"))
    source = sitk.ReadImage(str(ct_path))
    assert written.GetSize() == source.GetSize()
    assert written.GetSpacing() == pytest.approx(source.GetSpacing())
    assert written.GetOrigin() == pytest.approx(source.GetOrigin())
    assert written.GetDirection() == pytest.approx(source.GetDirection())
    assert set(np.unique(sitk.GetArrayFromImage(written))) <= {0, 1, 2}
    # the same labels as the in-process predictor, put back through the inverse re-orientation
    prediction = VolumePredictor(tiny_cfg(config, weights), progress=False)(ct_path)
    canonical, _ = read_volume(out / "oblique case.nii.gz")
    np.testing.assert_array_equal(canonical.astype(np.uint8), prediction.labels)
    report = json.loads((out / "oblique case_lesions.json").read_text())
    assert len(report["lesions"]) == len(prediction.lesions)
    assert (out / "oblique case_lesions.csv").read_text().startswith("lesion_id,volume_ml")
    assert not [p for p in out.iterdir() if p.name.startswith(".")], "no temporary files left behind"


@pytest.mark.parametrize(
    "problem, expected",
    [("missing_weights", "weights file not found"), ("wrong_config", "does not match the config's model")],
)
def test_predict_cli_setup_errors(tiny_model_files, ct_path, tmp_path, problem, expected, load_tool,
                                  keep_process_state, capsys):
    """predict.py's main in this process (its exit status is main's return value, as sys.exit(main()) makes it; a
    predict.py process with another status: test_predict_cli_writes_labels_on_the_input_grid)."""
    config, weights = tiny_model_files
    if problem == "missing_weights":
        weights = str(tmp_path / "nope.pth")
    else:
        config = config.replace("va_bag3", "baseline")  # VA weights into the baseline architecture
    argv = ["--config-file", config, "--weights", weights, "--output", str(tmp_path / "o"), "--input", str(ct_path),
            "--opts", *map(str, TINY)]
    assert load_tool("predict").main(argv) == 2
    stderr = capsys.readouterr().err
    assert expected in stderr
    assert len(stderr.strip().splitlines()[-1]) < 400


def test_default_predictor_on_a_bag_matches_volume_predictor(tiny_model_files, ct_path):
    config, weights = tiny_model_files
    cfg = tiny_cfg(config, weights)
    hu, geometry = read_volume(ct_path)
    image, _ = preprocess_volume(hu, geometry.spacing_zyx, cfg.INPUT.CT.HU_WINDOW, cfg.INPUT.CT.SLICE_SPACING)
    z = 5
    bag = make_bag_array(image, z, cfg.MODEL.VA.BAG_SIZE)
    assert bag.shape == image.shape[1:] + (9,)
    default = DefaultPredictor(cfg)
    with recorded_backbone_outputs(default.model) as default_features:
        outputs = default(bag)
    instances = outputs["instances"]
    assert instances.image_size == image.shape[1:]
    label = output_to_label_slice(outputs, cfg.TEST.CT.SCORE_THRESH, cfg.TEST.CT.LESION_IN_LIVER)
    # the volume predictor's slice z (before resampling back) comes from the same model on the same bag: the same
    # features (the loop visits the targets in the order of target_batches), and so the same labels
    predictor = VolumePredictor(cfg, progress=False)
    with recorded_backbone_outputs(predictor.model) as cache_features:
        cache_labels = predictor.predict_cache_grid(image)[0]
    order = [t for batch in target_batches(range(len(image)), predictor.batch_size) for t in batch]
    assert_same_features(default_features, [cache_features[order.index(z)]])
    np.testing.assert_array_equal(label, cache_labels[z])
    # detectron2's Visualizer draws on the target's own 3 slices (the middle group of the bag)
    target = bag[:, :, 3:6].clip(0, 255).astype(np.uint8)
    drawn = Visualizer(target, MetadataCatalog.get("phantom_val")).draw_instance_predictions(instances.to("cpu"))
    assert drawn.get_image().shape == target.shape
