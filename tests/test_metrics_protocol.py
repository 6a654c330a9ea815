"""EER, AP and ECE are exact (sklearn and hand-computed cases); perturbations change images
as they say; Grad-CAM finds a planted patch (no training, no MLflow)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from deepfake_detect.data.perturbations import DEFAULT_SPEC, parse_spec, spec_text
from deepfake_detect.metrics.binary import average_precision, binary_metrics, equal_error_rate
from deepfake_detect.metrics.calibration import expected_calibration_error, reliability


def scored(seed: int, n: int = 400, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    return y, (np.round(p, 2) if ties else p)


def sklearn_eer(y: np.ndarray, p: np.ndarray) -> float:
    """The literature's EER: where 1 - TPR meets FPR on the interpolated ROC."""
    fpr, tpr, _ = skm.roc_curve(y, p)
    return brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)


@pytest.mark.parametrize(("seed", "ties"), [(0, False), (1, True), (2, False), (3, True)])
def test_eer_and_ap_match_sklearn(seed, ties):
    y, p = scored(seed, ties=ties)
    assert equal_error_rate(y, p) == pytest.approx(sklearn_eer(y, p), abs=1e-9)
    assert average_precision(y, p) == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


def test_eer_and_ap_by_hand():
    # scores 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.2 (neg): ROC (0,0) (0,.5) (.5,.5) (.5,1) (1,1);
    # fpr + tpr - 1 is -0.5 at (0,.5) and 0 at (.5,.5): EER 0.5. AP = .5*1 + .5*(2/3)
    y, p = np.array([1, 0, 1, 0]), np.array([0.9, 0.8, 0.7, 0.2])
    assert equal_error_rate(y, p) == pytest.approx(0.5)
    assert average_precision(y, p) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # a crossing inside a segment: scores 0.9 (pos), 0.6 (neg and pos tie), 0.1 (neg) -> ROC
    # (0,0) (0,.5) (.5,1) (1,1); on the middle segment fpr + tpr - 1 = 0 at fpr 1/4
    y, p = np.array([1, 0, 1, 0]), np.array([0.9, 0.6, 0.6, 0.1])
    assert equal_error_rate(y, p) == pytest.approx(0.25)
    assert equal_error_rate(np.array([0, 1]), np.array([0.2, 0.8])) == 0.0  # perfect
    assert np.isnan(equal_error_rate(np.array([1, 1]), np.array([0.2, 0.8])))  # one class


def test_binary_metrics_carry_eer_and_ap():
    y, p = scored(5)
    found = binary_metrics(y, p)
    assert found["eer"] == pytest.approx(sklearn_eer(y, p), abs=1e-9)
    assert found["ap"] == pytest.approx(skm.average_precision_score(y, p), abs=1e-12)


@pytest.mark.parametrize("bins", [15, 10, 3])
def test_ece_matches_sklearn_calibration_curve(bins):
    y, p = scored(7)
    p[:5] = [0.0, 1.0, 1 / 3, 2 / 3, 0.2]  # edges fall into the lower bin, as in sklearn
    true, predicted = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    curve = reliability(y, p, bins)
    np.testing.assert_allclose(curve.positive_rate, true, atol=1e-12)
    np.testing.assert_allclose(curve.mean_prob, predicted, atol=1e-12)
    edges = np.linspace(0, 1, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], p), minlength=bins)
    want = np.sum(counts[counts > 0] * np.abs(true - predicted)) / len(p)
    assert expected_calibration_error(y, p, bins) == pytest.approx(want, abs=1e-12)


def test_ece_by_hand():
    # two bins: [0, .5] holds 0.2, 0.4 (1 positive: rate .5, mean .3); (.5, 1] holds 0.9 (a
    # positive: rate 1, mean .9): ECE = 2/3 * 0.2 + 1/3 * 0.1
    y, p = np.array([0, 1, 1]), np.array([0.2, 0.4, 0.9])
    assert expected_calibration_error(y, p, bins=2) == pytest.approx(2 / 3 * 0.2 + 1 / 3 * 0.1)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_robustness_spec_round_trips_and_refuses_bad_levels():
    assert spec_text(parse_spec(DEFAULT_SPEC)) == DEFAULT_SPEC
    assert [p.name for p in parse_spec("blur:1.5;jpeg:50")] == ["blur1.5", "jpeg50"]
    assert parse_spec("none") == ()
    for bad, says in [
        ("jpeg:0", "quality"),
        ("jpeg:50.5", "quality"),
        ("scale:1", "0 < F < 1"),
        ("blur:-1", "sigma"),
        ("noise:1", "not understood"),
        ("jpeg:x", "not a number"),
        ("jpeg:50,50", "twice"),
    ]:
        with pytest.raises(ValueError, match=says):
            parse_spec(bad)


def test_perturbations_change_images_as_described():
    import tensorflow as tf

    from deepfake_detect.data.perturbations import Perturbation
    from deepfake_detect.data.pipeline import perturb

    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    batch[1] = 128  # flat: every perturbation keeps it (nearly) flat
    out = {
        p.name: perturb(tf.constant(batch), p).numpy()
        for p in parse_spec("jpeg:95,30;scale:0.5;blur:2")
    }
    for image in out.values():
        assert image.shape == batch.shape and image.dtype == np.uint8
        assert np.abs(image[1].astype(int) - 128).max() <= 2
    error = {k: np.abs(v[0].astype(int) - batch[0]).mean() for k, v in out.items()}
    assert 0 < error["jpeg95"] < error["jpeg30"]  # lower quality loses more
    assert out["blur2"][0].std() < 0.5 * batch[0].std()  # noise is smoothed away
    assert out["scale0.5"][0].std() < batch[0].std()
    jpeg = tf.io.decode_jpeg(tf.io.encode_jpeg(batch[2], quality=30)).numpy()
    np.testing.assert_array_equal(out["jpeg30"][2], jpeg)  # exactly a re-encoding
    assert Perturbation("jpeg", 50).describe() == "JPEG quality 50"


def test_grad_cam_highlights_a_planted_patch():
    """A one-filter model that responds to bright pixels: the evidence for 'positive' is the
    bright patch, wherever it is planted."""
    import keras

    from deepfake_detect.inference.gradcam import grad_cam
    from deepfake_detect.models.heads import image_input, sigmoid_head

    inputs = image_input(32)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="bright")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, sigmoid_head(x))
    conv = model.get_layer("bright")
    conv.set_weights([np.full((3, 3, 3, 1), 1 / 27, np.float32), np.array([-0.3], np.float32)])
    model.layers[-1].set_weights([np.array([[40.0]], np.float32), np.array([-1.0], np.float32)])
    images = np.full((2, 32, 32, 3), 20, np.uint8)
    images[0, 4:12, 18:26] = 250
    images[1, 20:28, 2:10] = 250
    maps = grad_cam(model, images.astype(np.float32), threshold=0.5)
    assert maps.shape == (2, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    for heat, (rows, cols) in zip(
        maps, [(slice(4, 12), slice(18, 26)), (slice(20, 28), slice(2, 10))], strict=True
    ):
        inside = np.zeros((32, 32), bool)
        inside[rows, cols] = True
        assert inside[np.unravel_index(np.argmax(heat), heat.shape)]
        assert heat[inside].mean() > 0.5 > 5 * heat[~inside].mean()
